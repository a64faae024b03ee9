// Kong's migration state read from schema_meta (steps/lib/migrationstate.ts) instead of a
// `kong migrations list` container inside the downtime window. Shown equal to Kong's own: the
// classification case by case (Kong/kong 3.7.1 kong/db/migrations/state.lua, cmd/migrations.lua),
// then on a real PostgreSQL against the stand-in's `list` exit code across every state an upgrade
// passes through, then through the migration, preflight and verify steps themselves.
import { strict as assert } from "assert";
import { readFileSync, writeFileSync } from "fs";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { Catalog, SchemaMetaRow, catalogFingerprint, catalogFromStatus, classify, readMigrationRows } from "../steps/lib/migrationstate";
import { CATALOG_ENV, DbTarget, KongRun } from "../steps/lib/spec";
import { MigrationState, runKong } from "../steps/lib/kong";
import { decide } from "../steps/migrations";
import { TestServer, startPostgres } from "./helpers/postgres";
import { STANDIN, StepRun, cluster, fakeDockerState, kongRun, runStep } from "./helpers/steps";

const row = (subsystem: string, executed: string[] | null, pending: string[] | null = null, last: string | null = executed?.at(-1) ?? null): SchemaMetaRow =>
    ({ subsystem, executed, pending, last_executed: last });

describe("classify: Kong's State.load and list's exit code, case by case", () => {
    const catalog: Catalog = { core: ["000_base", "001_a", "002_b"], acl: ["000_base_acl", "001_acl"] };
    const cases: Array<{ name: string; rows: SchemaMetaRow[] | undefined; state: string; news?: Catalog; missing?: Catalog; pending?: Catalog }> = [
        // connector.lua 758-761: no schema_meta table → needs bootstrap (list exits 3, migrations.lua 106-108).
        { name: "no schema_meta table", rows: undefined, state: "needs-bootstrap" },
        // state.lua 240-245: no row for a subsystem → all its migrations new; list exits 5 (149-151).
        { name: "an empty schema_meta", rows: [], state: "new", news: catalog },
        { name: "everything executed", rows: [row("core", catalog.core), row("acl", catalog.acl)], state: "up-to-date" },
        { name: "a plugin subsystem with no row", rows: [row("core", catalog.core)], state: "new", news: { acl: catalog.acl } },
        { name: "one migration after last_executed", rows: [row("core", ["000_base", "001_a"]), row("acl", catalog.acl)], state: "new", news: { core: ["002_b"] } },
        // 128-147: pending and new at once → 4, pending wins.
        { name: "pending and new at once", rows: [row("core", ["000_base"], ["001_a"], "001_a"), row("acl", catalog.acl)], state: "pending", news: { core: ["002_b"] }, pending: { core: ["001_a"] } },
        { name: "pending only", rows: [row("core", ["000_base", "001_a"], ["002_b"], "002_b"), row("acl", catalog.acl)], state: "pending", pending: { core: ["002_b"] } },
        // 250-284: only the migration named last_executed can be missing: n is set when the loop reaches it.
        { name: "last_executed in neither array: missing, not new", rows: [row("core", ["000_base", "001_a"], null, "002_b"), row("acl", catalog.acl)], state: "up-to-date", missing: { core: ["002_b"] } },
        { name: "absent BEFORE last_executed: new (n is still nil there)", rows: [row("core", ["000_base", "002_b"], null, "002_b"), row("acl", catalog.acl)], state: "new", news: { core: ["001_a"] } },
        { name: "last_executed not in the code: every absent one new", rows: [row("core", ["000_base"], null, "999_gone"), row("acl", catalog.acl)], state: "new", news: { core: ["001_a", "002_b"] } },
        // value_or_empty_table (155-160): NULL arrays are empty.
        { name: "NULL executed and pending", rows: [row("core", null, null, null), row("acl", catalog.acl)], state: "new", news: { core: catalog.core } },
        // Subsystems not loaded (232: only `subsystems`) and names not in the code count for nothing.
        { name: "pending of a plugin not loaded", rows: [row("core", catalog.core), row("acl", catalog.acl), row("oauth2", ["000_base_oauth2"], ["003_x"])], state: "up-to-date" },
        { name: "pending name not in the code", rows: [row("core", catalog.core, ["007_old"]), row("acl", catalog.acl)], state: "up-to-date" },
    ];
    for (const c of cases) {
        it(c.name, () => {
            const s = classify(c.rows, catalog);
            assert.equal(s.state, c.state);
            if (c.news) assert.deepEqual(s.new, c.news);
            assert.deepEqual(s.missing, c.missing ?? {});
            if (c.pending) assert.deepEqual(s.pending, c.pending);
        });
    }

    it("the catalog of a status result is every name in it, whatever its class", () => {
        const status = {
            needs_bootstrap: false,
            executed_migrations: [{ subsystem: "core", namespace: "kong.db.migrations.core", migrations: ["000_base", "001_a"] }],
            pending_migrations: [{ subsystem: "acl", migrations: ["001_acl"] }],
            new_migrations: [{ subsystem: "core", migrations: ["002_b"] }, { subsystem: "acl", migrations: ["000_base_acl"] }],
            // migrations.lua 170-172: missing entries are not reduced to names, they stay tables.
            missing_migrations: [{ subsystem: "core", migrations: [{ name: "001_z", postgres: { up: "" } }] }],
        };
        assert.deepEqual(catalogFromStatus(status), { core: ["000_base", "001_a", "002_b", "001_z"], acl: ["001_acl", "000_base_acl"] });
    });

    it("a catalog belongs to an image and its settings, not to a database", () => {
        const base = { image: "kong:3.7.1", plugins: "bundled", env: { KONG_A: "1", KONG_B: "2" }, license: false, secretEnv: ["KONG_X", "KONG_Y"] };
        assert.equal(catalogFingerprint(base), catalogFingerprint({ ...base, env: { KONG_B: "2", KONG_A: "1" }, secretEnv: ["KONG_Y", "KONG_X"] }));
        for (const other of [{ image: "kong:3.7.0" }, { plugins: "bundled,my-plugin" }, { env: { KONG_A: "1", KONG_LUA_PACKAGE_PATH: "/x/?.lua" } },
            { license: true }, { secretEnv: ["KONG_X"] }]) {
            assert.notEqual(catalogFingerprint(base), catalogFingerprint({ ...base, ...other }));
        }
    });
});

let server: TestServer;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

type Db = { db: DbTarget; password: string };
const VERSIONS = ["3.4.3", "3.5.0", "3.6.1", "3.7.1"];

async function kong(t: Db, run: KongRun, args: string[]): Promise<{ code: number; output: string }> {
    process.env.KONG_UPGRADE_KONG_COMMAND = STANDIN;
    process.env.KONG_PG_PASSWORD = t.password;
    const r = await runKong(run, args, 120);
    return { code: r.code, output: r.stdout + r.stderr };
}

async function sql(t: Db, text: string): Promise<void> {
    const c = new Client({ host: t.db.host, port: t.db.port, user: t.db.user, password: t.password, database: t.db.database });
    await c.connect();
    try { await c.query(text); } finally { await c.end(); }
}

async function rows(t: Db): Promise<SchemaMetaRow[] | undefined> {
    const c = new Client({ host: t.db.host, port: t.db.port, user: t.db.user, password: t.password, database: t.db.database });
    await c.connect();
    try { return await readMigrationRows(c); } finally { await c.end(); }
}

const LIST_CODE: Record<string, number> = { "up-to-date": 0, "needs-bootstrap": 3, pending: 4, new: 5 };

describe("decide: what a migration step does in each state (both gates use this table)", () => {
    const cases: Array<[phase: "up" | "finish", state: MigrationState, hasNew: boolean | undefined, expected: string]> = [
        ["up", "new", undefined, "run up"],
        ["up", "up-to-date", undefined, "done"],
        ["up", "pending", undefined, "ask-new"],
        ["up", "pending", false, "done"],
        ["up", "pending", true, "run finish,up"],
        ["up", "needs-bootstrap", undefined, "refuse"],
        ["finish", "pending", undefined, "run finish"],
        ["finish", "up-to-date", undefined, "done"],
        ["finish", "new", undefined, "up-first"],
        ["finish", "needs-bootstrap", undefined, "refuse"],
    ];
    for (const [phase, state, hasNew, expected] of cases) {
        it(`${phase} on ${state}${hasNew === undefined ? "" : hasNew ? " with new ones" : " without new ones"}: ${expected}`, () => {
            const d = decide(phase, state, hasNew, "3.6.1");
            assert.equal(d.action === "run" ? `run ${d.commands.join(",")}` : d.action, expected);
        });
    }
});

describe("schema_meta against the catalog equals `kong migrations list` on a real database", () => {
    it("in every state an upgrade 3.4.3 → 3.7.1 passes through, for every hop's catalog, bundled plugins and none", async () => {
        // Catalogs learnt once, on a database of their own: a catalog does not depend on the database.
        const learnFrom = await server.kongDatabase("learn");
        const catalogs = new Map<string, Catalog>();
        for (const plugins of ["bundled", "off"]) {
            for (const v of VERSIONS) {
                const status = await kong(learnFrom, kongRun(learnFrom.db, v, { plugins }), ["migrations", "status"]);
                assert.equal(status.code, 0, status.output);
                catalogs.set(`${v}/${plugins}`, catalogFromStatus(JSON.parse(status.output.split("\n").find((l) => l.startsWith("{"))!) as Record<string, unknown>));
            }
        }
        const t = await server.kongDatabase("walk");
        let compared = 0;
        const compareAll = async (when: string) => {
            const r = await rows(t);
            for (const [key, catalog] of catalogs) {
                const [v, plugins] = key.split("/");
                const list = await kong(t, kongRun(t.db, v, { plugins }), ["migrations", "list"]);
                assert.equal(LIST_CODE[classify(r, catalog).state], list.code, `${when}, catalog ${key}: kong migrations list says\n${list.output}`);
                compared++;
            }
        };
        await compareAll("before bootstrap");
        assert.equal((await kong(t, kongRun(t.db, "3.4.3", { plugins: "off" }), ["migrations", "bootstrap"])).code, 0);
        await compareAll("bootstrapped at 3.4.3 without plugins");
        for (const v of VERSIONS.slice(1)) {
            for (const phase of ["up", "finish"]) {
                const r = await kong(t, kongRun(t.db, v), ["migrations", phase]);
                assert.equal(r.code, 0, r.output);
                await compareAll(`after ${phase} ${v}`);
            }
        }
        // States no upgrade of ours makes, but a database can be in.
        await sql(t, "UPDATE schema_meta SET pending = array_append(pending, 'not_in_any_code') WHERE subsystem = 'core'");
        await compareAll("a pending name no Kong knows");
        await sql(t, "UPDATE schema_meta SET executed = array_remove(executed, last_executed) WHERE subsystem = 'core'");
        await compareAll("last_executed in neither array (missing)");
        await sql(t, "UPDATE schema_meta SET executed = array_remove(executed, '003_100_to_110') WHERE subsystem = 'core'");
        await compareAll("a migration before last_executed in neither array");
        await sql(t, "DELETE FROM schema_meta WHERE subsystem = 'acl'");
        await compareAll("a plugin's row gone");
        await sql(t, "DROP TABLE schema_meta");
        await compareAll("schema_meta dropped");
        assert.equal(compared, 8 * 13, "8 catalogs in 13 states");
    });
});

describe("the steps with a catalog: one Kong container per migration step, none in verify", () => {
    const ok = (r: StepRun) => { assert.equal(r.code, 0, r.stderr); return r.result!; };

    async function preflightCatalogs(t: Db, hops: string[]): Promise<string> {
        const state = fakeDockerState();
        writeFileSync(state, JSON.stringify({ "mc-kong-3-4-3-node-0": { running: true, health: "healthy", labels: { "kong-upgrade.stack": "mc", "kong-upgrade.version": "3.4.3", "kong-upgrade.role": "node" } } }));
        const r = await runStep({
            step: "preflight", mode: "upgrade", db: t.db, kong: kongRun(t.db, hops[0]), cluster: cluster("mc", "3.4.3", [{ container: "mc-kong-3-4-3-node-0" }]),
            to: hops[hops.length - 1], snapshotPrefix: "mc_snap_", hops, hopRuns: hops.map((v) => kongRun(t.db, v)),
        }, { ...t, env: { FAKE_DOCKER_STATE: state } });
        ok(r);
        return r.stdout;
    }

    it("preflight learns each hop's catalog while X serves; the steps gate on schema_meta with one container each", async () => {
        const t = await server.kongDatabase("steps");
        assert.equal((await kong(t, kongRun(t.db, "3.4.3"), ["migrations", "bootstrap"])).code, 0);
        const pre = await preflightCatalogs(t, ["3.5.0", "3.6.1"]);
        const learnt = (JSON.parse(pre.trim().split("\n").pop()!) as { catalogs: Array<{ version: string; subsystems: Catalog }> }).catalogs;
        assert.deepEqual(learnt.map((c) => c.version), ["3.5.0", "3.6.1"]);
        assert.ok(learnt[1].subsystems.core.includes("022_350_to_360"), JSON.stringify(learnt[1].subsystems.core));

        const state = fakeDockerState();
        // Through the (fake) docker CLI: every `docker run` is a Kong container.
        const env = { FAKE_DOCKER_STATE: state, FAKE_DOCKER_KONG: STANDIN, KONG_UPGRADE_KONG_COMMAND: "", [CATALOG_ENV]: pre };
        const step = (v: string, phase: "up" | "finish") => runStep({ step: "migrations", phase, db: t.db, kong: kongRun(t.db, v) }, { ...t, env });
        const results = [];
        for (const v of ["3.5.0", "3.6.1"]) for (const phase of ["up", "finish"] as const) results.push(ok(await step(v, phase)));
        assert.deepEqual(results.map((r) => [r.gate, r.before, r.after, r.kongContainers]), [
            ["schema_meta", "new", "up-to-date", 1], ["schema_meta", "up-to-date", "up-to-date", 0],
            ["schema_meta", "new", "pending", 1], ["schema_meta", "pending", "up-to-date", 1],
        ]);
        const runs = readFileSync(`${state}.log`, "utf8").trim().split("\n").map((l) => JSON.parse(l) as string[]).filter((a) => a[0] === "run");
        assert.equal(runs.length, 3, "one container per step that had work, no list anywhere");
        assert.ok(runs.every((argv) => !argv.join(" ").includes("migrations list")), "no list ran");

        // Run again (a retry after a later failure): nothing to do, no container.
        const again = ok(await step("3.6.1", "up"));
        assert.deepEqual([again.before, again.kongContainers], ["up-to-date", 0]);

        // verify: the state of Y from schema_meta, no Kong container; a pending migration fails it.
        const verify = () => runStep({
            step: "verify", db: t.db, kong: kongRun(t.db, "3.6.1"), cluster: { stack: "mc", version: "3.6.1", nodes: [] }, timeoutSeconds: 5,
        }, { ...t, env });
        assert.equal(ok(await verify()).kongContainers, 0);
        await sql(t, "UPDATE schema_meta SET pending = ARRAY['022_350_to_360'], executed = array_remove(executed, '022_350_to_360') WHERE subsystem = 'core'");
        const bad = await verify();
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /would report pending, not up to date/);
        assert.equal(readFileSync(`${state}.log`, "utf8").trim().split("\n").filter((l) => l.startsWith('["run"')).length, 3, "verify started no container");
    });

    it("Kong's `aborted` (another runner holds the lock, exit 0) is still a failure", async () => {
        const t = await server.kongDatabase("abort");
        assert.equal((await kong(t, kongRun(t.db, "3.5.0"), ["migrations", "bootstrap"])).code, 0);
        const pre = await preflightCatalogs(t, ["3.6.1"]);
        const env = { [CATALOG_ENV]: pre };
        ok(await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.6.1") }, { ...t, env }));
        await sql(t, "INSERT INTO locks (key, owner, ttl) VALUES ('migrations', 'other-node', now() + interval '1 minute')");
        const r = await runStep({ step: "migrations", phase: "finish", db: t.db, kong: kongRun(t.db, "3.6.1") }, { ...t, env });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /another node held the migrations lock; nothing was migrated/);
    });

    it("a catalog learnt with other settings is not used: the step asks Kong's list", async () => {
        const t = await server.kongDatabase("stale");
        assert.equal((await kong(t, kongRun(t.db, "3.4.3"), ["migrations", "bootstrap"])).code, 0);
        const pre = await preflightCatalogs(t, ["3.5.0"]);
        // kong.plugins edited after preflight: the catalog would miss or invent plugin subsystems.
        const r = ok(await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0", { plugins: "off" }) }, { ...t, env: { [CATALOG_ENV]: pre } }));
        assert.deepEqual([r.gate, r.before, r.after], ["list", "new", "up-to-date"]);
    });

    it("a catalog learnt from another image under the same tag (rebuilt since preflight) is not used", async () => {
        const t = await server.kongDatabase("rebuilt");
        assert.equal((await kong(t, kongRun(t.db, "3.4.3"), ["migrations", "bootstrap"])).code, 0);
        const pre = await preflightCatalogs(t, ["3.5.0"]);
        // As preflight records it on a Docker host: the image's id.
        const result = JSON.parse(pre.trim().split("\n").pop()!) as { catalogs: Array<Record<string, unknown>> };
        result.catalogs[0].imageId = "sha256:learnt";
        const env = { [CATALOG_ENV]: JSON.stringify(result), FAKE_DOCKER_STATE: fakeDockerState(), FAKE_DOCKER_KONG: STANDIN, KONG_UPGRADE_KONG_COMMAND: "" };
        const up = await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0") }, { ...t, env: { ...env, FAKE_DOCKER_IMAGE_ID: "sha256:rebuilt" } });
        assert.equal(ok(up).gate, "list");
        assert.match(up.stderr, /kong:3\.5\.0 is not the image preflight learnt its migrations from/);
        const finish = await runStep({ step: "migrations", phase: "finish", db: t.db, kong: kongRun(t.db, "3.5.0") }, { ...t, env: { ...env, FAKE_DOCKER_IMAGE_ID: "sha256:learnt" } });
        assert.equal(ok(finish).gate, "schema_meta", "the same image: the catalog stands");
    });

    it("a hop before 3.0 (no `kong migrations status`) gets no catalog, and preflight still passes", async () => {
        const t = await server.kongDatabase("old");
        assert.equal((await kong(t, kongRun(t.db, "3.4.3"), ["migrations", "bootstrap"])).code, 0);
        const state = fakeDockerState();
        writeFileSync(state, JSON.stringify({ "mc-kong-3-4-3-node-0": { running: true, health: "healthy", labels: { "kong-upgrade.stack": "mc", "kong-upgrade.version": "3.4.3", "kong-upgrade.role": "node" } } }));
        const r = ok(await runStep({
            step: "preflight", mode: "upgrade", db: t.db, kong: kongRun(t.db, "3.5.0"), cluster: cluster("mc", "3.4.3", [{ container: "mc-kong-3-4-3-node-0" }]),
            to: "3.5.0", snapshotPrefix: "mc_snap_", hops: ["3.5.0"], hopRuns: [kongRun(t.db, "2.8.4"), kongRun(t.db, "3.5.0")],
        }, { ...t, env: { FAKE_DOCKER_STATE: state } }));
        assert.deepEqual((r.catalogs as Array<{ version: string }>).map((c) => c.version), ["3.5.0"]);
    });
});
