// The canary step against a real PostgreSQL, the Kong stand-in and the fake docker CLI (whose
// `run -d` starts the stand-in of the image's version as a local process): clone fidelity, every
// hop on the clone only, one Y node verified, and nothing left behind whatever phase fails.
import { strict as assert } from "assert";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { CanaryNote, createCanaryDatabase, streamClone } from "../steps/lib/clone";
import { CanarySpec, DbTarget } from "../steps/lib/spec";
import { MAX_IDENT_BYTES, canaryCloneName } from "../steps/lib/snapshots";
import { trialName } from "../steps/canary";
import { TestServer, startPostgres } from "./helpers/postgres";
import { StepRun, fakeDockerState, kongRun, runStep } from "./helpers/steps";

let server: TestServer;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

type T = { db: DbTarget; password: string };
const HOPS = ["3.5.0", "3.6.1", "3.7.1"];

async function query<R extends Record<string, unknown>>(t: T, sql: string, database = t.db.database, params: unknown[] = []): Promise<R[]> {
    const c = new Client({ host: t.db.host, port: t.db.port, user: t.db.user, password: t.password, database });
    await c.connect();
    try {
        return (await c.query<R>(sql, params)).rows;
    } finally {
        await c.end();
    }
}

/** Every row of every table in the database, table by table: what a faithful clone must equal. */
async function everyRow(t: T, database = t.db.database): Promise<Record<string, unknown[]>> {
    const tables = await query<{ t: string }>(t, "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", database);
    const out: Record<string, unknown[]> = {};
    for (const { t: name } of tables) out[name] = await query(t, `SELECT * FROM "${name}" ORDER BY 1`, database);
    return out;
}

const databasesLike = async (t: T, like: string) =>
    (await query<{ d: string }>(t, "SELECT datname AS d FROM pg_database WHERE datname LIKE $1", "postgres", [like])).map((r) => r.d);

/** X at 3.4.3 with entities, its one node in the fake docker world, and a canary spec for 3.4.3 → 3.7.1. */
async function setup(label: string, env: Record<string, string> = {}): Promise<{ t: T; spec: CanarySpec; docker: string; run: (extra?: Record<string, string>) => Promise<StepRun> }> {
    const t = await server.kongDatabase(label);
    const boot = await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") }, t);
    assert.equal(boot.code, 0, boot.stderr);
    await query(t, `
        INSERT INTO services (id, name, host) SELECT gen_random_uuid(), 'svc-' || i, 'upstream-' || i || '.internal' FROM generate_series(1, 40) i;
        INSERT INTO routes (id, name, service_id, paths) SELECT gen_random_uuid(), 'route-' || s.name, s.id, ARRAY['/' || s.name] FROM services s;
        INSERT INTO consumers (id, username) SELECT gen_random_uuid(), 'user-' || i FROM generate_series(1, 25) i;
        INSERT INTO plugins (id, name, service_id, enabled, config) SELECT gen_random_uuid(), 'rate-limiting', s.id, true, '{"minute": 5, "policy": "local"}' FROM services s;`);
    const docker = fakeDockerState();
    writeFileSync(docker, JSON.stringify({ "ct-kong-3-4-3-node-0": { running: true, health: "healthy", labels: { "kong-upgrade.stack": "ct", "kong-upgrade.role": "node" } } }));
    const spec: CanarySpec = {
        step: "canary", db: t.db, clone: canaryCloneName("ct", t.db.database, "3.4.3", "3.7.1"), stack: "ct", from: "3.4.3", to: "3.7.1",
        hops: HOPS.map((v) => kongRun(t.db, v, { env })),
        node: { container: `ct-kong-canary-${t.db.database}`, role: "traditional", drainSeconds: 2 },
        copy: { image: "postgres:15", network: "unused", host: t.db.host, port: t.db.port },
        timeoutSeconds: 20, smokePath: "/svc-1", snapshot: "template",
    };
    const run = (extra: Record<string, string> = {}) => runStep(spec, { ...t, env: { FAKE_DOCKER_STATE: docker, KONG_UPGRADE_PG_TOOLS: "local", ...extra } });
    return { t, spec, docker, run };
}

type World = Record<string, { running: boolean; pid?: number; labels: Record<string, string> }>;
const world = (docker: string): World => JSON.parse(readFileSync(docker, "utf8")) as World;

function alive(pid: number | undefined): boolean {
    if (!pid) return false;
    try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Nothing of the canary is left, and X is as it was: running, its database row for row the same. */
async function untouched(s: Awaited<ReturnType<typeof setup>>, before: Record<string, unknown[]>, canaryPid?: number): Promise<void> {
    assert.deepEqual(await everyRow(s.t), before, "the live database is row for row unchanged");
    assert.deepEqual(await databasesLike(s.t, `${s.spec.clone}%`), [], "no clone left");
    assert.deepEqual(await databasesLike(s.t, "%_snap_%"), [], "no snapshot taken");
    const w = world(s.docker);
    assert.deepEqual(Object.keys(w), ["ct-kong-3-4-3-node-0"], "no canary container left");
    assert.equal(w["ct-kong-3-4-3-node-0"].running, true, "X was never stopped");
    assert.ok(!alive(canaryPid), "the canary node's process is gone");
    const log = readFileSync(`${s.docker}.log`, "utf8");
    assert.ok(!/"stop",.*ct-kong-3-4-3-node-0/.test(log), "no docker stop of X");
}

describe("canary: clone", () => {
    it("copies every table's rows while a client holds a session on the source (pg_dump | pg_restore blocks no one)", async () => {
        const s = await setup("clone fidelity");
        process.env.KONG_UPGRADE_PG_TOOLS = "local";
        const held = new Client({ host: s.t.db.host, port: s.t.db.port, user: s.t.db.user, password: s.t.password, database: s.t.db.database });
        await held.connect();
        try {
            // X's session, mid-transaction with a write: a template copy would refuse to run; the clone must not wait for it.
            await held.query("BEGIN; INSERT INTO consumers (id, username) VALUES (gen_random_uuid(), 'uncommitted')");
            const note: CanaryNote = { kind: "kong-upgrade-canary", clone: s.spec.clone, source: s.t.db.database, stack: "ct", from: "3.4.3", to: "3.7.1", createdAt: "now" };
            const admin = new Client({ host: s.t.db.host, port: s.t.db.port, user: s.t.db.user, password: s.t.password, database: "postgres" });
            await admin.connect();
            await createCanaryDatabase(admin, note);
            await admin.end();
            const bytes = await streamClone(s.spec.copy, s.t.db, s.spec.clone, s.t.password, {});
            assert.ok(bytes > 10_000);
            await held.query("ROLLBACK");
            const live = await everyRow(s.t);
            assert.ok(Object.keys(live).length >= 8 && live.services.length === 40 && live.plugins.length === 40);
            assert.deepEqual(await everyRow(s.t, s.spec.clone), live, "every table, every row");
        } finally {
            await held.end();
            delete process.env.KONG_UPGRADE_PG_TOOLS;
        }
    });
});

describe("canary: the whole rehearsal", () => {
    it("runs every hop and one Y node on the clone, verifies it, removes everything, and forecasts the window", async () => {
        const s = await setup("canary passes");
        s.spec.declarativeExport = kongRun(s.t.db, "3.4.3"); // upgrade.declarativeExport: the snapshot also exports with X's image
        const before = await everyRow(s.t);
        const r = await s.run();
        assert.equal(r.code, 0, r.stderr);
        const out = r.result as { entityCounts: Record<string, number>; forecast: { windowSeconds: number; parts: Record<string, number> }; canarySeconds: number;
            stepStartup: { steps: number; perStep: number; databaseModules: number } };
        // Every table of Kong's schema is counted; these are the ones the test wrote.
        const wrote = { services: 40, routes: 40, consumers: 25, plugins: 40, upstreams: 0, targets: 0 };
        assert.deepEqual(Object.fromEntries(Object.keys(wrote).map((t) => [t, out.entityCounts[t]])), wrote);
        assert.deepEqual(Object.keys(out.forecast.parts).sort(), ["finish 3.5.0", "finish 3.6.1", "finish 3.7.1", "snapshot", "start", "step start-up",
            "stop", "up 3.5.0", "up 3.6.1", "up 3.7.1", "verify"].sort());
        const sum = Object.values(out.forecast.parts).reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(sum - out.forecast.windowSeconds) < 0.05 && out.forecast.windowSeconds > 0);
        // Start-up is a step program's start, sampled once before each step that starts inside the
        // window: snapshot, 3 × (up, finish); they also load their modules. Stop starts before the
        // window opens, verify while Y boots. Never the canary's own run time multiplied.
        const st = out.stepStartup;
        assert.equal(st.steps, 7);
        assert.ok(st.perStep > 0.01 && st.databaseModules > 0, JSON.stringify(st));
        assert.ok(out.forecast.parts["step start-up"] > 7 * 0.01);
        assert.ok(out.forecast.parts["step start-up"] < out.canarySeconds, `start-up ${out.forecast.parts["step start-up"]}s in a canary of ${out.canarySeconds}s`);
        // The snapshot part holds the snapshot step's own check with the first hop's `kong migrations list`, not only the copy.
        assert.match(r.stderr, /(kong migrations list with kong:3\.5\.0|schema_meta against kong:3\.5\.0's catalog): new migrations to run/);
        assert.match(r.stderr, /kong config db_export with kong:3\.4\.3 on the clone, as the snapshot will/);
        assert.match(r.stderr, /forecast downtime window: [\d.]+s = snapshot .*, stop [\d.]+s, step start-up/);
        // The migrations really ran on the clone: the node started on a 3.7.1 schema and verify passed.
        assert.match(r.stderr, /after finish: up-to-date/);
        assert.match(r.stderr, /smoke request \/svc-1 answered/);
        const run = readFileSync(`${s.docker}.log`, "utf8").split("\n").find((l) => l.startsWith('["run"'))!;
        const argv = JSON.parse(run) as string[];
        assert.deepEqual(argv.filter((a, i) => argv[i - 1] === "-p").map((p) => p.split(":")[0]), ["127.0.0.1", "127.0.0.1", "127.0.0.1"], "ports on loopback only");
        assert.ok(argv.includes(`KONG_PG_DATABASE=${s.spec.clone}`) && argv.includes("KONG_PG_PASSWORD") && !argv.some((a) => a.includes(s.t.password)));
        assert.ok(!argv.includes("--network-alias") && !argv.some((a) => a.includes("kong-control-plane")), "no data plane can find it");
        await untouched(s, before);
        assert.deepEqual((await query<{ n: string }>(s.t, "SELECT count(*) AS n FROM schema_meta WHERE 'clustering_rpc_requests' = ANY(executed)"))[0].n, "0");

        const again = await s.run();
        assert.equal(again.code, 0, `a second run passes the same way:\n${again.stderr}`);
        await untouched(s, before);
    });
});

describe("canary: a failure at each phase stops before X, names the phase and leaves nothing behind", () => {
    const cases: Array<[string, (s: Awaited<ReturnType<typeof setup>>) => Promise<Record<string, string>>, RegExp, Record<string, string>?]> = [
        ["clone", async () => {
            // A pg_restore that reads part of the stream, then fails, after the clone database exists.
            const bin = mkdtempSync(path.join(os.tmpdir(), "bad-restore-"));
            writeFileSync(path.join(bin, "pg_restore"), "#!/bin/sh\nhead -c 1000 >/dev/null\necho 'pg_restore: error: could not read input file: simulated' >&2\nexit 1\n");
            chmodSync(path.join(bin, "pg_restore"), 0o755);
            return { PATH: `${bin}:${process.env.PATH}` };
        }, /failed at clone: pg_restore into the clone .* failed \(exit 1\):\npg_restore: error: could not read input file: simulated/],
        ["hop", async (s) => {
            // Data-dependent: 3.6.1's migration fails only while this plugin config exists, as a config Y's schema rejects.
            await query(s.t, `CREATE TABLE kong_sim_faults (name text, when_plugin text, when_config jsonb, message text);
                INSERT INTO kong_sim_faults VALUES ('022_350_to_360', 'rate-limiting', '{"policy": "local"}', 'schema violation (config.policy: expected one of: cluster, redis)')`);
            return {};
        }, /failed at hop 3\.6\.1, kong migrations up: kong migrations up \(kong:3\.6\.1\) failed with exit 1:\n[^]*plugin rate-limiting \([0-9a-f-]+\): schema violation/],
        ["start", async () => ({}), /failed at start of one 3\.7\.1 node: .*exited( \(exit code \d+\))? instead of starting\. Kong's output \(docker logs --tail 30\):\n[^]*nginx: \[emerg\] simulated/,
            { KONG_SIM_FAIL_START: "nginx: [emerg] simulated" }],
        ["verify", async () => ({}), /failed at verify: .*GET \/svc-1 through the proxy answered 503/, { KONG_SIM_PROXY_STATUS: "503" }],
    ];
    for (const [phase, arm, message, kongEnv] of cases) {
        it(phase, async () => {
            const s = await setup(`canary fails ${phase}`, kongEnv);
            const env = await arm(s);
            const before = await everyRow(s.t);
            const r = await s.run(env);
            assert.equal(r.code, 1, r.stderr);
            assert.match(r.stderr, message);
            assert.match(r.stderr, /Cluster 3\.4\.3 was never stopped and .* is unchanged \(canary removed .*\)\. Fix the cause/);
            const pid = Object.values(world(s.docker)).find((c) => c.pid)?.pid;
            await untouched(s, before, pid);
        });
    }
});

describe("canary: leftovers of a killed run", () => {
    it("removes this upgrade's clone and container by their record and label, and nothing else", async () => {
        const s = await setup("canary leftovers");
        const before = await everyRow(s.t);
        const note = { kind: "kong-upgrade-canary", clone: s.spec.clone, source: s.t.db.database, stack: "ct", from: "3.4.3", to: "3.7.1", createdAt: "earlier" };
        await query(s.t, `CREATE DATABASE "${s.spec.clone}"`, "postgres");
        await query(s.t, `COMMENT ON DATABASE "${s.spec.clone}" IS '${JSON.stringify(note)}'`, "postgres");
        const w = world(s.docker);
        const labels = { "kong-upgrade.stack": "ct", "kong-upgrade.role": "canary", "kong-upgrade.canary": s.spec.clone };
        Object.assign(w, {
            [s.spec.node.container]: { running: false, health: "", labels },
            "other-stack-canary": { running: true, health: "", labels: { ...labels, "kong-upgrade.stack": "other" } },
        });
        writeFileSync(s.docker, JSON.stringify(w));
        const r = await s.run();
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`removed leftovers of an earlier canary of this upgrade: ${s.spec.node.container}, ${s.spec.clone}`));
        assert.ok(world(s.docker)["other-stack-canary"], "another stack's canary is not touched");
        assert.deepEqual(await everyRow(s.t), before);
        assert.deepEqual(await databasesLike(s.t, `${s.spec.clone}%`), []);
    });

    it("finds a leftover of an earlier clone name by its record; another upgrade's clone stays", async () => {
        const s = await setup("canary old name");
        const note = (clone: string, to = "3.7.1") => JSON.stringify({ kind: "kong-upgrade-canary", clone, source: s.t.db.database, stack: "ct", from: "3.4.3", to, createdAt: "earlier" });
        // The name before the hash (`<db, 16 chars>_canary_<X>_to_<Y>`), and one of another upgrade (3.8.0) of the same database.
        const old = `${s.t.db.database.slice(0, 16)}_canary_3_4_3_to_3_7_1`;
        const other = `${s.t.db.database.slice(0, 16)}_canary_3_4_3_to_3_8_0`;
        for (const [name, to] of [[old, "3.7.1"], [other, "3.8.0"]]) {
            await query(s.t, `CREATE DATABASE "${name}"`, "postgres");
            await query(s.t, `COMMENT ON DATABASE "${name}" IS '${note(name, to)}'`, "postgres");
        }
        const r = await s.run();
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`removed leftovers of an earlier canary of this upgrade: ${old}`));
        assert.deepEqual(await databasesLike(s.t, old), [], "the old-named clone of this upgrade is dropped");
        assert.deepEqual(await databasesLike(s.t, other), [other], "another upgrade's clone is not this canary's to drop");
    });

    it("never drops a database of the clone's name whose record is not this upgrade's canary", async () => {
        const s = await setup("canary foreign");
        await query(s.t, `CREATE DATABASE "${s.spec.clone}"`, "postgres");
        await query(s.t, `COMMENT ON DATABASE "${s.spec.clone}" IS '${JSON.stringify({ kind: "kong-upgrade-canary", clone: s.spec.clone, source: s.t.db.database, stack: "ct", from: "3.4.3", to: "3.8.0" })}'`, "postgres");
        const r = await s.run();
        assert.equal(r.code, 1);
        assert.match(r.stderr, /exists and its record does not say it is the canary of this upgrade .* the program never drops it/);
        assert.deepEqual(await databasesLike(s.t, s.spec.clone), [s.spec.clone], "still there");
        assert.ok(existsSync(s.docker));
    });
});

describe("canary: clone names", () => {
    const long = "kong_production_eu_west_1_primary_gateway_database_with_a_very_long_name"; // 72 bytes
    const cases: Array<[string, string, string, string, string, RegExp]> = [
        ["short name", "prod", "kong", "3.4.3", "3.7.1", /^kong_[0-9a-f]{8}_canary_3_4_3_to_3_7_1$/],
        ["over 63 bytes", "prod", long, "3.4.3", "3.7.1", /^kong_production_eu_west__[0-9a-f]{8}_canary_3_4_3_to_3_7_1$/],
        ["long enterprise versions", "prod", long, "3.4.3.12", "3.10.0.1", /^kong_production_eu_we_[0-9a-f]{8}_canary_3_4_3_12_to_3_10_0_1$/],
        // 24 bytes would split the tenth "é": cut before it.
        ["multi-byte name cut on a character", "prod", `kong_${"é".repeat(20)}`, "3.4.3", "3.7.1", /^kong_é{9}_[0-9a-f]{8}_canary_3_4_3_to_3_7_1$/],
    ];
    for (const [label, stack, db, from, to, shape] of cases) {
        it(`${label}: fits 63 bytes with its trial, keeps the upgrade in the name`, () => {
            const name = canaryCloneName(stack, db, from, to);
            assert.match(name, shape);
            assert.ok(Buffer.byteLength(trialName(name)) <= MAX_IDENT_BYTES, `${trialName(name)} is ${Buffer.byteLength(trialName(name))} bytes`);
            assert.equal(trialName(name), `${name}_snap`, "the trial is the clone's name and a suffix, never cut");
            assert.equal(canaryCloneName(stack, db, from, to), name, "the same upgrade, the same name");
        });
    }

    it("databases sharing a long prefix, or two stacks sharing one database, never share a clone", () => {
        const pairs: Array<[[string, string], [string, string]]> = [
            [["prod", `${long}_a`], ["prod", `${long}_b`]],
            [["prod", "kong_gateway_primary_1"], ["prod", "kong_gateway_primary_2"]],
            [["prod", "kong"], ["staging", "kong"]],
        ];
        for (const [[s1, d1], [s2, d2]] of pairs) {
            const a = canaryCloneName(s1, d1, "3.4.3", "3.7.1");
            const b = canaryCloneName(s2, d2, "3.4.3", "3.7.1");
            assert.notEqual(a, b, `${s1}/${d1} and ${s2}/${d2}`);
            assert.notEqual(trialName(a), trialName(b));
        }
    });
});
