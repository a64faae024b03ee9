// canary: the whole upgrade rehearsed on a clone of the live database while X still serves, so
// that what can fail on this data fails before the downtime window. Clone (pg_dump | pg_restore),
// every hop's `up` and `finish` through the real migrations step, one Y node on the clone (ports on
// 127.0.0.1 only, no network alias: no data plane can reach it), the real verify; then node and
// clone are always removed. Its measured times forecast the downtime window of the real run.
import { mkdtempSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { databaseExists, entityCounts, quoteIdent, readSchemaMeta, setDatabaseNote, withDatabase, withServer } from "./lib/db";
import { startingWatch, docker } from "./lib/docker";
import { kongEnv, runKong } from "./lib/kong";
import { StepError, freePort, parseStepResult, progress } from "./lib/log";
import { databaseReachable, untilAnswers } from "./lib/http";
import { databasePassword } from "./lib/secrets";
import { exec } from "./lib/exec";
import { runByRunner } from "./lib/launch";
import { CANARY_SECRET_ENV, CanarySpec, DbTarget, KongRun, SECRET_ENV, SPEC_ENV } from "./lib/spec";
import { CanaryNote, canaryDatabasesOf, createCanaryDatabase, dropCanaryDatabase, streamClone, timedDump } from "./lib/clone";
import { CANARY_TRIAL_SUFFIX, fitName } from "./lib/snapshots";
import { migrations } from "./migrations";
import { checkAtX } from "./snapshot";
import { verify } from "./verify";

/** The forecast of the real run's downtime window, from the canary's measured step times. */
export interface Forecast {
    windowSeconds: number;
    /** stop, snapshot (unless online), `up <v>` and `finish <v>` per hop, start, verify, step start-up. */
    parts: Record<string, number>;
}

/** What one step program's start costs, as the real run's steps start (see sampleStepStartup). */
export interface StepStartup {
    /** Shell, Node and the step program up to its own clock (`seconds`): outside every step's own time. */
    process: number;
    /** Loading a database step's modules (the pg driver…): inside such a step's own time, already loaded in the canary. */
    modules: number;
}

/** A shell word: the Command runs its command line through /bin/sh. */
const shellWord = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, "'\\''")}'`);

/**
 * One sample of what starting a step program costs here, measured the way the real run starts its
 * steps: the same way this canary was started — through the step runner's client (run-step.sh,
 * as every Command runs it, through /bin/sh) when a runner's worker runs it, else
 * `node build/step-programs/steps/main.js` — running a step that does nothing (a stop of no node);
 * and the loading of a database step's modules in a fresh Node, which a runner's worker has done
 * before it is given a step (the canary's own calls of migrations() and verify() found them
 * loaded). The canary takes one right before each step it times, so each start-up is measured
 * under the load that step met, and none is multiplied.
 */
export async function sampleStepStartup(): Promise<StepStartup> {
    const main = process.argv[1] ?? "";
    const node = [process.execPath, ...process.execArgv];
    const warm = runByRunner();
    const argv = warm ? ["bash", path.join(path.dirname(main), "run-step.sh"), "stop"] : [...node, main, "stop"];
    const noop = JSON.stringify({ step: "stop", cluster: { stack: "", version: "", nodes: [] }, drainSeconds: 0 });
    const t = Date.now();
    const r = await exec(["/bin/sh", "-c", argv.map(shellWord).join(" ")], { [SPEC_ENV]: noop }, 120);
    if (r.code !== 0) throw new StepError(`the no-op step program that measures start-up failed (exit ${r.code}): ${r.stderr.trim()}`);
    // Less its own clock, as the bench splits a step (bench/downtime.ts): start-up is the rest.
    const proc = (Date.now() - t) / 1000 - (parseStepResult<{ seconds?: number }>(r.stdout)?.seconds ?? 0);
    if (warm) return { process: proc, modules: 0 };
    // Timed inside the child, so Node's own start (counted above) is not counted twice.
    const migrationsModule = require.resolve("./migrations");
    const m = await exec([...node, "-e", `const t=process.hrtime.bigint();require(${JSON.stringify(migrationsModule)});` +
        "process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e9))"], {}, 120);
    if (m.code !== 0) throw new StepError(`loading ${migrationsModule} failed (exit ${m.code}): ${m.stderr.trim()}`);
    return { process: proc, modules: Number(m.stdout.trim()) };
}

const round = (s: number) => Math.round(s * 100) / 100;
const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : 0);

/** Labels of everything the canary runs in Docker: the next run finds leftovers of this upgrade by them, and nothing else. */
export function canaryLabels(spec: CanarySpec): Record<string, string> {
    return { "kong-upgrade.stack": spec.stack, "kong-upgrade.role": "canary", "kong-upgrade.canary": spec.clone };
}

/** The trial copy that measures a template snapshot of the clone's size (canaryCloneName leaves room for it). */
export function trialName(clone: string): string {
    return fitName(clone, CANARY_TRIAL_SUFFIX);
}

/** Removes this upgrade's canary containers and databases (a killed run's leftovers, or this run's). */
async function removeCanary(spec: CanarySpec, pw: string): Promise<string[]> {
    const removed: string[] = [];
    const filters = Object.entries(canaryLabels(spec)).flatMap(([k, v]) => ["--filter", `label=${k}=${v}`]);
    const ps = await docker(["ps", "-a", "--format", "{{.Names}}", ...filters], {}, 60, spec.copy.docker);
    if (ps.code !== 0) throw new StepError(`docker ps failed: ${ps.stderr.trim()}`);
    const containers = ps.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    if (containers.length > 0) {
        const rm = await docker(["rm", "-f", ...containers], {}, 120, spec.copy.docker);
        if (rm.code !== 0) throw new StepError(`docker rm -f ${containers.join(" ")} failed: ${rm.stderr.trim()}`);
        removed.push(...containers);
    }
    const want = { source: spec.db.database, stack: spec.stack, from: spec.from, to: spec.to };
    await withServer(spec.db, pw, async (c) => {
        const names = new Set([spec.clone, trialName(spec.clone), ...await canaryDatabasesOf(c, want)]);
        for (const name of names) if (await dropCanaryDatabase(c, name, want)) removed.push(name);
    });
    return removed;
}

/** Y's node on the clone: the listeners nodes get (cluster.ts), then exactly the settings migrations run with. */
function nodeArgv(spec: CanarySpec, y: KongRun, ports: { proxy: number; admin: number; status: number }): string[] {
    const env: Record<string, string> = {
        KONG_PROXY_LISTEN: "0.0.0.0:8000", KONG_ADMIN_LISTEN: "0.0.0.0:8001", KONG_STATUS_LISTEN: "0.0.0.0:8100",
        KONG_PROXY_ACCESS_LOG: "/dev/stdout", KONG_ADMIN_ACCESS_LOG: "/dev/stdout", KONG_PROXY_ERROR_LOG: "/dev/stderr", KONG_ADMIN_ERROR_LOG: "/dev/stderr",
        ...kongEnv(y),
    };
    const secret: string[] = [SECRET_ENV.password];
    if (y.license) secret.push(SECRET_ENV.license);
    const publish = [["8001", ports.admin], ["8100", ports.status]];
    if (spec.node.role === "control_plane") {
        // A control plane without the alias data planes look for: none of them can reach it.
        Object.assign(env, { KONG_ROLE: "control_plane", KONG_CLUSTER_LISTEN: "0.0.0.0:8005", KONG_PROXY_LISTEN: "off" });
        secret.push(CANARY_SECRET_ENV.clusterCert, CANARY_SECRET_ENV.clusterCertKey);
    } else {
        publish.push(["8000", ports.proxy]);
    }
    return [
        "run", "-d", "--name", spec.node.container, "--network", y.network,
        ...Object.entries(canaryLabels(spec)).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
        "--label", `kong-upgrade.version=${y.version}`,
        // Published on loopback only: the canary serves nobody.
        ...publish.flatMap(([inside, host]) => ["-p", `127.0.0.1:${host}:${inside}`]),
        ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
        ...secret.flatMap((k) => ["-e", k]),
        y.image,
    ];
}

async function logsOf(spec: CanarySpec): Promise<string> {
    const r = await docker(["logs", "--tail", "40", spec.node.container], {}, 30, spec.copy.docker);
    return (r.stdout + r.stderr).trim();
}

export async function canary(spec: CanarySpec): Promise<object> {
    const pw = databasePassword();
    const cloneDb: DbTarget = { ...spec.db, database: spec.clone };
    const onClone = (run: KongRun): KongRun => ({ ...run, pg: { ...run.pg, database: spec.clone } });
    const parts: Record<string, number> = {};
    // One start-up sample before each step of the window the canary times (see sampleStepStartup).
    const startups: StepStartup[] = [];
    const startupOf = async (databaseStep: boolean) => {
        const s = await sampleStepStartup();
        startups.push(databaseStep ? s : { process: s.process, modules: 0 });
    };
    const timed = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
        const t = Date.now();
        const out = await fn();
        parts[label] = round((parts[label] ?? 0) + (Date.now() - t) / 1000);
        return out;
    };
    progress(`canary of ${spec.from} → ${spec.to} on a clone of ${spec.db.database}; cluster ${spec.from} keeps serving`);
    const left = await removeCanary(spec, pw);
    if (left.length > 0) progress(`removed leftovers of an earlier canary of this upgrade: ${left.join(", ")}`);

    let phase = "clone";
    const started = Date.now();
    let cloneSeconds = 0;
    let bytes = 0;
    let counts: Record<string, number> = {};
    try {
        const note: CanaryNote = { kind: "kong-upgrade-canary", clone: spec.clone, source: spec.db.database, stack: spec.stack,
            from: spec.from, to: spec.to, createdAt: new Date().toISOString() };
        const t = Date.now();
        await withServer(spec.db, pw, (c) => createCanaryDatabase(c, note));
        bytes = await streamClone(spec.copy, spec.db, spec.clone, pw, canaryLabels(spec));
        cloneSeconds = round((Date.now() - t) / 1000);
        counts = await withDatabase(cloneDb, pw, entityCounts);
        progress(`clone ${spec.clone} in ${cloneSeconds}s: ${JSON.stringify(counts)}`);

        if (spec.snapshot) {
            // The snapshot step's own checks before it copies (schema_meta, the first hop's proof
            // that the database is at X, the counts it records), run on the clone, still at X.
            phase = "snapshot trial";
            await startupOf(true);
            await timed("snapshot", () => withDatabase(cloneDb, pw, async (k) => {
                await checkAtX({ step: "snapshot", db: cloneDb, strategy: spec.snapshot!, prefix: "", from: spec.from, to: spec.to,
                    terminateSessions: false, stack: spec.stack, hops: spec.hops.map((h) => h.version), firstHop: onClone(spec.hops[0]) },
                await readSchemaMeta(k));
                await entityCounts(k);
            }));
        }
        if (spec.snapshot === "template") {
            const trial = trialName(spec.clone);
            await withServer(spec.db, pw, async (c) => {
                if (await databaseExists(c, trial)) throw new StepError(`a database named ${trial} exists already`);
                await timed("snapshot", () => c.query(`CREATE DATABASE ${quoteIdent(trial)} TEMPLATE ${quoteIdent(spec.clone)}`));
                await setDatabaseNote(c, trial, { ...note, clone: trial });
            });
        } else if (spec.snapshot === "dump") {
            phase = "snapshot trial";
            await timed("snapshot", () => timedDump(spec.copy, spec.db, spec.clone, pw, canaryLabels(spec)));
        }
        if (spec.snapshot && spec.declarativeExport) {
            // The snapshot's `kong config db_export` with X's image, into a folder of our own, then discarded.
            phase = "snapshot trial, kong config db_export";
            const dir = mkdtempSync(path.join(os.tmpdir(), "kong-upgrade-canary-export-"));
            progress(`kong config db_export with ${spec.declarativeExport.image} on the clone, as the snapshot will (timed, then discarded)`);
            try {
                const r = await timed("snapshot", () => runKong(onClone(spec.declarativeExport!), ["config", "db_export", "/export/canary.kong.yml"], 600,
                    [{ host: dir, container: "/export" }]));
                if (r.code !== 0) throw new StepError(`kong config db_export (${spec.declarativeExport.image}) failed with exit ${r.code}:\n${(r.stdout + r.stderr).trim()}`);
            } finally {
                rmSync(dir, { recursive: true, force: true });
            }
        }

        for (const hop of spec.hops) {
            for (const step of ["up", "finish"] as const) {
                phase = `hop ${hop.version}, kong migrations ${step}`;
                await startupOf(true);
                await timed(`${step} ${hop.version}`, () => migrations({ step: "migrations", phase: step, db: cloneDb, kong: onClone(hop) }));
            }
        }

        const y = onClone(spec.hops[spec.hops.length - 1]);
        phase = `start of one ${spec.to} ${spec.node.role === "control_plane" ? "control plane" : "node"}`;
        const ports = { proxy: await freePort(), admin: await freePort(), status: await freePort() };
        await timed("start", async () => {
            const run = await docker(nodeArgv(spec, y, ports), {
                [SECRET_ENV.password]: pw,
                ...(y.license ? { [SECRET_ENV.license]: process.env[SECRET_ENV.license] ?? "" } : {}),
                ...(spec.node.role === "control_plane" ? {
                    [CANARY_SECRET_ENV.clusterCert]: process.env[CANARY_SECRET_ENV.clusterCert] ?? "",
                    [CANARY_SECRET_ENV.clusterCertKey]: process.env[CANARY_SECRET_ENV.clusterCertKey] ?? "",
                } : {}),
            }, 120, spec.copy.docker);
            if (run.code !== 0) throw new StepError(`docker run of ${spec.node.container} failed: ${run.stderr.trim()}`);
            // As verify in the real run: readiness noticed within 100 ms; an exited node ends the wait.
            await untilAnswers(`http://127.0.0.1:${ports.status}/status`, Date.now() + spec.timeoutSeconds * 1000, databaseReachable, (last) => `${spec.node.container} not healthy after ${spec.timeoutSeconds}s (${last})`,
            { alive: startingWatch(spec.node.container, spec.copy.docker) });
        });

        phase = "verify";
        // No start-up sample: the real verify starts while Y's nodes boot (they are created
        // without Docker's wait), so its start-up lies under Y's start, not after it.
        const node = {
            container: spec.node.container, statusUrl: `http://127.0.0.1:${ports.status}`, adminUrl: `http://127.0.0.1:${ports.admin}`,
            proxyUrl: `http://127.0.0.1:${ports.proxy}`,
        };
        await timed("verify", () => verify({
            step: "verify", db: cloneDb, kong: y, cluster: { stack: spec.stack, version: spec.to, nodes: [node] },
            timeoutSeconds: spec.timeoutSeconds, smokePath: spec.node.role === "control_plane" ? undefined : spec.smokePath,
        }, counts));

        phase = "graceful stop";
        // No start-up sample: the window opens at X's `docker stop`, after the stop step started.
        await timed("stop", async () => {
            const r = await docker(["stop", "--time", String(spec.node.drainSeconds), spec.node.container], {}, spec.node.drainSeconds + 60, spec.copy.docker);
            if (r.code !== 0) throw new StepError(`docker stop ${spec.node.container} failed: ${r.stderr.trim()}`);
        });
    } catch (e) {
        const message = e instanceof StepError ? e.message : (e as Error).message;
        let logs = "";
        if (phase.startsWith("start") && !message.includes("Kong's output")) logs = await logsOf(spec).catch(() => "");
        const cleaned = await removeCanary(spec, pw).then((r) => `removed ${r.join(", ") || "nothing"}`, (c: Error) => `clean-up failed too: ${c.message}`);
        throw new StepError(`canary of ${spec.from} → ${spec.to} failed at ${phase}: ${message}${logs ? `\n${logs}` : ""}\n` +
            `Cluster ${spec.from} was never stopped and ${spec.db.database} is unchanged (canary ${cleaned}). ` +
            `Fix the cause (e.g. the entity through ${spec.from}'s Admin API) and run pulumi up again, or set upgrade.canary: false to skip the canary`);
    }
    const removed = await removeCanary(spec, pw);
    progress(`canary passed in ${round((Date.now() - started) / 1000)}s; removed ${removed.join(", ")}`);

    // The window (X's `docker stop` → Y verified, as bench/downtime.ts measures it): stop, snapshot
    // (when inside it), each hop's up and finish, Y's start, verify, each timed above; and the
    // start-up of the step programs that start inside it (snapshot, each up and finish), which none
    // of those timings holds. Stop starts before the window, verify while Y boots.
    const steps = startups.length;
    parts["step start-up"] = round(startups.reduce((a, x) => a + x.process + x.modules, 0));
    const forecast: Forecast = { windowSeconds: round(Object.values(parts).reduce((a, b) => a + b, 0)), parts };
    progress(`forecast downtime window: ${forecast.windowSeconds}s = ` + Object.entries(parts).map(([k, v]) => `${k} ${v}s`).join(", "));
    return {
        clone: spec.clone, cloneSeconds, cloneBytes: bytes, entityCounts: counts, canarySeconds: round((Date.now() - started) / 1000),
        hops: spec.hops.map((h) => h.version), forecast,
        stepStartup: { steps, perStep: round(median(startups.map((x) => x.process))), databaseModules: round(median(startups.filter((x) => x.modules > 0).map((x) => x.modules))) },
    };
}
