// Runs a step program exactly as the Pulumi Command does (same entry point, spec and secrets in
// the environment), with the Kong stand-in as `kong` and the fake docker CLI.
import { spawn } from "child_process";
import { mkdtempSync } from "fs";
import * as os from "os";
import * as path from "path";
import { stepArgv } from "../../components/step";
import { parseStepResult } from "../../steps/lib/log";
import { KongRun, SECRET_ENV, SPEC_ENV, EXPECT_ENV, StepSpec, DbTarget, ClusterRef } from "../../steps/lib/spec";

export const ROOT = path.join(__dirname, "..", "..");
export const STANDIN = path.join(ROOT, "test", "kong-standin", "kong");
export const FAKE_DOCKER = path.join(ROOT, "test", "fake-docker", "docker");

export interface StepRun {
    code: number;
    stdout: string;
    stderr: string;
    result?: Record<string, unknown>;
}

/**
 * `argv`: how the step is started; by default `node build/step-programs/steps/main.js <step>`
 * (the step runner's tests give its client's command line). `spec` is serialised with `specText`.
 */
export function runStep(spec: StepSpec, opts: { password: string; expect?: string; env?: Record<string, string>; argv?: string[]; specText?: (s: StepSpec) => string }): Promise<StepRun> {
    const argv = opts.argv ?? [process.execPath, ...stepArgv(spec.step).slice(1)];
    return new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), {
            cwd: ROOT,
            env: {
                ...process.env,
                [SPEC_ENV]: (opts.specText ?? JSON.stringify)(spec),
                [SECRET_ENV.password]: opts.password,
                ...(opts.expect ? { [EXPECT_ENV]: opts.expect } : {}),
                KONG_UPGRADE_KONG_COMMAND: STANDIN,
                KONG_UPGRADE_DOCKER: FAKE_DOCKER,
                ...opts.env,
            },
            stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
        child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
        child.on("error", reject);
        child.on("close", (code) => {
            resolve({ code: code ?? 1, stdout, stderr, result: parseStepResult(stdout) });
        });
    });
}

/** How the stand-in of `version` reaches the test database (locally, so pg host = test host). */
export function kongRun(db: DbTarget, version: string, extra: Partial<KongRun> = {}): KongRun {
    return {
        image: `kong:${version}`, version, network: "unused", plugins: "bundled", env: {},
        pg: { host: db.host, port: db.port, database: db.database, user: db.user, ssl: false },
        lockTimeoutSeconds: 60, license: false, ...extra,
    };
}

export function fakeDockerState(): string {
    return path.join(mkdtempSync(path.join(os.tmpdir(), "fake-docker-")), "state.json");
}

export function cluster(stack: string, version: string, nodes: Array<{ container: string; port?: number }>): ClusterRef {
    return {
        stack, version,
        nodes: nodes.map((n) => ({
            container: n.container,
            statusUrl: `http://127.0.0.1:${n.port ?? 1}`, adminUrl: `http://127.0.0.1:${(n.port ?? 1) + 1}`, proxyUrl: `http://127.0.0.1:${(n.port ?? 1) + 2}`,
        })),
    };
}
