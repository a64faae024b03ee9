// A TEST DOUBLE OF THE PULUMI ENGINE, for rehearsals on machines without the Pulumi CLI.
// It evaluates index.ts with Pulumi's mocks in update mode, and registering a resource performs
// that resource's real effect with the docker CLI, the pg driver or /bin/sh. The SDK registers a
// resource only after its dependencies finished, so the order comes from the program itself.
// Like the engine: a resource whose inputs did not change is left alone ("same", even a stopped
// container); removed resources are deleted after the program finished, dependents first,
// honouring retainOnDelete, and never when a step failed. State persists in a JSON file.
//
// Usage (one process per `pulumi up`, as Pulumi's runtime is process-wide):
//   KONG_UPGRADE_REHEARSAL='{"stack":…,"config":{…},"stateFile":…}' node -r ts-node/register/transpile-only test/rehearsal/engine.ts
import { spawn } from "child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { Registration, evaluateProgram } from "../../bin/evaluate";
import { dockerEnv } from "../../steps/lib/docker";
import { parseStepResult } from "../../steps/lib/log";
import { databaseReachable, untilAnswers } from "../../steps/lib/http";

const ROOT = path.join(__dirname, "..", "..");
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

interface Resource {
    urn: string;
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    outputs: Record<string, unknown>;
    deps: string[];
    parent: string;
    retainOnDelete: boolean;
    protect: boolean;
    /** The explicit provider's URN, "" for the default one: deletes go to the same Docker host. */
    provider?: string;
}

interface State {
    resources: Record<string, Resource>;
}

export interface TimelineEntry {
    name: string;
    type: string;
    op: "create" | "update" | "replace" | "delete" | "same";
    start: number;
    end: number;
    ok: boolean;
    /** For step Commands: the seconds the step program itself reported (the rest is process start-up). */
    stepSeconds?: number;
    /** For step Commands: the result line the step printed (timings and counts the bench reads). */
    result?: Record<string, unknown>;
    /** For Kong node containers waited on: when the node's /status first said the database is reachable. */
    statusAt?: number;
}

export interface RunOptions {
    stack: string;
    config: Record<string, unknown>;
    stateFile: string;
    /** Where the timeline of this run is written (JSON). */
    timelineFile?: string;
}

const timeline: TimelineEntry[] = [];

function log(line: string): void {
    process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${line}\n`);
}

/** Secrets come through the mocks as {sig, value}; the engine handles plain values. */
function plain(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (o[SECRET_SIG] !== undefined && "value" in o) return plain(o.value);
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, plain(x)]));
    }
    return v;
}

function run(argv: string[], opts: { env?: Record<string, string>; cwd?: string; stream?: boolean } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
        child.stderr.on("data", (d: Buffer) => {
            stderr += d.toString();
            if (opts.stream) for (const line of d.toString().split("\n").filter(Boolean)) process.stderr.write(`      | ${line}\n`);
        });
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
}

/** The environment of the docker CLI for one Docker host; {} for the default one. */
type Host = Record<string, string>;

async function docker(args: string[], what: string, host: Host): Promise<string> {
    const r = await run(["docker", ...args], { env: host });
    if (r.code !== 0) throw new Error(`${what}: docker ${args[0]} failed: ${r.stderr.trim()}`);
    return r.stdout.trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- effects per resource type ----------------------------------------------------------------

type Inputs = Record<string, unknown>;

async function createContainer(name: string, i: Inputs, host: Host): Promise<Inputs> {
    const argv = ["run", "-d", "--name", String(i.name)];
    if (i.hostname) argv.push("--hostname", String(i.hostname));
    const nets = (i.networksAdvanced as Array<{ name: string; aliases?: string[] }> | undefined) ?? [];
    if (nets[0]) {
        argv.push("--network", nets[0].name);
        for (const a of nets[0].aliases ?? []) argv.push("--network-alias", a);
    }
    for (const p of (i.ports as Array<{ internal: number; external: number; ip?: string }> | undefined) ?? []) {
        argv.push("-p", `${p.ip ?? "0.0.0.0"}:${p.external}:${p.internal}`);
    }
    for (const l of (i.labels as Array<{ label: string; value: string }> | undefined) ?? []) argv.push("--label", `${l.label}=${l.value}`);
    const hc = i.healthcheck as { tests: string[]; interval?: string; timeout?: string; retries?: number; startPeriod?: string } | undefined;
    if (hc) {
        argv.push("--health-cmd", hc.tests.slice(1).join(" "));
        if (hc.interval) argv.push("--health-interval", hc.interval);
        if (hc.timeout) argv.push("--health-timeout", hc.timeout);
        if (hc.retries) argv.push("--health-retries", String(hc.retries));
        if (hc.startPeriod) argv.push("--health-start-period", hc.startPeriod);
    }
    if (i.restart) argv.push("--restart", String(i.restart));
    if (i.stopSignal) argv.push("--stop-signal", String(i.stopSignal));
    for (const v of (i.volumes as Array<{ volumeName: string; containerPath: string }> | undefined) ?? []) argv.push("-v", `${v.volumeName}:${v.containerPath}`);
    // Environment through a private file, as the provider passes it through the API: no secret in argv.
    const dir = mkdtempSync(path.join(os.tmpdir(), "rehearsal-env-"));
    const envFile = path.join(dir, "env");
    // An env file holds one line per variable; multi-line values (PEM certificates) go through
    // docker's own environment by name instead.
    const envs = (i.envs as string[] | undefined) ?? [];
    const multiLine: Record<string, string> = {};
    for (const e of envs.filter((x) => x.includes("\n"))) {
        const at = e.indexOf("=");
        multiLine[e.slice(0, at)] = e.slice(at + 1);
        argv.push("-e", e.slice(0, at));
    }
    writeFileSync(envFile, `${envs.filter((x) => !x.includes("\n")).join("\n")}\n`);
    chmodSync(envFile, 0o600);
    argv.push("--env-file", envFile, String(i.image));
    try {
        const r = await run(["docker", ...argv], { env: { ...multiLine, ...host } });
        if (r.code !== 0) throw new Error(`${name}: docker run failed: ${r.stderr.trim()}`);
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
    if (i.wait) {
        const deadline = Date.now() + Number(i.waitTimeout ?? 60) * 1000;
        const probing = { on: true };
        const probe = probeStatus(name, i, probing);
        for (;;) {
            const status = await docker(["inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", String(i.name)], name, host);
            if (status.endsWith("healthy") && !status.endsWith("unhealthy")) break;
            if (status.startsWith("exited") || Date.now() > deadline) {
                const logs = await run(["docker", "logs", "--tail", "20", String(i.name)], { env: host });
                await run(["docker", "rm", "-f", String(i.name)], { env: host });
                throw new Error(`container ${i.name} is not healthy (${status}):\n${logs.stdout}${logs.stderr}`);
            }
            await sleep(300);
        }
        // Healthy before /status answered (a node without a database, a data plane): a second more, then give up.
        await Promise.race([probe, sleep(1000)]);
        probing.on = false;
    } else {
        // Not waited on (a step polls it): Kong's own start is still watched, in the background,
        // until it answers or the wait timeout; `up` records it in the timeline at the end.
        probes.set(name, probeStatus(name, i, { on: true }));
    }
    return { ...i, id: await docker(["inspect", "-f", "{{.Id}}", String(i.name)], name, host) };
}

/** When each Kong node's /status first answered with the database reachable (Kong's own start). */
const statusSeen = new Map<string, number>();

/** The background watches of nodes created without a wait, by name: `up` lets them land before it reads them. */
const probes = new Map<string, Promise<void>>();

/**
 * Watches a Kong node's published Status API from its creation until it answers (at most the
 * wait timeout): the moment Kong itself is ready, against which the bench measures how late the
 * health check, the wait or verify notice it. A request starts every 50 ms while earlier ones are
 * held: docker-proxy holds a connection unanswered while Kong does not listen yet, and one held
 * request at a time let verify (every 100 ms, also side by side) see the node first, the probe
 * never (the bench then had no Kong start to subtract).
 */
async function probeStatus(name: string, i: Inputs, probing: { on: boolean }): Promise<void> {
    statusSeen.delete(name); // an earlier node of this name (a retry after a rollback)
    const port = ((i.ports as Array<{ internal: number; external: number }> | undefined) ?? []).find((p) => p.internal === 8100);
    if (!port) return;
    const deadline = Date.now() + Number(i.waitTimeout ?? 60) * 1000;
    await untilAnswers(`http://127.0.0.1:${port.external}/status`, deadline, databaseReachable, () => "not seen", {
        everyMs: 50, attemptMs: 1000,
        alive: async () => { if (!probing.on) throw new Error("no longer watched"); },
    }).then(() => { statusSeen.set(name, Date.now()); }, () => undefined);
}

async function deleteContainer(r: Resource): Promise<void> {
    const grace = Number(r.inputs.destroyGraceSeconds ?? 0);
    const host = hostOf(r.provider);
    await run(["docker", "stop", "-t", String(grace), String(r.inputs.name)], { env: host });
    await run(["docker", "rm", "-f", String(r.inputs.name)], { env: host });
}

/** Inputs of every explicit provider, by URN (Docker hosts, the PostgreSQL server). */
const providers = new Map<string, Inputs>();

/** A provider reference (`urn::id`) or URN to its URN. */
const providerUrn = (ref: string | undefined) => (ref ? ref.slice(0, ref.lastIndexOf("::")) : "");

/** The Docker host a docker resource's provider points at: as the provider does, DOCKER_HOST when it has a host. */
function hostOf(urn: string | undefined): Host {
    const p = urn ? providers.get(urn) : undefined;
    if (!p?.host) return {};
    return dockerEnv({ host: String(p.host), certPath: p.certPath === undefined ? undefined : String(p.certPath) });
}

async function withPostgres<T>(provider: string | undefined, fn: (c: Client) => Promise<T>): Promise<T> {
    const p = providers.get(providerUrn(provider)) ?? [...providers.values()].find((x) => x.username !== undefined);
    if (!p) throw new Error("no postgresql provider registered");
    for (let attempt = 0; ; attempt++) {
        const c = new Client({ host: String(p.host), port: Number(p.port), user: String(p.username), password: String(p.password), database: String(p.database ?? "postgres") });
        try {
            await c.connect();
        } catch (e) {
            if (attempt > 30) throw e;
            await sleep(500);
            continue;
        }
        try {
            return await fn(c);
        } finally {
            await c.end();
        }
    }
}

const ident = (s: unknown) => `"${String(s).replace(/"/g, '""')}"`;
const literal = (s: unknown) => `'${String(s).replace(/'/g, "''")}'`;

async function runCommand(name: string, script: string, env: Record<string, string>): Promise<Inputs> {
    const r = await run(["/bin/sh", "-c", script], { env, cwd: ROOT, stream: true });
    if (r.code !== 0) throw new Error(`exit status ${r.code}: running ${JSON.stringify(script)}:\n${r.stdout}${r.stderr}`);
    return { stdout: r.stdout.replace(/\n$/, ""), stderr: r.stderr.replace(/\n$/, "") };
}

/** Performs a registration's effect. Returns the outputs, or throws to fail the step. */
async function apply(reg: Registration, inputs: Inputs, provider: string | undefined, old: Resource | undefined): Promise<Inputs> {
    const same = old !== undefined && JSON.stringify(old.inputs) === JSON.stringify(inputs);
    const host = hostOf(providerUrn(provider));
    switch (reg.type) {
        case "docker:index/network:Network": {
            const exists = (await run(["docker", "network", "inspect", String(inputs.name)], { env: host })).code === 0;
            if (!exists) await docker(["network", "create", "--label", "kong-upgrade.rehearsal=1", String(inputs.name)], reg.name, host);
            return inputs;
        }
        case "docker:index/volume:Volume": {
            if ((await run(["docker", "volume", "inspect", String(inputs.name)], { env: host })).code !== 0) {
                await docker(["volume", "create", "--label", "kong-upgrade.rehearsal=1", String(inputs.name)], reg.name, host);
            }
            return inputs;
        }
        case "docker:index/remoteImage:RemoteImage": {
            const r = await run(["docker", "image", "inspect", "-f", "{{.Id}}", String(inputs.name)], { env: host });
            if (r.code !== 0) throw new Error(`image ${inputs.name} is not present${host.DOCKER_HOST ? ` on ${host.DOCKER_HOST}` : " locally"} (the rehearsal never pulls; build it first)`);
            return { ...inputs, imageId: r.stdout.trim() };
        }
        case "docker:index/container:Container": {
            if (same && old) return old.outputs;
            if (old) await deleteContainer(old); // the provider replaces containers delete-first
            return createContainer(reg.name, inputs, host);
        }
        case "postgresql:index/role:Role":
            return withPostgres(provider, async (c) => {
                const exists = (await c.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [inputs.name])).rowCount === 1;
                const opts = `LOGIN ${inputs.createDatabase ? "CREATEDB" : ""} PASSWORD ${literal(inputs.password)}`;
                await c.query(`${exists ? "ALTER" : "CREATE"} ROLE ${ident(inputs.name)} ${opts}`);
                return inputs;
            });
        case "postgresql:index/database:Database":
            return withPostgres(provider, async (c) => {
                if ((await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [inputs.name])).rowCount === 0) {
                    const template = inputs.template ? ` TEMPLATE ${ident(inputs.template)}` : "";
                    await c.query(`CREATE DATABASE ${ident(inputs.name)} OWNER ${ident(inputs.owner)}${template}`);
                }
                return inputs;
            });
        case "command:local:Command": {
            if (same && old) return old.outputs;
            // A replaced Command runs `create` (it has no delete); an update runs `update`, else `create`.
            const env = Object.fromEntries(Object.entries((inputs.environment as Record<string, string> | undefined) ?? {}).map(([k, v]) => [k, String(v)]));
            const script = String((old && inputs.update) ? inputs.update : inputs.create ?? "");
            // As @pulumi/command does on an update (addPreviousOutputInEnv, default true).
            if (old && inputs.addPreviousOutputInEnv !== false) {
                env.PULUMI_COMMAND_STDOUT = String(old.outputs.stdout ?? "");
                env.PULUMI_COMMAND_STDERR = String(old.outputs.stderr ?? "");
            }
            return { ...inputs, ...(await runCommand(reg.name, script, env)) };
        }
        default:
            return inputs;
    }
}

async function destroy(r: Resource): Promise<void> {
    switch (r.type) {
        case "docker:index/container:Container": return deleteContainer(r);
        case "docker:index/network:Network": await run(["docker", "network", "rm", String(r.inputs.name)], { env: hostOf(r.provider) }); return;
        case "docker:index/volume:Volume": await run(["docker", "volume", "rm", String(r.inputs.name)], { env: hostOf(r.provider) }); return;
        case "command:local:Command":
            if (r.inputs.delete) await runCommand(r.name, String(r.inputs.delete), r.inputs.environment as Record<string, string>);
            return;
        case "postgresql:index/database:Database":
        case "postgresql:index/role:Role":
            throw new Error(`the rehearsal does not drop ${r.type} ${r.name}; mark it retainOnDelete`);
        default:
    }
}

/** Removed resources, dependents first (the old state's graph, as the engine uses). */
function deletionOrder(removed: Resource[]): Resource[] {
    const order: Resource[] = [];
    const done = new Set<string>();
    const visit = (r: Resource) => {
        if (done.has(r.urn)) return;
        done.add(r.urn);
        for (const other of removed) if (other.deps.includes(r.urn) || other.parent === r.urn) visit(other);
        order.push(r);
    };
    for (const r of removed) visit(r);
    return order;
}

export async function up(opts: RunOptions): Promise<boolean> {
    const state: State = existsSync(opts.stateFile) ? JSON.parse(readFileSync(opts.stateFile, "utf8")) as State : { resources: {} };
    for (const r of Object.values(state.resources)) if (r.type.startsWith("pulumi:providers:")) providers.set(r.urn, r.inputs);
    const seen = new Set<string>();
    /** Containers created without a wait: their /status moment is known only later. */
    const unseen: TimelineEntry[] = [];
    let failed: Error | undefined;
    const save = () => {
        writeFileSync(opts.stateFile, JSON.stringify(state, null, 1));
        chmodSync(opts.stateFile, 0o600);
        if (opts.timelineFile) writeFileSync(opts.timelineFile, JSON.stringify(timeline, null, 1));
    };
    const config = Object.fromEntries(Object.entries(opts.config).map(([k, v]) => [`kong-upgrade:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
    const ev = await evaluateProgram({
        stack: opts.stack, config, secretKeys: Object.keys(config), preview: false,
        newResource: async (args, reg) => {
            seen.add(reg.urn);
            const goal = plain(args.inputs) as Inputs;
            let inputs = { ...goal };
            const old = state.resources[reg.urn];
            // ignoreChanges: the stored value stands in for the new one before diffing.
            if (old) for (const key of reg.ignoreChanges) if (key in old.inputs) inputs[key] = old.inputs[key];
            // A Command's `triggers` change is a replacement (the SDK's replaceOnChanges), unless
            // `triggers` itself is ignored; the engine creates the replacement from the program's
            // values, not the ignored old ones.
            const triggered = args.type === "command:local:Command" && old !== undefined
                && JSON.stringify(old.inputs.triggers) !== JSON.stringify(inputs.triggers);
            if (triggered) inputs = goal;
            if (args.type.startsWith("pulumi:providers:")) {
                providers.set(reg.urn, inputs);
                // Kept in state too: a later run that no longer declares a host still deletes on it.
                state.resources[reg.urn] = { urn: reg.urn, type: reg.type, name: reg.name, inputs, outputs: inputs, deps: [], parent: reg.parent,
                    retainOnDelete: false, protect: false };
                return { id: `${args.name}-id`, state: inputs };
            }
            if (!args.custom) return { id: "", state: {} };
            const op: TimelineEntry["op"] = !old ? "create" : triggered ? "replace" : JSON.stringify(old.inputs) === JSON.stringify(inputs) ? "same"
                : args.type === "docker:index/container:Container" ? "replace" : "update";
            const entry: TimelineEntry = { name: reg.name, type: args.type, op, start: Date.now(), end: 0, ok: false };
            timeline.push(entry);
            if (op !== "same") log(`${op} ${args.type.split(":").pop()} ${reg.name}`);
            try {
                const outputs = await apply(reg, inputs, args.provider, old);
                entry.end = Date.now();
                entry.ok = true;
                if (typeof outputs.stdout === "string" && op !== "same") {
                    entry.result = parseStepResult(outputs.stdout);
                    entry.stepSeconds = entry.result?.seconds as number | undefined;
                    // Every step program ends with its result or fails (steps/main.ts): a success
                    // without one is a step that ended early, and must not pass for a step done.
                    if (!entry.result && /steps\/(main\.js|run-step\.sh)/.test(String(inputs.create ?? ""))) {
                        throw new Error(`${reg.name}: the step program exited 0 without a result:\n${String(outputs.stderr ?? "")}`);
                    }
                }
                if (statusSeen.has(reg.name)) entry.statusAt = statusSeen.get(reg.name);
                else if (args.type === "docker:index/container:Container"
                    && ((inputs.ports as Array<{ internal: number }> | undefined) ?? []).some((p) => p.internal === 8100)) unseen.push(entry);
                if (op !== "same") log(`  done ${reg.name} (${((entry.end - entry.start) / 1000).toFixed(2)}s)`);
                state.resources[reg.urn] = {
                    urn: reg.urn, type: reg.type, name: reg.name, inputs, outputs, deps: reg.deps, parent: reg.parent,
                    retainOnDelete: reg.retainOnDelete, protect: reg.protect, provider: providerUrn(args.provider),
                };
                save();
                // A container's real id: a replaced node has a new one, and what takes it (its /status wait) runs again.
                return { id: typeof outputs.id === "string" ? outputs.id : `${args.name}-id`, state: outputs };
            } catch (e) {
                entry.end = Date.now();
                entry.ok = false;
                failed ??= e as Error;
                log(`  FAILED ${reg.name}: ${(e as Error).message}`);
                save();
                throw e;
            }
        },
    });
    if (!ev.ok) failed ??= new Error(ev.error);
    await Promise.race([Promise.all(unseen.map((e) => probes.get(e.name))), sleep(2000)]);
    for (const entry of unseen) {
        if (statusSeen.has(entry.name)) entry.statusAt = statusSeen.get(entry.name);
        log(`  ${entry.name}: /status first answered ${entry.statusAt ? `${((entry.statusAt - entry.start) / 1000).toFixed(2)}s after its creation began` : "not seen"}`);
    }
    if (failed) {
        log(`update failed: nothing is deleted. ${failed.message.split("\n")[0]}`);
        save();
        return false;
    }
    const removed = Object.values(state.resources).filter((r) => !seen.has(r.urn));
    for (const r of deletionOrder(removed)) {
        const entry: TimelineEntry = { name: r.name, type: r.type, op: "delete", start: Date.now(), end: 0, ok: false };
        timeline.push(entry);
        if (r.protect) {
            log(`refusing to delete protected ${r.name}`);
            save();
            return false;
        }
        log(`delete ${r.type.split(":").pop()} ${r.name}${r.retainOnDelete ? " (retained: state only)" : ""}`);
        if (!r.retainOnDelete) await destroy(r);
        entry.end = Date.now();
        entry.ok = true;
        delete state.resources[r.urn];
        save();
    }
    save();
    return true;
}

if (require.main === module) {
    const opts = JSON.parse(process.env.KONG_UPGRADE_REHEARSAL ?? "{}") as RunOptions;
    process.on("unhandledRejection", () => undefined); // failed registrations are reported by `up`
    up(opts).then((ok) => process.exit(ok ? 0 : 1), (e: unknown) => {
        log(`engine error: ${(e as Error).stack ?? String(e)}`);
        process.exit(2);
    });
}

