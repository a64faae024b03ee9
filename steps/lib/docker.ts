// The docker CLI, as the step programs use it. KONG_UPGRADE_DOCKER names another binary
// (a test double); DOCKER_HOST and friends are honoured as docker itself honours them.
import { existsSync, readFileSync } from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { exec, ExecResult } from "./exec";
import { StepError, progress } from "./log";
import { DockerEndpoint } from "./spec";

export function dockerBinary(): string {
    return process.env.KONG_UPGRADE_DOCKER || "docker";
}

/** The environment that points the docker CLI at `endpoint`; empty for the CLI's own default. */
export function dockerEnv(endpoint: DockerEndpoint | undefined): Record<string, string> {
    if (!endpoint) return {};
    // Empty values switch off TLS settings this process may have inherited for another host.
    return { DOCKER_HOST: endpoint.host, DOCKER_TLS_VERIFY: endpoint.certPath ? "1" : "", DOCKER_CERT_PATH: endpoint.certPath ?? "" };
}

/** Where a message says a container is: on a named host, or nothing for the default one. */
export function onHost(endpoint: DockerEndpoint | undefined): string {
    return endpoint ? ` on ${endpoint.host}` : "";
}

export async function docker(args: string[], env: Record<string, string> = {}, timeoutSeconds = 0, endpoint?: DockerEndpoint): Promise<ExecResult> {
    try {
        return await exec([dockerBinary(), ...args], { ...env, ...dockerEnv(endpoint) }, timeoutSeconds);
    } catch (e) {
        throw new StepError(`cannot run ${dockerBinary()}: ${(e as Error).message}; is the Docker CLI installed?`);
    }
}

export interface ContainerState {
    name: string;
    running: boolean;
    /** Docker health status: healthy, unhealthy, starting, or "" without a health check. */
    health: string;
    labels: Record<string, string>;
    /** Between a crash and the restart its restart policy makes. */
    restarting: boolean;
    /** The exit code of its latest run (0 while it has never exited). */
    exitCode: number;
    /** How often its restart policy restarted it: Kong exiting at start-up shows here. */
    restartCount: number;
}

/** `.State` of `docker container inspect`, the fields read here. */
interface DockerState { Running: boolean; Restarting?: boolean; ExitCode?: number; Health?: { Status: string } }

function containerState(name: string, s: DockerState, labels: Record<string, string> | null, restarts: number): ContainerState {
    return {
        name, running: s.Running, health: s.Health?.Status ?? "", labels: labels ?? {},
        restarting: s.Restarting ?? false, exitCode: s.ExitCode ?? 0, restartCount: restarts,
    };
}

/**
 * What the engine's socket says, where the CLI would use a local one; undefined to ask the CLI:
 * elsewhere, when it does not answer plainly, and when it says "absent" (the engine on the socket
 * may not be the one the CLI uses, podman-docker or a wrapper, and a node taken for absent would
 * not be stopped).
 */
async function fromSocket<T>(endpoint: DockerEndpoint | undefined, ask: (socket: string) => Promise<T | "absent" | undefined>): Promise<T | undefined> {
    const socket = localDockerSocket(endpoint);
    const answer = socket && existsSync(socket) ? await ask(socket) : undefined;
    return answer === "absent" ? undefined : answer;
}

/**
 * State of a container, or undefined when it does not exist. `timeoutSeconds`: 0 waits as long as
 * docker does. Through the engine's socket where it is local (no CLI start: the stop step's
 * check after `docker stop` is in the downtime window), else, when it does not answer plainly, or
 * when it says there is no such container, the CLI.
 */
export async function inspectContainer(name: string, endpoint?: DockerEndpoint, timeoutSeconds = 0): Promise<ContainerState | undefined> {
    const viaApi = await fromSocket(endpoint, (socket) => containerFromSocket(socket, name, timeoutSeconds > 0 ? timeoutSeconds * 1000 : 10_000));
    if (viaApi !== undefined) return viaApi;
    // One field a line: JSON has no raw newline, while a health check's output may hold any other separator.
    const r = await docker(["container", "inspect", "--format", "{{json .State}}\n{{json .Config.Labels}}\n{{.RestartCount}}", name], {}, timeoutSeconds, endpoint);
    if (r.code !== 0) {
        if (/no such (container|object)/i.test(r.stderr)) return undefined;
        throw new StepError(`docker container inspect ${name}${onHost(endpoint)} failed: ${r.stderr.trim()}`);
    }
    const [state, labels, restarts] = r.stdout.trim().split("\n");
    return containerState(name, JSON.parse(state) as DockerState, JSON.parse(labels) as Record<string, string> | null, Number(restarts) || 0);
}

/** Running containers carrying every label given. */
export async function runningWithLabels(labels: Record<string, string>, endpoint?: DockerEndpoint): Promise<ContainerState[]> {
    const filters = Object.entries(labels).flatMap(([k, v]) => ["--filter", `label=${k}=${v}`]);
    const r = await docker(["ps", "--format", "{{.Names}}", ...filters], {}, 0, endpoint);
    if (r.code !== 0) throw new StepError(`docker ps${onHost(endpoint)} failed: ${r.stderr.trim()}`);
    const names = r.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    const states = await Promise.all(names.map((n) => inspectContainer(n, endpoint)));
    return states.filter((s): s is ContainerState => s !== undefined && s.running);
}

/**
 * A check, to run about once a second while a node starts, that throws when the node has failed:
 * it is gone, it exited for good, or it keeps failing (Kong exits at start-up on a bad setting,
 * and `unless-stopped` brings it back to fail again). Restarts count from the first check (a
 * container keeps its restart count across its life, and a rollback starts X's old ones again),
 * and one is waited out: a node that failed once, say on a database hiccup, may still come up.
 * The message carries Kong's last lines, so nobody waits out a timeout to learn what `docker
 * logs` says. Docker not answering is not the node failing: it is noted and the wait goes on.
 */
export function startingWatch(container: string, endpoint?: DockerEndpoint): () => Promise<void> {
    let baseline: number | undefined;
    return async () => {
        let s: ContainerState | undefined;
        try {
            s = await inspectContainer(container, endpoint, 10);
        } catch (e) {
            progress(`${(e as Error).message.split("\n")[0]}; still waiting for ${container}'s /status`);
            return;
        }
        baseline ??= s?.restartCount;
        const restarts = s ? s.restartCount - (baseline ?? 0) : 0;
        const exited = s && s.exitCode !== 0 ? `exited (exit code ${s.exitCode})` : "exited";
        const failed = !s ? "does not exist"
            : restarts >= 2 ? `${exited} and was restarted ${restarts} times`
                : !s.running && !s.restarting ? exited : undefined;
        if (!failed) return;
        const logs = s ? await docker(["logs", "--tail", "30", container], {}, 30, endpoint).catch(() => undefined) : undefined;
        const output = logs ? `${logs.stdout}${logs.stderr}`.trim() : "";
        throw new StepError(`${container}${onHost(endpoint)} ${failed} instead of starting` + (output ? `. Kong's output (docker logs --tail 30):\n${output}` : ""));
    };
}

/**
 * The Unix socket of the Docker engine the CLI would talk to, when it is a local one reached
 * without the CLI's help: no test double, no other host (DOCKER_HOST, a step's endpoint), no
 * context other than the default. Undefined otherwise: then only the CLI knows the way.
 */
export function localDockerSocket(endpoint: DockerEndpoint | undefined, env: NodeJS.ProcessEnv = process.env, currentContext = configuredContext(env)): string | undefined {
    if (env.KONG_UPGRADE_DOCKER) return undefined;
    const host = endpoint ? endpoint.host : env.DOCKER_HOST;
    if (host) return host.startsWith("unix://") && !(endpoint?.certPath) ? host.slice("unix://".length) : undefined;
    const context = env.DOCKER_CONTEXT || currentContext;
    if (context && context !== "default") return undefined;
    return "/var/run/docker.sock";
}

/** The CLI's current context from its config file (DOCKER_CONFIG, else ~/.docker), if one is set. */
function configuredContext(env: NodeJS.ProcessEnv): string | undefined {
    const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), ".docker");
    try {
        const c = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as { currentContext?: unknown };
        return typeof c.currentContext === "string" ? c.currentContext : undefined;
    } catch {
        return undefined;
    }
}

/**
 * GET `apiPath` from the engine's API on `socket`: its status and body, or undefined when it
 * did not answer within `timeoutMs` (the caller asks the CLI then).
 */
function engineGet(socket: string, apiPath: string, timeoutMs: number): Promise<{ status: number; body: string } | undefined> {
    return new Promise((resolve) => {
        const req = http.request({ socketPath: socket, path: apiPath, method: "GET", timeout: timeoutMs }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => { body += d; });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
            res.on("error", () => resolve(undefined));
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(undefined));
        req.end();
    });
}

/** A name or image reference in an API path, as the CLI sends it (its slashes kept). */
const apiName = (name: string) => name.split("/").map(encodeURIComponent).join("/");

/**
 * An image's id from the engine's API on `socket`: what `docker image inspect -f {{.Id}}` prints,
 * without starting the CLI (about 0.1 s in the downtime window, per migration step). "absent"
 * when the engine has no such image; undefined when the API did not answer plainly (the caller
 * asks the CLI then).
 */
export async function imageIdFromSocket(socket: string, image: string, timeoutMs = 10_000): Promise<string | "absent" | undefined> {
    const r = await engineGet(socket, `/images/${apiName(image)}/json`, timeoutMs);
    if (r?.status === 404) return "absent";
    if (r?.status !== 200) return undefined;
    try {
        const id = (JSON.parse(r.body) as { Id?: unknown }).Id;
        return typeof id === "string" && id.startsWith("sha256:") ? id : undefined;
    } catch {
        return undefined;
    }
}

/**
 * A container's state from the engine's API on `socket`, as inspectContainer gives it; "absent"
 * when there is no such container; undefined when the API did not answer plainly.
 */
export async function containerFromSocket(socket: string, name: string, timeoutMs = 10_000): Promise<ContainerState | "absent" | undefined> {
    const r = await engineGet(socket, `/containers/${apiName(name)}/json`, timeoutMs);
    if (r?.status === 404) return "absent";
    if (r?.status !== 200) return undefined;
    try {
        const c = JSON.parse(r.body) as { State?: DockerState; Config?: { Labels?: Record<string, string> | null }; RestartCount?: number };
        return c.State && typeof c.State.Running === "boolean" ? containerState(name, c.State, c.Config?.Labels ?? null, c.RestartCount ?? 0) : undefined;
    } catch {
        return undefined;
    }
}

/** An image's id on `endpoint` (undefined: absent), through the engine's socket where it is local, else the CLI. */
export async function imageId(image: string, endpoint: DockerEndpoint | undefined): Promise<string | undefined> {
    const viaApi = await fromSocket(endpoint, (socket) => imageIdFromSocket(socket, image));
    if (viaApi !== undefined) return viaApi;
    const r = await docker(["image", "inspect", "-f", "{{.Id}}", image], {}, 60, endpoint);
    return r.code === 0 ? r.stdout.trim() || undefined : undefined;
}
