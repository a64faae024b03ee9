// `npm run rehearse`: the whole upgrade, promotion and rollback of this program, for real, on a
// Docker engine, with locally built images (test/rehearsal/images.sh) and the engine test double
// (engine.ts). Six chains, each on its own stack; every container, network and volume they make
// is removed at the end. The last line printed is the downtime window of the main upgrade.
import { strict as assert } from "assert";
import { spawn, spawnSync } from "child_process";
import { mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { sleep } from "../../steps/lib/log";
import { TimelineEntry } from "./engine";

const ROOT = path.join(__dirname, "..", "..");
const WORK = path.join(ROOT, ".rehearsal");
const PASSWORD = "rehearsal-Pw-4f9c2";
// Against your own images: REHEARSAL_KONG_IMAGE=kong REHEARSAL_VERSIONS=3.4.2,3.5.0,3.6.1,3.7.1
// REHEARSAL_POSTGRES_IMAGE=postgres:15 npm run rehearse (pull them first; the rehearsal never pulls).
const KONG_IMAGE = process.env.REHEARSAL_KONG_IMAGE ?? "kong-sim";
const SIMULATED = KONG_IMAGE === "kong-sim";
const VERSIONS = (process.env.REHEARSAL_VERSIONS ?? "3.4.3,3.5.0,3.6.1,3.7.1").split(",");
const [X, Y] = [VERSIONS[0], VERSIONS[VERSIONS.length - 1]];
const HOPS = VERSIONS.slice(1, -1);
const FIRST_HOP = VERSIONS[1];
const POSTGRES_IMAGE = process.env.REHEARSAL_POSTGRES_IMAGE ?? "kong-upgrade-postgres:15";
const slug = (v: string) => v.replace(/\./g, "-");

type Config = Record<string, unknown>;

function say(line: string): void {
    process.stdout.write(`\n=== ${line}\n`);
}

function sh(argv: string[], env: Record<string, string> = {}): { code: number; out: string } {
    const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", env: { ...process.env, ...env } });
    return { code: r.status ?? 1, out: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}

export function dockerReachable(): boolean {
    return sh(["docker", "info", "--format", "{{.ServerVersion}}"]).code === 0;
}

function base(stack: string, port: number, nodes: number): Config {
    return {
        kong: { version: X, image: KONG_IMAGE, nodes, drainSeconds: 2, healthTimeoutSeconds: 90,
            ports: { proxy: port, admin: port + 1, status: port + 100 },
            // The stand-in answers routed requests itself; real Kong would proxy to upstreams that do not exist here.
            ...(SIMULATED ? { smokePath: "/orders" } : {}) },
        database: { password: PASSWORD, image: POSTGRES_IMAGE, port: port + 7000 },
    };
}

/** One `pulumi up` of the stack through the engine double; true when it succeeded. */
function up(stack: string, config: Config, label: string): Promise<{ ok: boolean; timeline: TimelineEntry[] }> {
    say(`${stack}: ${label}`);
    // The canary's pg_dump | pg_restore runs in the PostgreSQL image the rehearsal has (it never pulls).
    const u = config.upgrade as Config | undefined;
    if (u && u.dumpImage === undefined) config = { ...config, upgrade: { ...u, dumpImage: POSTGRES_IMAGE } };
    const stateFile = path.join(WORK, `${stack}.state.json`);
    const timelineFile = path.join(WORK, `${stack}.timeline.json`);
    return new Promise((resolve) => {
        const child = spawn(process.execPath, ["--require", "ts-node/register/transpile-only", "test/rehearsal/engine.ts"], {
            cwd: ROOT, stdio: ["ignore", "inherit", "inherit"],
            env: { ...process.env, KONG_UPGRADE_REHEARSAL: JSON.stringify({ stack, config, stateFile, timelineFile }) },
        });
        child.on("close", (code) => resolve({ ok: code === 0, timeline: JSON.parse(readFileSync(timelineFile, "utf8")) as TimelineEntry[] }));
    });
}

function container(name: string, host: Record<string, string> = {}): { exists: boolean; running: boolean; id: string } {
    const r = sh(["docker", "inspect", "-f", "{{.State.Running}} {{.Id}}", name], host);
    if (r.code !== 0) return { exists: false, running: false, id: "" };
    const [running, id] = r.out.split(" ");
    return { exists: true, running: running === "true", id };
}

async function admin(port: number, method: string, route: string, body?: unknown): Promise<Record<string, unknown>> {
    const r = await fetch(`http://127.0.0.1:${port}${route}`, {
        method, headers: { "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined,
    });
    const json = await r.json() as Record<string, unknown>;
    assert.ok(r.status < 300, `${method} ${route}: ${r.status} ${JSON.stringify(json)}`);
    return json;
}

/** Entities an operator configured before the upgrade, through X's Admin API. */
async function writeEntities(adminPort: number): Promise<void> {
    for (const name of ["orders", "billing", "search"]) {
        await admin(adminPort, "POST", "/services", { name, url: `http://${name}.internal:8080/v1` });
        await admin(adminPort, "POST", `/services/${name}/routes`, { name: `${name}-route`, paths: [`/${name}`] });
    }
    for (const username of ["alice", "bob"]) await admin(adminPort, "POST", "/consumers", { username });
}

async function readEntities(adminPort: number): Promise<string> {
    const names = async (route: string, key: string) => ((await admin(adminPort, "GET", route)).data as Array<Record<string, unknown>>).map((e) => e[key]).sort();
    return JSON.stringify({ services: await names("/services", "name"), routes: await names("/routes", "name"), consumers: await names("/consumers", "username") });
}

const EXPECTED = JSON.stringify({ services: ["billing", "orders", "search"], routes: ["billing-route", "orders-route", "search-route"], consumers: ["alice", "bob"] });

async function withDb<T>(port: number, database: string, fn: (c: Client) => Promise<T>): Promise<T> {
    const c = new Client({ host: "127.0.0.1", port, user: "kong", password: PASSWORD, database });
    await c.connect();
    try {
        return await fn(c);
    } finally {
        await c.end();
    }
}

const databases = (port: number, like: string) => withDb(port, "postgres", async (c) =>
    (await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", [like])).rows.map((r) => r.datname));

function cleanup(stack: string, host: Record<string, string> = {}): void {
    for (const kind of ["container", "network", "volume"]) {
        const ids = sh(["docker", kind, "ls", "-q", ...(kind === "container" ? ["-a"] : []), "--filter", `label=kong-upgrade.stack=${stack}`], host).out.split("\n").filter(Boolean);
        if (kind === "network") ids.push(...sh(["docker", "network", "ls", "-q", "--filter", `name=kong-upgrade-${stack}`], host).out.split("\n").filter(Boolean));
        if (kind === "volume") ids.push(...sh(["docker", "volume", "ls", "-q", "--filter", `name=kong-upgrade-${stack}`], host).out.split("\n").filter(Boolean));
        // `docker network rm` has no -f; containers and volumes need it.
        if (ids.length) sh(["docker", kind, "rm", ...(kind === "network" ? [] : ["-f"]), ...new Set(ids)], host);
    }
    rmSync(path.join(WORK, `${stack}.state.json`), { force: true });
}

/** X stopped → Y verified, and each step in between. */
function downtime(timeline: TimelineEntry[], x: string, y: string): string {
    const start = timeline.find((e) => e.name === `stop-kong-${x}`)!;
    const end = timeline.find((e) => e.name === `verify-kong-${y}`)!;
    const steps = timeline.filter((e) => e.start >= start.start && e.end <= end.end && e.op !== "same");
    const byStep = new Map<string, number>();
    for (const e of steps) {
        const key = e.name.replace(/-node-\d+$/, "-nodes").replace(/-\d+-\d+-\d+(-\d+)?/g, "").replace(/-to$/, "");
        byStep.set(key, (byStep.get(key) ?? 0) + (e.end - e.start) / 1000);
    }
    const busy = [...byStep.values()].reduce((a, b) => a + b, 0);
    const total = (end.end - start.start) / 1000;
    return `downtime window (X stopped → Y verified): ${total.toFixed(1)}s = ` +
        [...byStep.entries()].map(([k, s]) => `${k} ${s.toFixed(1)}s`).join(", ") +
        ` (steps overlap where they run in parallel; sum ${busy.toFixed(1)}s)`;
}

async function chainMain(): Promise<string> {
    const stack = "rehearsal-a";
    cleanup(stack);
    const cfg = base(stack, 18000, 2);
    const dbPort = 25000;
    assert.ok((await up(stack, cfg, `fresh Kong ${X}, 2 nodes`)).ok, "fresh install failed");
    await writeEntities(18001);
    assert.equal(await readEntities(18011), EXPECTED, "node 1 sees what node 0 wrote");

    const upgrade = { ...cfg, upgrade: { to: Y, via: HOPS } };
    const run = await up(stack, upgrade, `upgrade ${VERSIONS.join(" → ")}`);
    assert.ok(run.ok, "upgrade failed");
    const read = await readEntities(18001).catch((e: Error) => {
        // What Docker saw when Y's Admin API did not answer right after the run.
        const ps = sh(["docker", "ps", "-a", "--filter", `label=kong-upgrade.stack=${stack}`, "--format", "{{.Names}} {{.Status}} {{.Ports}}"]);
        const logs = sh(["docker", "logs", "--tail", "30", `${stack}-kong-${slug(Y)}-node-0`]);
        throw new Error(`Y's Admin API on 18001 did not answer after the upgrade: ${e.message} (${String((e as { cause?: unknown }).cause)})\n${ps.out}\n${logs.out}`);
    });
    assert.equal(read, EXPECTED, "entities read back through Y's Admin API");
    assert.equal(((await admin(18001, "GET", "/")) as { version: string }).version, Y);
    assert.ok(!container(`${stack}-kong-${slug(X)}-node-0`).exists && !container(`${stack}-kong-${slug(X)}-node-1`).exists, "X's containers are gone");
    const snapshots = await databases(dbPort, `kong_%_snap_${slug(X).replace(/-/g, "_")}_to_${slug(Y).replace(/-/g, "_")}_%`);
    assert.equal(snapshots.length, 1, "one snapshot");
    const deletes = run.timeline.filter((e) => e.op === "delete").map((e) => e.start);
    const lastOther = Math.max(...run.timeline.filter((e) => e.op !== "delete").map((e) => e.end));
    assert.ok(deletes.length >= 2 && deletes.every((t) => t >= lastOther), "X deleted after every other step");
    const window = downtime(run.timeline, slug(X), slug(Y));
    writeFileSync(path.join(WORK, "upgrade-timeline.json"), JSON.stringify(run.timeline, null, 1)); // read by npm run bench

    const yIds = [0, 1].map((i) => container(`${stack}-kong-${slug(Y)}-node-${i}`).id);
    const promoted = { ...cfg, kong: { ...(cfg.kong as Config), version: Y } };
    const p = await up(stack, promoted, `promote ${Y}`);
    assert.ok(p.ok, "promote failed");
    assert.deepEqual([0, 1].map((i) => container(`${stack}-kong-${slug(Y)}-node-${i}`).id), yIds, "promotion replaced no container");
    assert.ok(p.timeline.filter((e) => e.type === "docker:index/container:Container").every((e) => e.op === "same"));
    assert.deepEqual(await databases(dbPort, "kong_%_snap_%"), snapshots, "snapshot kept");

    const rollback = { ...cfg, upgrade: { to: Y, rollback: true, snapshot: snapshots[0] } };
    assert.ok((await up(stack, rollback, `roll back to ${X} from ${snapshots[0]}`)).ok, "rollback failed");
    assert.equal(await readEntities(18001), EXPECTED, "entities as before the upgrade, through X");
    assert.equal(((await admin(18001, "GET", "/")) as { version: string }).version, X);
    assert.ok(!container(`${stack}-kong-${slug(Y)}-node-0`).exists, "Y is gone");
    assert.equal((await databases(dbPort, "kong_failed_%")).length, 1, "the failed database is kept aside");

    const again = await up(stack, rollback, "the same rollback again");
    assert.ok(again.ok, "a second rollback must be harmless");
    assert.ok(again.timeline.every((e) => e.op === "same"), "the second rollback changed nothing");
    assert.equal((await databases(dbPort, "kong_failed_%")).length, 1);
    cleanup(stack);
    return window;
}

async function injectFault(dbPort: number, migration: string | undefined): Promise<void> {
    await withDb(dbPort, "kong", async (c) => {
        await c.query("CREATE TABLE IF NOT EXISTS kong_sim_faults (name text PRIMARY KEY)");
        await c.query("DELETE FROM kong_sim_faults");
        // Disarmed, the row stays (naming no migration): verify compares every table's row count
        // with the snapshot's, and the operator's fix of the cause removes no data.
        await c.query("INSERT INTO kong_sim_faults VALUES ($1)", [migration ?? "disarmed"]);
    });
}

/** A fresh one-node X with entities, and a fault armed in the first hop's `migrations up`. */
async function freshWithFault(stack: string, port: number): Promise<{ cfg: Config; dbPort: number }> {
    cleanup(stack);
    const cfg = base(stack, port, 1);
    assert.ok((await up(stack, cfg, `fresh Kong ${X}, 1 node`)).ok);
    await writeEntities(port + 1);
    await injectFault(port + 7000, "021_340_to_350");
    return { cfg, dbPort: port + 7000 };
}

async function chainFault(): Promise<void> {
    const stack = "rehearsal-b";
    const { cfg, dbPort } = await freshWithFault(stack, 19000);
    // Without the canary, which would catch this fault before X stops: this chain proves the failure path inside the window.
    const upgrade = { ...cfg, upgrade: { to: FIRST_HOP, canary: false } };
    const failed = await up(stack, upgrade, `upgrade to ${FIRST_HOP} with a failure injected into migrations up (no canary)`);
    assert.ok(!failed.ok, "the run must fail");
    assert.ok(failed.timeline.some((e) => e.name === `migrations-up-${slug(FIRST_HOP)}` && !e.ok));
    assert.ok(failed.timeline.every((e) => e.op !== "delete"), "nothing deleted");
    const x = container(`${stack}-kong-${slug(X)}-node-0`);
    assert.ok(x.exists && !x.running, "X is stopped, not deleted");
    assert.ok(!container(`${stack}-kong-${slug(FIRST_HOP)}-node-0`).exists, "Y is absent");
    const snap = await databases(dbPort, "kong_%_snap_%");
    assert.equal(snap.length, 1, "the snapshot is intact");
    await injectFault(dbPort, undefined);
    const rerun = await up(stack, upgrade, "the rerun, with the cause fixed, completes the upgrade");
    assert.ok(rerun.ok);
    assert.ok(rerun.timeline.filter((e) => /^(preflight|stop|snapshot)-/.test(e.name)).every((e) => e.op === "same"), "completed steps are not repeated");
    assert.equal(await readEntities(19001), EXPECTED);
    assert.ok(!container(`${stack}-kong-${slug(X)}-node-0`).exists);
    cleanup(stack);
}

async function chainRollbackAfterFault(): Promise<void> {
    const stack = "rehearsal-c";
    const { cfg, dbPort } = await freshWithFault(stack, 20000);
    const upgrade = { ...cfg, upgrade: { to: FIRST_HOP, restoreStrategy: "copy", canary: false } };
    assert.ok(!(await up(stack, upgrade, `upgrade to ${FIRST_HOP} that fails in migrations up (no canary)`)).ok);
    const rollback = { ...cfg, upgrade: { to: FIRST_HOP, restoreStrategy: "copy", rollback: true } };
    assert.ok((await up(stack, rollback, "roll back instead of rerunning")).ok);
    assert.ok(container(`${stack}-kong-${slug(X)}-node-0`).running, "X serves again (it was only stopped)");
    assert.equal(await readEntities(20001), EXPECTED);
    const kept = await databases(dbPort, "kong_%_snap_%");
    assert.equal(kept.length, 1, "the snapshot is kept (copy restore)");
    await injectFault(dbPort, undefined);
    const retry = await up(stack, { ...cfg, upgrade: { to: FIRST_HOP, restoreStrategy: "copy" } }, "retry the upgrade");
    assert.ok(retry.ok);
    writeFileSync(path.join(WORK, "upgrade-offline-timeline.json"), JSON.stringify(retry.timeline, null, 1)); // read by npm run bench
    const after = await databases(dbPort, "kong_%_snap_%");
    assert.equal(after.length, 2, "a fresh snapshot, the earlier one kept");
    assert.equal(await readEntities(20001), EXPECTED);
    cleanup(stack);
}

/** Requests through X's proxy every 100 ms while `during` runs: when each answered, and how. */
async function probeProxy<T>(port: number, during: () => Promise<T>): Promise<[T, Array<{ at: number; status: number }>]> {
    const seen: Array<{ at: number; status: number }> = [];
    let running = true;
    const loop = (async () => {
        while (running) {
            const at = Date.now();
            const status = await fetch(`http://127.0.0.1:${port}/orders`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status, () => 0);
            seen.push({ at, status });
            await sleep(100);
        }
    })();
    try {
        return [await during(), seen];
    } finally {
        running = false;
        await loop;
    }
}

/**
 * The canary catches a data-dependent failure before X stops: 3.6.1's migration fails only while a
 * plugin with a config Y rejects exists. X's proxy is probed every 100 ms throughout: every probe is
 * answered, no snapshot is taken, X is never stopped, nothing of the canary is left. The plugin is
 * fixed through X's Admin API and the same `up` completes; its forecast is set against the window.
 */
async function chainCanary(): Promise<string> {
    const stack = "rehearsal-j";
    cleanup(stack);
    const port = 28000;
    const dbPort = port + 7000;
    const cfg = base(stack, port, 1);
    assert.ok((await up(stack, cfg, `fresh Kong ${X}, 1 node`)).ok);
    await writeEntities(port + 1);
    const plugin = await admin(port + 1, "POST", "/plugins", { name: "rate-limiting", config: { minute: 5, policy: "local" } });
    await withDb(dbPort, "kong", (c) => c.query(`CREATE TABLE kong_sim_faults (name text, when_plugin text, when_config jsonb, message text);
        INSERT INTO kong_sim_faults VALUES ('022_350_to_360', 'rate-limiting', '{"policy": "local"}', 'schema violation (config.policy: expected one of: cluster, redis)')`));
    await sleep(1500); // the node's router picks the routes up
    const upgrade = { ...cfg, upgrade: { to: Y, via: HOPS } };
    const canary = `canary-${slug(X)}-to-${slug(Y)}`;
    const [failed, probes] = await probeProxy(port, () => up(stack, upgrade, `upgrade ${VERSIONS.join(" → ")} with a plugin 3.6.1 rejects, X's proxy probed throughout`));
    assert.ok(!failed.ok, "the canary must fail the run");
    assert.ok(failed.timeline.some((e) => e.name === canary && !e.ok), "the canary failed");
    assert.ok(!failed.timeline.some((e) => /^(stop|snapshot|migrations)-/.test(e.name)), "no stop, snapshot or migration step ran");
    const answered = (status: number) => (SIMULATED ? status === 200 : status > 0);
    assert.ok(probes.length > 20 && probes.every((p) => answered(p.status)), `every probe answered (${probes.filter((p) => !answered(p.status)).length} of ${probes.length} not)`);
    assert.ok(container(`${stack}-kong-${slug(X)}-node-0`).running, "X was never stopped");
    assert.deepEqual(await databases(dbPort, "kong_%_snap_%"), [], "no snapshot taken");
    assert.deepEqual(await databases(dbPort, "kong_%_canary_%"), [], "no clone left");
    assert.equal(sh(["docker", "ps", "-aq", "--filter", "label=kong-upgrade.role=canary", "--filter", `label=kong-upgrade.stack=${stack}`]).out, "", "no canary container left");
    process.stdout.write(`canary: caught the failure before X stopped; ${probes.length} proxy requests during the run, all answered\n`);

    await admin(port + 1, "PATCH", `/plugins/${String(plugin.id)}`, { config: { minute: 5, policy: "cluster" } });
    const run = await up(stack, upgrade, "the same up, after the plugin was fixed through X's Admin API");
    assert.ok(run.ok, "the upgrade completes once the plugin is fixed");
    assert.equal(((await admin(port + 1, "GET", "/")) as { version: string }).version, Y);
    assert.equal(await readEntities(port + 1), EXPECTED);
    assert.deepEqual(await databases(dbPort, "kong_%_canary_%"), [], "no clone left");
    const state = JSON.parse(readFileSync(path.join(WORK, `${stack}.state.json`), "utf8")) as { resources: Record<string, { name: string; outputs: { stdout?: string } }> };
    const stdout = Object.values(state.resources).find((r) => r.name === canary)!.outputs.stdout!;
    const result = JSON.parse(stdout.trim().split("\n").pop()!) as { canarySeconds: number; forecast: { windowSeconds: number; parts: Record<string, number> };
        stepStartup?: { steps: number; perStep: number; databaseModules: number } };
    const canaryEntry = run.timeline.find((e) => e.name === canary)!;
    const window = downtime(run.timeline, slug(X), slug(Y));
    writeFileSync(path.join(WORK, "upgrade-canary-timeline.json"), JSON.stringify({ timeline: run.timeline, forecast: result.forecast, stepStartup: result.stepStartup }, null, 1)); // read by npm run bench
    cleanup(stack);
    return `canary ${((canaryEntry.end - canaryEntry.start) / 1000).toFixed(1)}s before X stopped; forecast window ${result.forecast.windowSeconds.toFixed(1)}s; actual ${window}`;
}

async function chainOnlineSnapshot(): Promise<void> {
    const stack = "rehearsal-d";
    cleanup(stack);
    const cfg = base(stack, 21000, 1);
    assert.ok((await up(stack, cfg, `fresh Kong ${X}, 1 node`)).ok);
    await writeEntities(21001);
    await sleep(1500); // the node's router picks the routes up
    const [run, probes] = await probeProxy(21000, () => up(stack, { ...cfg, upgrade: { to: FIRST_HOP, onlineSnapshot: true } },
        `upgrade to ${FIRST_HOP} with an online snapshot, X's proxy probed throughout`));
    assert.ok(run.ok);
    const snap = run.timeline.find((e) => e.name.startsWith("snapshot-"))!;
    const stop = run.timeline.find((e) => e.name.startsWith("stop-"))!;
    assert.ok(snap.end <= stop.start, "the snapshot is taken before X stops");
    const whileSnapshot = probes.filter((p) => p.at >= snap.start && p.at <= snap.end);
    assert.ok(whileSnapshot.length > 0, "the proxy was probed during the snapshot");
    // The stand-in routes /orders itself (200); real Kong proxies to an upstream that does not exist
    // here (502/503), which still proves the node answered.
    const answered = (status: number) => (SIMULATED ? status === 200 : status > 0);
    assert.ok(probes.filter((p) => p.at < stop.start).every((p) => answered(p.status)), "X proxied until it was stopped, snapshot included");
    process.stdout.write(`online snapshot: ${whileSnapshot.length} proxy requests during the snapshot, all answered\n`);
    assert.equal(await readEntities(21001), EXPECTED);
    writeFileSync(path.join(WORK, "upgrade-online-timeline.json"), JSON.stringify(run.timeline, null, 1)); // read by npm run bench
    cleanup(stack);
}

/** The superuser password the database-superuser step generated, from the engine double's state. */
function superuserPassword(stack: string): string {
    const state = JSON.parse(readFileSync(path.join(WORK, `${stack}.state.json`), "utf8")) as { resources: Record<string, { name: string; outputs: { stdout?: string } }> };
    const step = Object.values(state.resources).find((r) => r.name === "database-superuser")!;
    return (JSON.parse(step.outputs.stdout!.trim().split("\n").pop()!) as { password: string }).password;
}

/** Whether PostgreSQL accepts `user`/`password` (undefined) or its error code (28P01: refused). */
async function login(port: number, user: string, password: string): Promise<string | undefined> {
    const c = new Client({ host: "127.0.0.1", port, user, password, database: "postgres" });
    try {
        await c.connect();
        await c.end();
        return undefined;
    } catch (e) {
        return (e as { code?: string }).code ?? (e as Error).message;
    }
}

/** Password rotation on a running 2-node cluster: Kong's role and the embedded superuser, proxy probed throughout. */
async function chainRotation(): Promise<void> {
    const stack = "rehearsal-i";
    cleanup(stack);
    const port = 24000;
    const dbPort = port + 7000;
    const cfg = base(stack, port, 2);
    assert.ok((await up(stack, cfg, `fresh Kong ${X}, 2 nodes, superuser password generated`)).ok);
    await writeEntities(port + 1);
    await sleep(1500); // the nodes' routers pick the routes up
    const superOld = superuserPassword(stack);
    assert.notEqual(superOld, PASSWORD, "the superuser's password is not Kong's");
    for (const i of [0, 1]) {
        const env = sh(["docker", "inspect", "-f", "{{json .Config.Env}}", `${stack}-kong-${slug(X)}-node-${i}`]).out;
        assert.ok(!env.includes(superOld), "no Kong container holds the superuser's password");
    }
    const [kongNew, superNew] = ["rotated-Kong-Pw-81d", "rotated-Super-Pw-33a"];
    const rotated = { ...cfg, database: { ...(cfg.database as Config), password: kongNew, adminPassword: superNew } };
    // Both nodes' proxies probed at the same instants, every 100 ms: a tick is answered when either
    // node answers it. (Two independent probe loops matched within 150 ms count a request as lost
    // whenever the loop of the node that is up lags more than that behind the other; lost ticks are printed.)
    const answered = (status: number) => (SIMULATED ? status === 200 : status > 0);
    const ticks: Array<{ at: number; statuses: number[] }> = [];
    let probing = true;
    const probe = (async () => {
        while (probing) {
            const at = Date.now();
            const statuses = await Promise.all([port, port + 10].map((p) =>
                fetch(`http://127.0.0.1:${p}/orders`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status, () => 0)));
            ticks.push({ at, statuses });
            await sleep(100);
        }
    })();
    let run: { ok: boolean; timeline: TimelineEntry[] };
    try {
        run = await up(stack, rotated, "rotate Kong's and the superuser's passwords, proxies probed every 100 ms");
    } finally {
        probing = false;
        await probe;
    }
    assert.ok(run.ok, "the rotation failed");
    const lost = ticks.filter((t) => !t.statuses.some(answered));
    process.stdout.write(`rotation: ${ticks.length} probes of both nodes, ${lost.length} unanswered by either node` +
        `${lost.length ? `: ${lost.map((t) => `${new Date(t.at).toISOString().slice(11, 23)} ${t.statuses.join("/")}`).join(", ")}` : ""}\n`);
    assert.ok(ticks.length > 20, "probed throughout");
    assert.equal(lost.length, 0, "every probe answered by some node");
    const order = (name: string) => run.timeline.find((e) => e.name === name);
    assert.ok(order("database-superuser")!.op === "update" && order("database-role")!.op === "update", "both passwords changed in place");
    const firstNode = Math.min(...run.timeline.filter((e) => /-node-\d$/.test(e.name) && e.op !== "same").map((e) => e.start));
    assert.ok(order("database-role")!.end <= firstNode, "the server accepts the new password before any node uses it");
    assert.equal(await login(dbPort, "kong", PASSWORD), "28P01", "Kong's old password is refused");
    assert.equal(await login(dbPort, "kong", kongNew), undefined);
    assert.equal(await login(dbPort, "postgres", superOld), "28P01", "the superuser's old password is refused");
    assert.equal(await login(dbPort, "postgres", superNew), undefined);
    await admin(port + 1, "POST", "/consumers", { username: "carol" });
    assert.ok(((await admin(port + 11, "GET", "/consumers")).data as Array<{ username: string }>).some((c) => c.username === "carol"),
        "the Admin API writes and reads with the new password");
    const again = await up(stack, rotated, "the same configuration again");
    assert.ok(again.ok && again.timeline.every((e) => e.op === "same"), "a rotated stack is steady");
    cleanup(stack);
}

/** Hybrid: data planes answer through the control plane's downtime, then move to Y one at a time. */
async function chainHybrid(): Promise<void> {
    const stack = "rehearsal-e";
    cleanup(stack);
    const port = 22000;
    const cfg = base(stack, port, 1);
    const kong = { ...(cfg.kong as Config), role: "hybrid", dataPlanes: 2,
        ports: { proxy: port, admin: port + 1, status: port + 100, dpProxy: port + 200, dpStatus: port + 300 } };
    delete (kong as { smokePath?: string }).smokePath;
    const hybrid = { ...cfg, kong };
    assert.ok((await up(stack, hybrid, `fresh hybrid Kong ${X}: 1 control plane, 2 data planes`)).ok);
    await writeEntities(port + 1);
    const dpProxy = [port + 200, port + 210];
    for (let i = 0; i < 40; i++) {
        const ok = await Promise.all(dpProxy.map((p) => fetch(`http://127.0.0.1:${p}/orders`).then((r) => r.status === 200, () => false)));
        if (ok.every(Boolean)) break;
        assert.ok(i < 39, "data planes never received the routes from the control plane");
        await sleep(250);
    }
    const [[run, probes1], probes0] = await probeProxy(dpProxy[0], () => probeProxy(dpProxy[1],
        () => up(stack, { ...hybrid, upgrade: { to: FIRST_HOP } }, `upgrade the hybrid cluster to ${FIRST_HOP}, data planes probed throughout`)));
    assert.ok(run.ok, "hybrid upgrade failed");
    const cpStop = run.timeline.find((e) => e.name === `stop-kong-${slug(X)}`)!;
    for (const [i, probes] of [probes0, probes1].entries()) {
        const dpStop = run.timeline.find((e) => e.name === `stop-kong-${slug(X)}-dp-${i}`)!;
        const during = probes.filter((p) => p.at >= cpStop.start && p.at < dpStop.start);
        assert.ok(during.length > 0 && during.every((p) => p.status === 200), `data plane ${i} answered through the control plane's downtime`);
        process.stdout.write(`hybrid: data plane ${i} answered ${during.length} requests while the control plane was down or new\n`);
    }
    assert.ok(container(`${stack}-kong-${slug(FIRST_HOP)}-dp-0`).running && container(`${stack}-kong-${slug(FIRST_HOP)}-dp-1`).running);
    assert.ok(!container(`${stack}-kong-${slug(X)}-dp-0`).exists && !container(`${stack}-kong-${slug(X)}-cp-0`).exists, "X is gone");
    assert.equal(await readEntities(port + 1), EXPECTED, "entities through Y's control plane");
    for (const p of dpProxy) assert.equal((await fetch(`http://127.0.0.1:${p}/orders`)).status, 200, "Y's data planes route");

    assert.ok((await up(stack, { ...hybrid, upgrade: { to: FIRST_HOP, rollback: true } }, "roll the hybrid cluster back: data planes first")).ok);
    assert.ok(container(`${stack}-kong-${slug(X)}-dp-0`).running && container(`${stack}-kong-${slug(X)}-cp-0`).running);
    assert.ok(!container(`${stack}-kong-${slug(FIRST_HOP)}-dp-0`).exists);
    assert.equal(await readEntities(port + 1), EXPECTED);
    cleanup(stack);
}

// ---- two Docker hosts: a second dockerd on its own socket and data root ---------------------

const HOST_A = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const HOST_B = "unix:///run/kong-upgrade-rehearsal-b.sock";
const ON_B = { DOCKER_HOST: HOST_B };

/**
 * Starts the second Docker engine (unless one answers there already) and returns how to stop it,
 * or why it could not start. Its own bridge address pool, no default bridge and no iptables
 * rules, so it cannot disturb the first engine's networks; published ports go through docker-proxy.
 */
async function secondDockerd(): Promise<(() => Promise<void>) | string> {
    if (sh(["docker", "info", "--format", "{{.ServerVersion}}"], ON_B).code === 0) return async () => undefined;
    const dir = "/run/kong-upgrade-rehearsal-b";
    mkdirSync(dir, { recursive: true });
    const logFile = path.join(WORK, "dockerd-b.log");
    const log = openSync(logFile, "w");
    const child = spawn("dockerd", ["--host", HOST_B, "--data-root", "/var/lib/kong-upgrade-rehearsal-b", "--exec-root", dir,
        "--pidfile", `${dir}.pid`, "--bridge", "none", "--iptables=false", "--default-address-pool", "base=10.213.0.0/16,size=24"],
    { stdio: ["ignore", log, log], detached: true });
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    let failed: Error | undefined;
    child.on("error", (e) => { failed = e; });
    for (let i = 0; ; i++) {
        if (failed) return `cannot run dockerd: ${failed.message}`;
        if (sh(["docker", "info", "--format", "{{.ServerVersion}}"], ON_B).code === 0) break;
        if (i > 120 || child.exitCode !== null) {
            child.kill("SIGTERM");
            return `the second dockerd did not start:\n${readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n")}`;
        }
        await sleep(250);
    }
    return async () => {
        child.kill("SIGTERM");
        await exited;
    };
}

/** An address of this machine that containers of both engines reach (not loopback). */
function machineAddress(): string {
    const all = Object.entries(os.networkInterfaces()).flatMap(([name, list]) =>
        (list ?? []).filter((a) => a.family === "IPv4" && !a.internal).map((a) => ({ name, address: a.address })));
    const chosen = all.find((a) => !/^(docker|br-|veth)/.test(a.name)) ?? all[0];
    assert.ok(chosen, "this machine has no non-loopback IPv4 address for the containers to reach the database at");
    return chosen.address;
}

/**
 * A cluster that outgrows one Docker host: host b joins the running cluster at node 1 (node 0
 * stays untouched), the upgrade replaces each node on its own host, the rollback brings X back
 * on both. The database is external, as several hosts require: PostgreSQL on this machine's
 * network, reached by the containers of both engines at the machine's address.
 */
async function chainHosts(): Promise<void> {
    const stack = "rehearsal-f";
    const stopB = await secondDockerd();
    if (typeof stopB === "string") {
        // A machine that cannot run a second engine (no root, no dockerd binary) skips this chain, saying why.
        say(`two-host chain skipped: ${stopB}`);
        return;
    }
    const dbContainer = `${stack}-external-database`;
    try {
        say(`second Docker host ${HOST_B}: Kong images ${SIMULATED ? "built there from the same root filesystem" : "copied there from the first"}`);
        const images = [X, FIRST_HOP].map((v) => `${KONG_IMAGE}:${v}`);
        const built = SIMULATED
            ? spawnSync("bash", ["test/rehearsal/images.sh", X, FIRST_HOP], { cwd: ROOT, stdio: "inherit", env: { ...process.env, ...ON_B } })
            : spawnSync("bash", ["-c", `docker save ${images.join(" ")} | DOCKER_HOST=${HOST_B} docker load`], { cwd: ROOT, stdio: "inherit" });
        assert.equal(built.status, 0, "putting the images on the second host failed");
        cleanup(stack);
        cleanup(stack, ON_B);
        const dbPort = 23432;
        sh(["docker", "rm", "-f", dbContainer]);
        const started = sh(["docker", "run", "-d", "--name", dbContainer, "--label", `kong-upgrade.stack=${stack}`, "--network", "host",
            "-e", `PGPORT=${dbPort}`, "-e", "POSTGRES_USER=postgres", "-e", `POSTGRES_PASSWORD=${PASSWORD}`, POSTGRES_IMAGE]);
        assert.equal(started.code, 0, started.out);
        // The operator's part of an external database: Kong's role and database.
        for (let i = 0; ; i++) {
            const c = new Client({ host: "127.0.0.1", port: dbPort, user: "postgres", password: PASSWORD, database: "postgres" });
            try {
                await c.connect();
                await c.query(`CREATE ROLE kong LOGIN CREATEDB PASSWORD '${PASSWORD}'`);
                await c.query("CREATE DATABASE kong OWNER kong");
                await c.end();
                break;
            } catch (e) {
                await c.end().catch(() => undefined);
                assert.ok(i < 120, `the external database did not come up: ${(e as Error).message}`);
                await sleep(250);
            }
        }
        const port = 23000;
        const containerHost = machineAddress();
        const one = (nodes: number, hosts: unknown[]): Config => ({
            kong: { version: X, image: KONG_IMAGE, nodes, drainSeconds: 2, healthTimeoutSeconds: 90,
                ports: { proxy: port, admin: port + 1, status: port + 100 }, ...(SIMULATED ? { smokePath: "/orders" } : {}) },
            database: { mode: "external", host: "127.0.0.1", port: dbPort, containerHost, password: PASSWORD },
            docker: { hosts },
        });
        const a = { name: "a", host: HOST_A };
        const b = { name: "b", host: HOST_B, firstNode: 1 };
        assert.ok((await up(stack, one(1, [a]), `Kong ${X}, one node on host a, external database`)).ok);
        await writeEntities(port + 1);
        const node0 = container(`${stack}-kong-${slug(X)}-node-0`);

        const grown = await up(stack, one(2, [a, b]), "host b joins at node 1: node 0 stays, node 1 starts on b");
        assert.ok(grown.ok);
        assert.equal(grown.timeline.find((e) => e.name === `kong-${slug(X)}-node-0`)?.op, "same", "node 0 is not touched");
        assert.equal(container(`${stack}-kong-${slug(X)}-node-0`).id, node0.id);
        assert.ok(container(`${stack}-kong-${slug(X)}-node-1`, ON_B).running, "node 1 runs on host b");
        assert.ok(!container(`${stack}-kong-${slug(X)}-node-1`).exists, "and not on host a");

        assert.ok((await up(stack, { ...one(2, [a, b]), upgrade: { to: FIRST_HOP } }, `upgrade to ${FIRST_HOP} across both hosts`)).ok);
        assert.ok(container(`${stack}-kong-${slug(FIRST_HOP)}-node-0`).running && container(`${stack}-kong-${slug(FIRST_HOP)}-node-1`, ON_B).running,
            "each of Y's nodes runs on its X node's host");
        assert.ok(!container(`${stack}-kong-${slug(X)}-node-0`).exists && !container(`${stack}-kong-${slug(X)}-node-1`, ON_B).exists, "X is gone from both hosts");
        assert.equal(await readEntities(port + 11), EXPECTED, "entities through Y's node on host b");

        assert.ok((await up(stack, { ...one(2, [a, b]), upgrade: { to: FIRST_HOP, rollback: true } }, "roll back across both hosts")).ok);
        assert.ok(container(`${stack}-kong-${slug(X)}-node-0`).running && container(`${stack}-kong-${slug(X)}-node-1`, ON_B).running);
        assert.ok(!container(`${stack}-kong-${slug(FIRST_HOP)}-node-1`, ON_B).exists);
        assert.equal(await readEntities(port + 11), EXPECTED, "entities through X's node on host b after the rollback");
        process.stdout.write(`two hosts: node 0 on ${HOST_A}, node 1 on ${HOST_B}, through growth, upgrade and rollback\n`);
    } finally {
        cleanup(stack);
        cleanup(stack, ON_B);
        await stopB();
    }
}

/**
 * A failure mid-upgrade, then tuning edits (kong.lockTimeoutSeconds, upgrade.terminateSessions),
 * then the rerun: it completes and no step that completed before the failure runs again (the
 * engine double honours triggers and ignoreChanges as the engine does). Then a rollback: X serves
 * exactly the data it had before the upgrade.
 */
async function chainTuningRetry(): Promise<void> {
    const stack = "rehearsal-g";
    const { cfg, dbPort } = await freshWithFault(stack, 26000);
    // No canary: the fault is in every copy of the database, so the canary would catch it before X
    // stops; this chain proves a retry inside the window.
    const path_ = { to: Y, via: HOPS, canary: false };
    const failed = await up(stack, { ...cfg, upgrade: path_ }, `upgrade to ${Y} with a failure injected into ${FIRST_HOP}'s migrations up (no canary)`);
    assert.ok(!failed.ok, "the run must fail");
    const completed = failed.timeline.filter((e) => e.ok && e.op !== "same" && e.type === "command:local:Command").map((e) => e.name);
    assert.ok(completed.includes(`stop-kong-${slug(X)}`) && completed.some((n) => n.startsWith("snapshot-")), completed.join(", "));
    await injectFault(dbPort, undefined);
    const k = cfg.kong as Record<string, unknown>;
    const tuned = { ...cfg, kong: { ...k, lockTimeoutSeconds: 900 }, upgrade: { ...path_, terminateSessions: true } };
    const rerun = await up(stack, tuned, "tuning edits (lockTimeoutSeconds, terminateSessions), then the rerun");
    assert.ok(rerun.ok, "the rerun after a tuning edit completes");
    for (const name of completed) {
        const e = rerun.timeline.find((t) => t.name === name);
        assert.equal(e?.op, "same", `${name} completed before the failure and must not run again`);
    }
    assert.equal(await readEntities(26001), EXPECTED);
    const back = await up(stack, { ...tuned, upgrade: { ...path_, terminateSessions: true, rollback: true } }, "roll back");
    assert.ok(back.ok);
    assert.ok(container(`${stack}-kong-${slug(X)}-node-0`).running, "X serves again");
    assert.equal(await readEntities(26001), EXPECTED, "X serves exactly the pre-upgrade data");
    cleanup(stack);
}

/**
 * A kong.env change on a 3-node cluster replaces every node, one at a time: with each node's
 * proxy probed every 100 ms, every probe is answered by some node.
 */
async function chainRolling(): Promise<void> {
    const stack = "rehearsal-h";
    cleanup(stack);
    const port = 27000;
    const cfg = base(stack, port, 3);
    assert.ok((await up(stack, cfg, `fresh Kong ${X}, 3 nodes`)).ok);
    await writeEntities(port + 1);
    const before = [0, 1, 2].map((i) => container(`${stack}-kong-${slug(X)}-node-${i}`).id);
    const k = cfg.kong as Record<string, unknown>;
    const ticks: Array<{ at: number; answered: number[] }> = [];
    let running = true;
    const probe = (async () => {
        while (running) {
            const at = Date.now();
            const answered: number[] = [];
            await Promise.all([0, 1, 2].map(async (i) => {
                const status = await fetch(`http://127.0.0.1:${port + 10 * i}/orders`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status, () => 0);
                if (status > 0 && status < 500) answered.push(i);
            }));
            ticks.push({ at, answered });
            await sleep(100);
        }
    })();
    let run: { ok: boolean; timeline: TimelineEntry[] };
    try {
        run = await up(stack, { ...cfg, kong: { ...k, env: { KONG_LOG_LEVEL: "debug" } } }, "kong.env changed: nodes roll one at a time");
    } finally {
        running = false;
        await probe;
    }
    assert.ok(run.ok);
    const after = [0, 1, 2].map((i) => container(`${stack}-kong-${slug(X)}-node-${i}`).id);
    assert.ok(after.every((id, i) => id && id !== before[i]), "every node was replaced");
    const entry = (name: string) => run.timeline.find((e) => e.name === name)!;
    for (let i = 1; i < 3; i++) {
        assert.ok(entry(`kong-${slug(X)}-node-${i}`).start >= entry(`status-kong-${slug(X)}-node-${i - 1}`).end,
            `node ${i} goes down only after node ${i - 1} answers /status`);
    }
    const silent = ticks.filter((t) => t.answered.length === 0);
    say(`${ticks.length} probes during the rolling change, ${silent.length} unanswered`);
    assert.ok(ticks.length > 20, "probed throughout");
    assert.equal(silent.length, 0, "every probe answered by some node");
    assert.equal(await readEntities(port + 1), EXPECTED);
    cleanup(stack);
}

export async function rehearse(): Promise<string> {
    mkdirSync(WORK, { recursive: true });
    if (SIMULATED || POSTGRES_IMAGE === "kong-upgrade-postgres:15") {
        const built = spawnSync("bash", ["test/rehearsal/images.sh", ...(SIMULATED ? VERSIONS : [])], { cwd: ROOT, stdio: "inherit" });
        assert.equal(built.status, 0, "building the rehearsal images failed");
    }
    // REHEARSAL_ONLY=hybrid (or main, fault, rollback-after-fault, online, hosts, rotation, tuning-retry, rolling, canary) runs that chain alone.
    const only: Record<string, () => Promise<void>> = {
        main: async () => { say(await chainMain()); }, fault: chainFault, "rollback-after-fault": chainRollbackAfterFault, online: chainOnlineSnapshot, hybrid: chainHybrid,
        hosts: chainHosts, rotation: chainRotation, "tuning-retry": chainTuningRetry, rolling: chainRolling, canary: async () => { say(await chainCanary()); },
    };
    const pick = process.env.REHEARSAL_ONLY;
    if (pick) {
        assert.ok(only[pick], `REHEARSAL_ONLY must be one of ${Object.keys(only).join(", ")}`);
        try { await only[pick](); } finally { for (const s of ["rehearsal-a", "rehearsal-b", "rehearsal-c", "rehearsal-d", "rehearsal-e", "rehearsal-f", "rehearsal-g", "rehearsal-h", "rehearsal-i", "rehearsal-j"]) cleanup(s); }
        return `${pick} chain passed`;
    }
    try {
        const window = await chainMain();
        if (SIMULATED) {
            // Faults are injected through the stand-in (table kong_sim_faults); real images skip these chains.
            await chainFault();
            await chainRollbackAfterFault();
            await chainTuningRetry();
            say(await chainCanary());
        } else {
            say(`${KONG_IMAGE}: the fault-injection chains need the Kong stand-in and are skipped`);
        }
        await chainOnlineSnapshot();
        if (SIMULATED) await chainHybrid(); // the stand-in's data planes speak its own configuration exchange
        await chainRolling();
        await chainHosts();
        await chainRotation();
        return window;
    } finally {
        for (const s of ["rehearsal-a", "rehearsal-b", "rehearsal-c", "rehearsal-d", "rehearsal-e", "rehearsal-f", "rehearsal-g", "rehearsal-h", "rehearsal-i", "rehearsal-j"]) cleanup(s);
    }
}

if (require.main === module) {
    if (!dockerReachable()) {
        process.stdout.write("No Docker engine is reachable (docker info failed): the rehearsal needs one. Start dockerd and run again.\n");
        process.exit(1);
    }
    rehearse().then((window) => {
        process.stdout.write(process.env.REHEARSAL_ONLY ? `\n${window}\n` : `\nrehearsal passed: ${SIMULATED ? 10 : 5} chains\n${window}\n`);
    }, (e: unknown) => {
        process.stderr.write(`\nrehearsal FAILED: ${(e as Error).message}\n`);
        process.exit(1);
    });
}
