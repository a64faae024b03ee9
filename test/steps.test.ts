// The step programs against a real PostgreSQL and the Kong stand-in, run through the same entry
// point and environment as the Pulumi Commands.
import { strict as assert } from "assert";
import { spawn, ChildProcess } from "child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { DbTarget, StepSpec } from "../steps/lib/spec";
import { stamp } from "../steps/lib/log";
import { dumpFolder, snapshotPrefix } from "../steps/lib/snapshots";
import { TestServer, startPostgres } from "./helpers/postgres";
import { STANDIN, StepRun, cluster, fakeDockerState, kongRun, runStep } from "./helpers/steps";
import { fakeHostState } from "./fake-docker/hosts";

let server: TestServer;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

const PREFIX = (db: DbTarget) => snapshotPrefix("st", db.database, "3.4.3", "3.7.1");
const WHOSE = { stack: "st", hops: ["3.5.0", "3.6.1", "3.7.1"] };

const ENTITIES = ["services", "routes", "consumers", "plugins", "upstreams", "targets"];

/** The entries of `counts` for `tables`: the entity tables these tests write. */
function pick(counts: unknown, tables: string[]): Record<string, number> {
    const c = counts as Record<string, number>;
    return Object.fromEntries(tables.map((t) => [t, c[t]]));
}

function ok(r: StepRun): Record<string, unknown> {
    assert.equal(r.code, 0, `step failed (exit ${r.code}):\n${r.stderr}`);
    return r.result!;
}

async function query<T extends Record<string, unknown>>(db: DbTarget, password: string, sql: string, database = db.database): Promise<T[]> {
    const c = new Client({ host: db.host, port: db.port, user: db.user, password, database });
    await c.connect();
    try {
        return (await c.query<T>(sql)).rows;
    } finally {
        await c.end();
    }
}

/** Every entity row and the migration record: what must come back identical after a restore. */
async function contents(db: DbTarget, password: string): Promise<string> {
    const out: Record<string, unknown> = {};
    for (const t of ["schema_meta", "services", "routes", "consumers", "plugins", "upstreams", "targets"]) {
        out[t] = await query(db, password, `SELECT * FROM ${t} ORDER BY 1, 2`);
    }
    return JSON.stringify(out);
}

async function bootstrapped(label: string, version = "3.4.3"): Promise<{ db: DbTarget; password: string }> {
    const t = await server.kongDatabase(label);
    ok(await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, version) }, t));
    return t;
}

async function writeEntities(db: DbTarget, password: string, n: number): Promise<void> {
    await query(db, password, `
        INSERT INTO services (id, name, host) SELECT gen_random_uuid(), 'svc-' || i, 'upstream-' || i || '.internal' FROM generate_series(1, ${n}) i;
        INSERT INTO routes (id, name, service_id, paths) SELECT gen_random_uuid(), 'route-' || s.name, s.id, ARRAY['/' || s.name] FROM services s;
        INSERT INTO consumers (id, username) SELECT gen_random_uuid(), 'user-' || i FROM generate_series(1, ${n}) i;
        INSERT INTO plugins (id, name, service_id, enabled, config) SELECT gen_random_uuid(), 'rate-limiting', s.id, true, '{"minute": 5, "redis_host": "redis.internal"}' FROM services s;`);
}

const migrate = async (t: { db: DbTarget; password: string }, version: string, phase: "up" | "finish", env: Record<string, string> = {}) =>
    runStep({ step: "migrations", phase, db: t.db, kong: kongRun(t.db, version) }, { ...t, env });

function freePort(): Promise<number> {
    return new Promise((resolve) => {
        const s = net.createServer().listen(0, "127.0.0.1", () => {
            const port = (s.address() as net.AddressInfo).port;
            s.close(() => resolve(port));
        });
    });
}

/** A stand-in Kong node serving /status on `port`, as a container of the cluster would. */
async function startNode(t: { db: DbTarget; password: string }, version: string, env: Record<string, string> = {}): Promise<{ port: number; proc: ChildProcess }> {
    const port = await freePort();
    const prefix = mkdtempSync(path.join(os.tmpdir(), "kong-prefix-"));
    const proc = spawn(STANDIN, ["start"], {
        env: {
            ...process.env, KONG_VERSION: version, KONG_PREFIX: prefix, KONG_PG_HOST: t.db.host, KONG_PG_PORT: String(t.db.port),
            KONG_PG_USER: t.db.user, KONG_PG_PASSWORD: t.password, KONG_PG_DATABASE: t.db.database,
            KONG_STATUS_LISTEN: `127.0.0.1:${port}`, KONG_ADMIN_LISTEN: `127.0.0.1:${port + 1}`, KONG_PROXY_LISTEN: `127.0.0.1:${port + 2}`,
            KONG_CLUSTER_LISTEN: `127.0.0.1:${port + 3}`, ...env,
        },
        stdio: "ignore",
    });
    return { port, proc };
}

/** Creates the databases a snapshot taken in the next 20 seconds would be named. */
async function occupySnapshotNames(db: DbTarget): Promise<void> {
    const now = Date.now();
    const admin = await server.admin();
    try {
        for (let s = 0; s < 20; s++) await admin.query(`CREATE DATABASE "${PREFIX(db)}${stamp(new Date(now + s * 1000))}"`);
    } finally {
        await admin.end();
    }
}

describe("bootstrap", () => {
    it("bootstraps a fresh database once, then leaves it alone", async () => {
        const t = await server.kongDatabase("fresh");
        const first = ok(await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") }, t));
        assert.equal(first.bootstrapped, true);
        const meta = await query<{ subsystem: string; executed: string[] }>(t.db, t.password, "SELECT subsystem, executed FROM schema_meta ORDER BY subsystem");
        // Kong 3.4's subsystems with KONG_PLUGINS=bundled (core and the plugins that ship migrations).
        assert.deepEqual(meta.map((m) => m.subsystem), ["acl", "acme", "basic-auth", "bot-detection", "core", "hmac-auth", "http-log", "ip-restriction",
            "jwt", "key-auth", "oauth2", "post-function", "pre-function", "rate-limiting", "response-ratelimiting", "session"]);
        assert.equal(meta.find((m) => m.subsystem === "core")!.executed.at(-1), "020_330_to_340");
        const second = ok(await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") }, t));
        assert.equal(second.bootstrapped, false);
    });

    it("refuses a database that holds an older Kong schema", async () => {
        const t = await bootstrapped("older");
        const r = await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.5.0") }, t);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /older Kong schema than 3\.5\.0/);
    });
});

describe("upgrade 3.4.3 → 3.7.1 through 3.5 and 3.6", () => {
    it("migrates hop by hop, keeps every entity, and verify confirms it through a 3.7.1 node", async () => {
        const t = await bootstrapped("path");
        await writeEntities(t.db, t.password, 25);
        const before = await query<{ name: string }>(t.db, t.password, "SELECT name FROM services ORDER BY name");
        const docker = fakeDockerState();
        writeFileSync(docker, JSON.stringify({
            "st-kong-3-4-3-node-0": { running: true, health: "healthy", labels: { "kong-upgrade.stack": "st", "kong-upgrade.version": "3.4.3", "kong-upgrade.role": "node" } },
        }));
        const env = { FAKE_DOCKER_STATE: docker };
        const x = cluster("st", "3.4.3", [{ container: "st-kong-3-4-3-node-0" }]);
        ok(await runStep({ step: "preflight", mode: "upgrade", db: t.db, kong: kongRun(t.db, "3.5.0"), cluster: x, to: "3.7.1", snapshotPrefix: PREFIX(t.db) }, { ...t, env }));
        ok(await runStep({ step: "stop", cluster: x, drainSeconds: 5 }, { ...t, env }));
        assert.equal(JSON.parse(readFileSync(docker, "utf8"))["st-kong-3-4-3-node-0"].running, false);
        const snap = ok(await runStep({ step: "snapshot", db: t.db, strategy: "template", prefix: PREFIX(t.db), from: "3.4.3", to: "3.7.1", terminateSessions: false, ...WHOSE }, t));
        assert.deepEqual(pick(snap.entityCounts, ENTITIES), { services: 25, routes: 25, consumers: 25, plugins: 25, upstreams: 0, targets: 0 });

        for (const hop of ["3.5.0", "3.6.1", "3.7.1"]) {
            const up = ok(await migrate(t, hop, "up"));
            assert.equal(up.before, "new");
            const fin = ok(await migrate(t, hop, "finish"));
            assert.equal(fin.after, "up-to-date");
        }
        const core = await query<{ executed: string[]; pending: string[] }>(t.db, t.password, "SELECT executed, pending FROM schema_meta WHERE subsystem = 'core'");
        assert.ok(core[0].executed.includes("023_360_to_370"));
        assert.deepEqual(core[0].pending, []);
        // 3.6's rate-limiting migration ran both halves: up moved redis_host into `redis`, the teardown dropped it
        const plugins = await query<{ config: { redis_host?: string; redis?: { host: string } } }>(t.db, t.password, "SELECT config FROM plugins");
        assert.ok(plugins.every((p) => p.config.redis_host === undefined && p.config.redis?.host === "redis.internal"));
        assert.deepEqual(await query(t.db, t.password, "SELECT name FROM services ORDER BY name"), before);

        const node = await startNode(t, "3.7.1");
        try {
            const y = cluster("st", "3.7.1", [{ container: "y0", port: node.port }]);
            const v = ok(await runStep({ step: "verify", db: t.db, kong: kongRun(t.db, "3.7.1"), cluster: y, timeoutSeconds: 30 },
                { ...t, expect: JSON.stringify(snap) }));
            assert.equal((v.entityCounts as Record<string, number>).services, 25);
        } finally {
            node.proc.kill("SIGQUIT");
        }
    });

    it("verify fails when entities recorded at snapshot time are gone", async () => {
        const t = await bootstrapped("lost");
        await writeEntities(t.db, t.password, 3);
        const snap = ok(await runStep({ step: "snapshot", db: t.db, strategy: "template", prefix: PREFIX(t.db), from: "3.4.3", to: "3.7.1", terminateSessions: false, ...WHOSE }, t));
        await query(t.db, t.password, "DELETE FROM consumers WHERE username = 'user-1'");
        const node = await startNode(t, "3.4.3");
        try {
            const r = await runStep({ step: "verify", db: t.db, kong: kongRun(t.db, "3.4.3"), cluster: cluster("st", "3.4.3", [{ container: "n", port: node.port }]), timeoutSeconds: 30 },
                { ...t, expect: JSON.stringify(snap) });
            assert.equal(r.code, 1);
            assert.match(r.stderr, /consumers 2 of 3/);
        } finally {
            node.proc.kill("SIGQUIT");
        }
    });

    it("a failure in the middle of up stops the step with Kong's error, and a rerun completes", async () => {
        const t = await bootstrapped("midup", "3.5.0");
        // 3.5 → 3.6: core 022, then acme 003 and opentelemetry 001 (both with a teardown), then rate-limiting 006.
        const failed = await migrate(t, "3.6.1", "up", { KONG_SIM_FAIL_UP_AT: "006_350_to_360" });
        assert.equal(failed.code, 1);
        assert.match(failed.stderr, /failed to run migration '006_350_to_360' up: injected failure/);
        const state = await query<{ subsystem: string; pending: string[] }>(t.db, t.password,
            "SELECT subsystem, pending FROM schema_meta WHERE cardinality(pending) > 0 ORDER BY subsystem");
        assert.deepEqual(state, [{ subsystem: "acme", pending: ["003_350_to_360"] }, { subsystem: "opentelemetry", pending: ["001_331_to_332"] }]);
        const rerun = ok(await migrate(t, "3.6.1", "up"));
        assert.equal(rerun.before, "pending");
        ok(await migrate(t, "3.6.1", "finish"));
        const list = await runStep({ step: "migrations", phase: "finish", db: t.db, kong: kongRun(t.db, "3.6.1") }, t);
        assert.equal(ok(list).before, "up-to-date");
    });

    it("a migration step runs ONE Kong container: the list before, the command and the list after inside it", async () => {
        // 3.5 → 3.6: migrations with a teardown, so `up` leaves them pending (3.4 → 3.5 has none in Kong 3.7.1).
        const t = await bootstrapped("onecontainer", "3.5.0");
        const state = fakeDockerState();
        // Through the (fake) docker CLI, not the local stand-in: `docker run … kong:<v> sh -c <script>`.
        const env = { FAKE_DOCKER_STATE: state, FAKE_DOCKER_KONG: STANDIN, KONG_UPGRADE_KONG_COMMAND: "" };
        const up = ok(await migrate(t, "3.6.1", "up", env));
        assert.deepEqual([up.before, up.after, up.ran, up.kongContainers], ["new", "pending", 1, 1]);
        assert.ok((up.kongSeconds as number) > 0 && (up.listSeconds as number) > 0, "the command and the lists are timed apart");
        const fin = ok(await migrate(t, "3.6.1", "finish", env));
        assert.deepEqual([fin.before, fin.after, fin.ran], ["pending", "up-to-date", 1]);
        const again = ok(await migrate(t, "3.6.1", "finish", env));
        assert.deepEqual([again.before, again.after, again.ran, again.kongSeconds], ["up-to-date", "up-to-date", 0, 0]);
        const runs = readFileSync(`${state}.log`, "utf8").trim().split("\n").map((l) => JSON.parse(l) as string[]).filter((a) => a[0] === "run");
        assert.equal(runs.length, 3, "one container per step");
        for (const argv of runs) assert.deepEqual(argv.slice(-4, -1), ["kong:3.6.1", "sh", "-c"]);
        const pending = await query<{ subsystem: string }>(t.db, t.password, "SELECT subsystem FROM schema_meta WHERE cardinality(pending) > 0");
        assert.deepEqual(pending, []);
    });

    it("up that Kong aborts because another runner holds the lock is a failure, not a success", async () => {
        const t = await bootstrapped("abort", "3.5.0");
        // finish does not wait for the lock: Kong prints "aborted: …" and exits 0.
        ok(await migrate(t, "3.6.1", "up"));
        await query(t.db, t.password, "INSERT INTO locks (key, owner, ttl) VALUES ('migrations', 'other-node', now() + interval '1 minute')");
        const r = await migrate(t, "3.6.1", "finish");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /another node held the migrations lock; nothing was migrated/);
    });
});

describe("preflight", () => {
    const upgradeSpec = (db: DbTarget, hop = "3.5.0"): StepSpec => ({
        step: "preflight", mode: "upgrade", db, kong: kongRun(db, hop), cluster: cluster("pf", "3.4.3", [{ container: "pf-kong-3-4-3-node-0" }]),
        to: "3.7.1", snapshotPrefix: PREFIX(db),
    });
    const xRunning = () => {
        const state = fakeDockerState();
        writeFileSync(state, JSON.stringify({ "pf-kong-3-4-3-node-0": { running: true, health: "healthy", labels: { "kong-upgrade.stack": "pf", "kong-upgrade.version": "3.4.3", "kong-upgrade.role": "node" } } }));
        return state;
    };

    it("refuses pending migrations of an earlier upgrade", async () => {
        const t = await bootstrapped("pending", "3.5.0");
        ok(await migrate(t, "3.6.1", "up")); // 3.6's plugin migrations left pending, as an upgrade that never ran finish
        const r = await runStep(upgradeSpec(t.db, "3.7.1"), { ...t, env: { FAKE_DOCKER_STATE: xRunning() } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /an earlier upgrade was not finished/);
    });

    it("after the stop, recognises this upgrade's own progress (X stopped, its snapshot taken, a hop's migrations pending)", async () => {
        // X is 3.5.0 and the first hop 3.6.1, whose migrations have a teardown: `up` leaves them
        // pending (3.4 → 3.5 has none in Kong 3.7.1, so a 3.4.3 X would leave nothing pending).
        const t = await bootstrapped("own", "3.5.0");
        const state = fakeDockerState();
        writeFileSync(state, JSON.stringify({ "pf-kong-3-5-0-node-0": { running: false, health: "", labels: { "kong-upgrade.stack": "pf", "kong-upgrade.version": "3.5.0", "kong-upgrade.role": "node" } } }));
        // This upgrade's snapshot is taken at X, as the runbook does, then hidden under another name
        // to stand for "no snapshot of this upgrade" until it is named back.
        const snap = ok(await runStep({ step: "snapshot", db: t.db, strategy: "template", prefix: PREFIX(t.db), from: "3.5.0", to: "3.7.1", terminateSessions: false, stack: "st", hops: ["3.6.1", "3.7.1"] }, t));
        const name = String(snap.snapshot);
        await query(t.db, t.password, `ALTER DATABASE "${name}" RENAME TO "hidden_${t.db.database}"`, "postgres");
        ok(await migrate(t, "3.6.1", "up")); // the first hop ran up, then the run failed
        const spec = { ...upgradeSpec(t.db, "3.6.1"), cluster: cluster("pf", "3.5.0", [{ container: "pf-kong-3-5-0-node-0" }]), hops: ["3.6.1", "3.7.1"] } as StepSpec;
        // X stopped but no snapshot of this upgrade: not this upgrade's doing, refused as before.
        const before = await runStep(spec, { ...t, env: { FAKE_DOCKER_STATE: state } });
        assert.equal(before.code, 1, before.stderr);
        assert.match(before.stderr, /an earlier upgrade was not finished/);
        await query(t.db, t.password, `ALTER DATABASE "hidden_${t.db.database}" RENAME TO "${name}"`, "postgres");
        const again = ok(await runStep(spec, { ...t, env: { FAKE_DOCKER_STATE: state } }));
        assert.match(JSON.stringify(again.notes), /this upgrade is under way: 3\.5\.0 is stopped/);
        assert.match(JSON.stringify(again.notes), /pending migrations belong to this upgrade \(3\.6\.1 → 3\.7\.1\)/);
    });

    it("refuses a live migrations lock and reports an expired one", async () => {
        const t = await bootstrapped("lock");
        await query(t.db, t.password, "INSERT INTO locks (key, owner, ttl) VALUES ('migrations', 'node-a', now() + interval '5 minutes')");
        const live = await runStep(upgradeSpec(t.db), { ...t, env: { FAKE_DOCKER_STATE: xRunning() } });
        assert.equal(live.code, 1);
        assert.match(live.stderr, /another runner holds Kong's migrations lock \(owner node-a/);
        await query(t.db, t.password, "UPDATE locks SET ttl = now() - interval '1 minute'");
        const expired = ok(await runStep(upgradeSpec(t.db), { ...t, env: { FAKE_DOCKER_STATE: xRunning() } }));
        assert.match(JSON.stringify(expired.notes), /expired migrations lock \(owner node-a/);
    });

    it("refuses a Y cluster that runs but was never promoted", async () => {
        const t = await bootstrapped("stray");
        const state = xRunning();
        const world = JSON.parse(readFileSync(state, "utf8")) as Record<string, unknown>;
        world["pf-kong-3-7-1-node-0"] = { running: true, health: "healthy", labels: { "kong-upgrade.stack": "pf", "kong-upgrade.version": "3.7.1", "kong-upgrade.role": "node" } };
        writeFileSync(state, JSON.stringify(world));
        const r = await runStep(upgradeSpec(t.db), { ...t, env: { FAKE_DOCKER_STATE: state } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /promote 3\.7\.1 first/);
    });

    it("refuses when X's nodes do not exist (wrong kong.version)", async () => {
        const t = await bootstrapped("nonodes");
        const r = await runStep(upgradeSpec(t.db), { ...t, env: { FAKE_DOCKER_STATE: fakeDockerState() } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /pf-kong-3-4-3-node-0 do not exist/);
    });

    it("a wrong password is a clear error and changes nothing", async () => {
        const t = await bootstrapped("badpw");
        const r = await runStep(upgradeSpec(t.db), { password: "not-the-password", env: { FAKE_DOCKER_STATE: xRunning() } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /password authentication failed\. Check database\.password/);
        const snap = await runStep({ step: "snapshot", db: t.db, strategy: "template", prefix: PREFIX(t.db), from: "3.4.3", to: "3.7.1", terminateSessions: false, ...WHOSE },
            { password: "not-the-password" });
        assert.equal(snap.code, 1);
        const dbs = await query<{ datname: string }>(t.db, t.password, `SELECT datname FROM pg_database WHERE datname LIKE '${t.db.database}%'`);
        assert.deepEqual(dbs.map((d) => d.datname), [t.db.database]);
    });
});

describe("several Docker hosts", () => {
    const A = "unix:///run/docker-a.sock";
    const B = "ssh://ops@edge-b";
    const node = (name: string, version: string) =>
        ({ running: true, health: "healthy", labels: { "kong-upgrade.stack": "mh", "kong-upgrade.version": version, "kong-upgrade.role": "node" } });
    /** X's three nodes: 0 and 2 on host A, 1 on host B. */
    function spread(): { state: string; x: ReturnType<typeof cluster> } {
        const state = fakeDockerState();
        writeFileSync(fakeHostState(state, A), JSON.stringify({ "mh-kong-3-4-3-node-0": node("", "3.4.3"), "mh-kong-3-4-3-node-2": node("", "3.4.3") }));
        writeFileSync(fakeHostState(state, B), JSON.stringify({ "mh-kong-3-4-3-node-1": node("", "3.4.3") }));
        const x = cluster("mh", "3.4.3", [0, 1, 2].map((i) => ({ container: `mh-kong-3-4-3-node-${i}` })));
        x.nodes.forEach((n, i) => { n.docker = { host: i === 1 ? B : A }; });
        x.hosts = [{ host: A }, { host: B }];
        return { state, x };
    }
    const running = (state: string, host: string) =>
        Object.entries(JSON.parse(readFileSync(fakeHostState(state, host), "utf8")) as Record<string, { running: boolean }>)
            .filter(([, c]) => c.running).map(([n]) => n).sort();

    it("stop and start reach every node on its own host", async () => {
        const { state, x } = spread();
        const stopped = ok(await runStep({ step: "stop", cluster: x, drainSeconds: 1 }, { password: "p", env: { FAKE_DOCKER_STATE: state } }));
        assert.deepEqual(stopped.stopped, ["mh-kong-3-4-3-node-0", "mh-kong-3-4-3-node-2", "mh-kong-3-4-3-node-1"]);
        assert.deepEqual([running(state, A), running(state, B)], [[], []]);
        assert.equal(existsSync(state), false, "nothing went to the default host");
        ok(await runStep({ step: "start", cluster: x, timeoutSeconds: 5 }, { password: "p", env: { FAKE_DOCKER_STATE: state } }));
        assert.deepEqual(running(state, A), ["mh-kong-3-4-3-node-0", "mh-kong-3-4-3-node-2"]);
        assert.deepEqual(running(state, B), ["mh-kong-3-4-3-node-1"]);
    });

    it("a node missing from its host is named with the host", async () => {
        const { state, x } = spread();
        x.nodes[1].docker = { host: A }; // node 1 looked for on the wrong host
        const r = await runStep({ step: "start", cluster: x, timeoutSeconds: 5 }, { password: "p", env: { FAKE_DOCKER_STATE: state } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /mh-kong-3-4-3-node-1 does not exist on unix:\/\/\/run\/docker-a\.sock/);
    });

    it("preflight finds a stray Kong node on any host of the stack", async () => {
        const t = await bootstrapped("hosts");
        const { state, x } = spread();
        writeFileSync(fakeHostState(state, B), JSON.stringify({ "mh-kong-3-4-3-node-1": node("", "3.4.3"), "mh-kong-3-7-1-node-1": node("", "3.7.1") }));
        const r = await runStep({ step: "preflight", mode: "upgrade", db: t.db, kong: kongRun(t.db, "3.5.0"), cluster: x, to: "3.7.1", snapshotPrefix: PREFIX(t.db) },
            { ...t, env: { FAKE_DOCKER_STATE: state } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /Kong 3\.7\.1 is running \(mh-kong-3-7-1-node-1\)/);
    });
});

describe("snapshot and restore", () => {
    const snapSpec = (db: DbTarget): StepSpec => ({ step: "snapshot", db, strategy: "template", prefix: PREFIX(db), from: "3.4.3", to: "3.7.1", terminateSessions: false, ...WHOSE });
    const restoreSpec = (db: DbTarget, strategy: "rename" | "copy" = "rename", snapshot?: string): StepSpec =>
        ({ step: "restore", db, strategy, prefix: PREFIX(db), snapshot, stack: "st" });

    for (const strategy of ["rename", "copy"] as const) {
        it(`restore by ${strategy} after finish gives back schema_meta and every entity row, and keeps the failed database aside`, async () => {
            const t = await bootstrapped(`restore_${strategy}`);
            await writeEntities(t.db, t.password, 10);
            const original = await contents(t.db, t.password);
            const snap = ok(await runStep(snapSpec(t.db), t));
            ok(await migrate(t, "3.5.0", "up"));
            ok(await migrate(t, "3.5.0", "finish"));
            await query(t.db, t.password, "INSERT INTO consumers (id, username) VALUES (gen_random_uuid(), 'written-after-upgrade')");
            assert.notEqual(await contents(t.db, t.password), original);

            const r = ok(await runStep(restoreSpec(t.db, strategy), { ...t, expect: JSON.stringify(snap) }));
            assert.equal(r.snapshot, snap.snapshot);
            assert.equal(await contents(t.db, t.password), original);
            const aside = r.setAside as string;
            assert.match(aside, new RegExp(`^${t.db.database}_failed_\\d{14}(_\\d+)?$`));
            const kept = await query<{ username: string }>({ ...t.db, database: aside }, t.password, "SELECT username FROM consumers WHERE username = 'written-after-upgrade'", aside);
            assert.equal(kept.length, 1, "the failed database keeps what was written to it");
            const snapshotStillThere = (await query(t.db, t.password, `SELECT 1 FROM pg_database WHERE datname = '${String(snap.snapshot)}'`)).length === 1;
            assert.equal(snapshotStillThere, strategy === "copy");

            // The same rollback again: a no-op, nothing set aside twice.
            const again = ok(await runStep(restoreSpec(t.db, strategy), { ...t, expect: JSON.stringify(snap) }));
            assert.equal(again.alreadyRestored, true);
            assert.equal(again.setAside, aside);
            const failed = await query(t.db, t.password, `SELECT datname FROM pg_database WHERE datname LIKE '${t.db.database.slice(0, 40)}_failed_%'`);
            assert.equal(failed.length, 1);
            assert.equal(await contents(t.db, t.password), original);
        });
    }

    it("restore refuses while a client is still connected, and changes nothing", async () => {
        const t = await bootstrapped("busy");
        const snap = ok(await runStep(snapSpec(t.db), t));
        const c = new Client({ ...t.db, password: t.password });
        await c.connect();
        try {
            const r = await runStep(restoreSpec(t.db), { ...t, expect: JSON.stringify(snap) });
            assert.equal(r.code, 1);
            assert.match(r.stderr, /still connected to .*Nothing was changed/);
        } finally {
            await c.end();
        }
        const dbs = await query<{ datname: string }>(t.db, t.password, `SELECT datname FROM pg_database WHERE datname LIKE '${t.db.database.slice(0, 16)}%' ORDER BY 1`);
        assert.equal(dbs.filter((d) => d.datname.includes("_failed_")).length, 0);
    });

    it("snapshot refuses connected clients unless told to end them", async () => {
        const t = await bootstrapped("sessions");
        const c = new Client({ ...t.db, password: t.password });
        await c.connect();
        c.on("error", () => undefined);
        const refused = await runStep(snapSpec(t.db), t);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /session\(s\) are connected .* upgrade\.terminateSessions: true/);
        ok(await runStep({ ...snapSpec(t.db), terminateSessions: true } as StepSpec, t));
        await c.end().catch(() => undefined);
    });

    it("never overwrites an existing snapshot of the same name", async () => {
        const t = await bootstrapped("taken");
        await occupySnapshotNames(t.db);
        const r = await runStep(snapSpec(t.db), t);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /tried in the last 3 s exists already; none is ever overwritten/);
    });

    it("online snapshot: freezes the database read-only, ends X's sessions, copies; stop lifts the freeze", async () => {
        const t = await bootstrapped("online");
        await writeEntities(t.db, t.password, 4);
        const x = new Client({ ...t.db, password: t.password }); // a session of X, which still runs
        await x.connect();
        x.on("error", () => undefined);
        const snap = ok(await runStep({ ...snapSpec(t.db), online: true } as StepSpec, t));
        assert.deepEqual(pick(snap.entityCounts, ENTITIES), { services: 4, routes: 4, consumers: 4, plugins: 4, upstreams: 0, targets: 0 });
        await assert.rejects(x.query("SELECT 1"), "X's old session was ended");
        // X reconnects: reads work, writes are refused until X is stopped.
        assert.equal((await query(t.db, t.password, "SELECT count(*)::int AS n FROM services"))[0].n, 4);
        await assert.rejects(query(t.db, t.password, "INSERT INTO consumers (id, username) VALUES (gen_random_uuid(), 'during-freeze')"), /read-only transaction/);
        const state = fakeDockerState();
        writeFileSync(state, JSON.stringify({ "on-kong-3-4-3-node-0": { running: true, health: "healthy", labels: {} } }));
        ok(await runStep({ step: "stop", cluster: cluster("on", "3.4.3", [{ container: "on-kong-3-4-3-node-0" }]), drainSeconds: 1, liftFreeze: t.db },
            { ...t, env: { FAKE_DOCKER_STATE: state } }));
        await query(t.db, t.password, "INSERT INTO consumers (id, username) VALUES (gen_random_uuid(), 'after-stop')");
    });

    it("online snapshot that fails lifts the freeze, so X gets its writes back", async () => {
        const t = await bootstrapped("onlinefail");
        await occupySnapshotNames(t.db);
        const r = await runStep({ ...snapSpec(t.db), online: true } as StepSpec, t);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /the freeze on .* is lifted/);
        await query(t.db, t.password, "INSERT INTO consumers (id, username) VALUES (gen_random_uuid(), 'x-writes-again')");
    });

    it("declarative export beside the snapshot: kong config db_export with X's image, with its checksum", async () => {
        const t = await bootstrapped("declarative");
        await writeEntities(t.db, t.password, 3);
        const dir = mkdtempSync(path.join(os.tmpdir(), "export-"));
        const snap = ok(await runStep({ ...snapSpec(t.db), declarativeExport: { kong: kongRun(t.db, "3.4.3"), directory: dir } } as StepSpec, t));
        const exported = snap.declarative as { location: string; sha256: string };
        assert.equal(path.dirname(exported.location), dumpFolder(dir, "st", t.db.database), "beside the stack's own dumps");
        const content = JSON.parse(readFileSync(exported.location, "utf8")) as { services: Array<{ name: string }> };
        assert.deepEqual(content.services.map((s) => s.name).sort(), ["svc-1", "svc-2", "svc-3"]);
        assert.match(exported.sha256, /^[0-9a-f]{64}$/);
    });

    it("rollback without a snapshot names what to set", async () => {
        const t = await bootstrapped("nosnap");
        const r = await runStep(restoreSpec(t.db), t);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /no snapshot of this upgrade is recorded in the stack's state .* name the one to restore with upgrade\.snapshot/);
        const pf = await runStep({ step: "preflight", mode: "rollback", db: t.db, cluster: cluster("rb", "3.7.1", []), from: "3.4.3", snapshotPrefix: PREFIX(t.db), stack: "st" }, t);
        assert.equal(pf.code, 1);
        assert.match(pf.stderr, /no snapshot of this upgrade is recorded/);
    });

    it("a retry after a rollback takes a fresh snapshot; rollback restores the one in state, or the one named", async () => {
        const t = await bootstrapped("retry");
        const first = ok(await runStep({ ...snapSpec(t.db) }, t));
        await new Promise((r) => setTimeout(r, 1100));
        await writeEntities(t.db, t.password, 2);
        const second = ok(await runStep({ ...snapSpec(t.db) }, t));
        assert.notEqual(first.snapshot, second.snapshot);
        const r = ok(await runStep(restoreSpec(t.db, "copy"), { ...t, expect: JSON.stringify(second) }));
        assert.equal(r.snapshot, second.snapshot);
        const named = ok(await runStep(restoreSpec(t.db, "copy", String(first.snapshot)), t));
        assert.equal(named.snapshot, first.snapshot);
        assert.equal((await query(t.db, t.password, "SELECT 1 FROM services")).length, 0);
    });

    it("dump strategy: pg_dump -Fc with a checksum, restored into a fresh database and swapped in", async () => {
        const t = await bootstrapped("dump");
        await writeEntities(t.db, t.password, 5);
        const original = await contents(t.db, t.password);
        const dir = mkdtempSync(path.join(os.tmpdir(), "dumps-"));
        const dump = { image: "postgres:15", network: "unused", directory: dir, host: t.db.host, port: t.db.port };
        const env = { KONG_UPGRADE_PG_TOOLS: "local" };
        const snap = ok(await runStep({ step: "snapshot", db: t.db, strategy: "dump", prefix: PREFIX(t.db), from: "3.4.3", to: "3.7.1", terminateSessions: false, dump, ...WHOSE }, { ...t, env }));
        assert.ok(existsSync(String(snap.location)));
        assert.match(String(snap.sha256), /^[0-9a-f]{64}$/);
        ok(await migrate(t, "3.5.0", "up"));
        ok(await migrate(t, "3.5.0", "finish"));
        const r = ok(await runStep({ step: "restore", db: t.db, strategy: "rename", prefix: PREFIX(t.db), dump, stack: "st" }, { ...t, env, expect: JSON.stringify(snap) }));
        assert.equal(r.snapshot, snap.snapshot);
        assert.equal(await contents(t.db, t.password), original);
    });
});

describe("Kong stand-in, hybrid mode", () => {
    it("a control plane hands configuration to an older data plane and refuses a newer one (kong-facts §7)", async () => {
        const t = await bootstrapped("cpcompat", "3.5.0");
        await writeEntities(t.db, t.password, 2);
        const node = await startNode(t, "3.5.0", { KONG_ROLE: "control_plane" });
        try {
            const config = async (dp: string) => {
                for (let i = 0; ; i++) {
                    try {
                        const r = await fetch(`http://127.0.0.1:${node.port + 3}/v1/config?version=${dp}`);
                        return { status: r.status, body: await r.json() as { message?: string; routes?: Array<{ name: string }> } };
                    } catch (e) {
                        if (i > 60) throw e;
                        await new Promise((r) => setTimeout(r, 250));
                    }
                }
            };
            const older = await config("3.4.3");
            assert.equal(older.status, 200);
            assert.deepEqual(older.body.routes?.map((r) => r.name).sort(), ["route-svc-1", "route-svc-2"]);
            const newer = await config("3.6.1");
            assert.equal(newer.status, 426);
            assert.equal(newer.body.message, "data plane version 3.6.1 is incompatible with older control plane version 3.5.0");
        } finally {
            node.proc.kill("SIGQUIT");
        }
    });
});

describe("secrets", () => {
    it("the password appears in no stdout, stderr or docker argv of any step", async () => {
        const t = await server.kongDatabase("secret");
        const state = fakeDockerState();
        writeFileSync(state, JSON.stringify({ "sx-kong-3-4-3-node-0": { running: true, health: "healthy", labels: { "kong-upgrade.stack": "sx", "kong-upgrade.version": "3.4.3", "kong-upgrade.role": "node" } } }));
        const env = { FAKE_DOCKER_STATE: state };
        const x = cluster("sx", "3.4.3", [{ container: "sx-kong-3-4-3-node-0" }]);
        const runs = [
            await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") }, { ...t, env }),
            await runStep({ step: "preflight", mode: "upgrade", db: t.db, kong: kongRun(t.db, "3.5.0"), cluster: x, to: "3.7.1", snapshotPrefix: PREFIX(t.db) }, { ...t, env }),
            await runStep({ step: "stop", cluster: x, drainSeconds: 1 }, { ...t, env }),
            await runStep({ step: "snapshot", db: t.db, strategy: "template", prefix: PREFIX(t.db), from: "3.4.3", to: "3.7.1", terminateSessions: false, ...WHOSE }, { ...t, env }),
            await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0") }, { ...t, env }),
            await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0") }, { password: "wrong-" + t.password, env }),
            await runStep({ step: "restore", db: t.db, strategy: "rename", prefix: PREFIX(t.db), stack: "st" }, { ...t, env }),
        ];
        for (const r of runs.slice(0, 5)) ok(r);
        for (const r of runs) {
            assert.ok(!r.stdout.includes(t.password) && !r.stderr.includes(t.password), "password printed by a step");
        }
        assert.ok(!readFileSync(`${state}.log`, "utf8").includes(t.password), "password in a docker argv");
    });
});
