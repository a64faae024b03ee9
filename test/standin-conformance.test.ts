// The Kong stand-in held to Kong's own behaviour: each case is an assertion of Kong's CLI tests, or
// a branch of the code they test, turned into a case against the stand-in on a real PostgreSQL.
// Citations are Kong/kong at tag 3.7.1 (file:line). Every green step test stands on these.
import { strict as assert } from "assert";
import { spawn } from "child_process";
import { mkdtempSync, rmSync } from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { DbTarget } from "../steps/lib/spec";
import { TestServer, startPostgres } from "./helpers/postgres";
import { STANDIN } from "./helpers/steps";
import { KONG_371_TABLE_LIST, Layout, kong371Layout, readLayout } from "./helpers/kong-schema";
import { expectedTables } from "./kong-standin/catalog";

let server: TestServer;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

type Db = { db: DbTarget; password: string };
interface Run { code: number; stdout: string; stderr: string }

function pgEnv(t: Db): Record<string, string> {
    return { KONG_PG_HOST: t.db.host, KONG_PG_PORT: String(t.db.port), KONG_PG_USER: t.db.user, KONG_PG_PASSWORD: t.password, KONG_PG_DATABASE: t.db.database };
}

/** `kong <args>` of the stand-in at `version`, as a process (Kong's tests use plugins = "off"). */
function kong(t: Db, version: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
    return new Promise((resolve, reject) => {
        const child = spawn(STANDIN, args, { env: { ...process.env, ...pgEnv(t), KONG_VERSION: version, KONG_PLUGINS: "off", ...env }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
        child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
}
const bundled = { KONG_PLUGINS: "bundled" };

async function query<T extends Record<string, unknown>>(t: Db, sql: string, params: unknown[] = []): Promise<T[]> {
    const c = new Client({ host: t.db.host, port: t.db.port, user: t.db.user, password: t.password, database: t.db.database });
    await c.connect();
    try {
        return (await c.query<T>(sql, params)).rows;
    } finally {
        await c.end();
    }
}

async function bootstrapped(label: string, version: string, env: Record<string, string> = {}): Promise<Db> {
    const t = await server.kongDatabase(label);
    const r = await kong(t, version, ["migrations", "bootstrap"], env);
    assert.equal(r.code, 0, r.stderr);
    return t;
}

const CORE_TO_340 = "000_base, 003_100_to_110, 004_110_to_120, 005_120_to_130, 006_130_to_140, 007_140_to_150, 008_150_to_200, " +
    "009_200_to_210, 010_210_to_211, 011_212_to_213, 012_213_to_220, 013_220_to_230, 014_230_to_270, 015_270_to_280, 016_280_to_300, " +
    "017_300_to_310, 018_310_to_320, 019_320_to_330, 020_330_to_340";

describe("kong migrations: commands and exit codes", () => {
    it("rejects an invalid command with exit 1", async () => {
        // spec/02-integration/02-cmd/10-migrations_spec.lua:65-69; bin/kong:86
        const t = await server.kongDatabase("invalid");
        const r = await kong(t, "3.7.1", ["migrations", "invalid"]);
        assert.equal(r.code, 1);
        assert.ok(r.stderr.includes("No such command for migrations: invalid"), r.stderr);
    });

    it("list exits 3 on an empty database, with Kong's bootstrap text on stdout", async () => {
        // 10-migrations_spec.lua:172-179; kong/cmd/migrations.lua:106-108; kong/cmd/utils/migrations.lua:6
        const t = await server.kongDatabase("needsboot");
        const r = await kong(t, "3.7.1", ["migrations", "list"]);
        assert.equal(r.code, 3);
        assert.ok(r.stdout.startsWith("Database needs bootstrapping or is older than Kong 1.0.\n\nTo start a new installation from scratch, run 'kong migrations bootstrap'."), r.stdout);
    });

    it("up and finish on an empty database fail with exit 1", async () => {
        // kong/cmd/utils/migrations.lua:58-61, 127-129
        const t = await server.kongDatabase("upempty");
        for (const sub of ["up", "finish"]) {
            const r = await kong(t, "3.7.1", ["migrations", sub]);
            assert.equal(r.code, 1);
            assert.ok(r.stderr.startsWith("Error: Cannot run migrations: Database needs bootstrapping or is older than Kong 1.0."), r.stderr);
        }
    });

    it("bootstrap runs every migration, up and teardown, and prints Kong's progress", async () => {
        // 10-migrations_spec.lua:119-126; kong/cmd/utils/migrations.lua:27,45; kong/db/init.lua:523,607-626
        const t = await server.kongDatabase("boot");
        const r = await kong(t, "3.4.3", ["migrations", "bootstrap"]);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.stdout.startsWith("Bootstrapping database...\n"), r.stdout);
        assert.ok(r.stdout.includes(`\nmigrating core on database '${t.db.database}'...\n`), r.stdout);
        assert.ok(r.stdout.includes("\ncore migrated up to: 000_base (executed)\n"));
        assert.ok(r.stdout.includes("\ncore migrated up to: 009_200_to_210 (executed)\n"), "a migration with a teardown is executed, not pending, at bootstrap");
        assert.ok(r.stdout.endsWith("\n19 migrations processed\n19 executed\nDatabase is up-to-date\n"), r.stdout);
        const meta = await query<{ pending: string[] | null }>(t, "SELECT pending FROM schema_meta");
        assert.ok(meta.every((m) => (m.pending ?? []).length === 0));
    });

    it("bootstrap on a bootstrapped database does nothing and exits 0; --force bootstraps again", async () => {
        // 10-migrations_spec.lua:136-154; kong/cmd/utils/migrations.lua:30-32; kong/cmd/migrations.lua:178-181
        const t = await bootstrapped("twice", "3.4.3");
        const again = await kong(t, "3.5.0", ["migrations", "bootstrap"]);
        assert.equal(again.code, 0);
        assert.equal(again.stdout, "Database already bootstrapped\n");
        assert.equal((await kong(t, "3.5.0", ["migrations", "list"])).code, 5, "bootstrap must not have run 3.5's migrations");
        const forced = await kong(t, "3.5.0", ["migrations", "bootstrap", "--force"]);
        assert.equal(forced.code, 0, forced.stderr);
        assert.ok(forced.stdout.includes("\nmigrating core"));
        assert.ok(forced.stdout.includes("\nDatabase is up-to-date\n"));
        assert.equal((await kong(t, "3.5.0", ["migrations", "list"])).code, 0);
    });

    it("list exits 0 when up to date and prints only the executed migrations", async () => {
        // 10-migrations_spec.lua:181-190; kong/cmd/migrations.lua:113-116, 154
        const t = await bootstrapped("uptodate", "3.4.3");
        const r = await kong(t, "3.4.3", ["migrations", "list"]);
        assert.equal(r.code, 0);
        assert.equal(r.stdout, `Executed migrations:\ncore: ${CORE_TO_340}\n`);
    });

    it("list exits 5 with new migrations, in Kong's layout", async () => {
        // 10-migrations_spec.lua:213-225; kong/cmd/migrations.lua:123-126, 149-152
        const t = await bootstrapped("new", "3.4.3");
        const r = await kong(t, "3.5.0", ["migrations", "list"]);
        assert.equal(r.code, 5);
        assert.equal(r.stdout, `Executed migrations:\ncore: ${CORE_TO_340}\n\nNew migrations available:\ncore: 021_340_to_350\n\nRun 'kong migrations up' to proceed\n`);
    });

    it("list right-aligns subsystem names to the longest of each list", async () => {
        // kong/db/migrations/state.lua:28-49
        const t = await bootstrapped("align", "3.5.0", bundled);
        const r = await kong(t, "3.6.1", ["migrations", "list"], bundled);
        assert.equal(r.code, 5);
        const fresh = r.stdout.split("New migrations available:\n")[1].split("\n\n")[0];
        assert.equal(fresh, [
            "                 core: 022_350_to_360",
            "                 acme: 003_350_to_360",
            "        opentelemetry: 001_331_to_332",
            "        rate-limiting: 006_350_to_360",
            "response-ratelimiting: 001_350_to_360",
        ].join("\n"));
    });

    it("up runs the first phase: executed and pending counted, then list exits 4 and up refuses", async () => {
        // 10-migrations_spec.lua:236-266; kong/db/init.lua:566-626; kong/cmd/utils/migrations.lua:66-68, 109-111; kong/cmd/migrations.lua:144-147
        const t = await bootstrapped("up", "3.5.0", bundled);
        const up = await kong(t, "3.6.1", ["migrations", "up"], bundled);
        assert.equal(up.code, 0, up.stderr);
        assert.ok(up.stdout.includes("\nacme migrated up to: 003_350_to_360 (pending)\n"), up.stdout);
        assert.ok(up.stdout.includes("\ncore migrated up to: 022_350_to_360 (executed)\n"));
        assert.ok(up.stdout.endsWith("5 migrations processed\n1 executed\n4 pending\n\nDatabase has pending migrations; run 'kong migrations finish' when ready\n"), up.stdout);
        const list = await kong(t, "3.6.1", ["migrations", "list"], bundled);
        assert.equal(list.code, 4);
        assert.ok(list.stdout.includes("\n\nPending migrations:\n"), list.stdout);
        assert.ok(list.stdout.endsWith("\n\nRun 'kong migrations finish' when ready\n"), list.stdout);
        const again = await kong(t, "3.6.1", ["migrations", "up"], bundled);
        assert.equal(again.code, 1);
        assert.ok(again.stderr.startsWith("Error: Database has pending migrations; run 'kong migrations finish'\n"), again.stderr);
    });

    it("up with nothing new prints that the database is already up to date", async () => {
        // 10-migrations_spec.lua:250-252; kong/cmd/utils/migrations.lua:94-100
        const t = await bootstrapped("already", "3.7.1");
        const r = await kong(t, "3.7.1", ["migrations", "up"]);
        assert.equal(r.code, 0);
        assert.equal(r.stdout, "Database is already up-to-date\n");
    });

    it("up of one migration says 'migration', singular, and no pending line", async () => {
        // kong/db/init.lua:615-626
        const t = await bootstrapped("one", "3.6.1");
        const r = await kong(t, "3.7.1", ["migrations", "up"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `migrating core on database '${t.db.database}'...\ncore migrated up to: 023_360_to_370 (executed)\n1 migration processed\n1 executed\n`);
    });

    it("finish runs the teardowns, then says nothing is pending; a second finish says the same", async () => {
        // 10-migrations_spec.lua:285-318; kong/cmd/utils/migrations.lua:145-163
        const t = await bootstrapped("finish", "3.6.1", bundled);
        assert.equal((await kong(t, "3.7.1", ["migrations", "up"], bundled)).code, 0);
        const fin = await kong(t, "3.7.1", ["migrations", "finish"], bundled);
        assert.equal(fin.code, 0, fin.stderr);
        assert.equal(fin.stdout, `migrating ai-proxy on database '${t.db.database}'...\nai-proxy migrated up to: 001_360_to_370 (executed)\n` +
            "1 migration processed\n1 executed\nNo pending migrations to finish\n");
        const again = await kong(t, "3.7.1", ["migrations", "finish"], bundled);
        assert.equal(again.stdout, "No pending migrations to finish\n");
        const meta = await query<{ pending: string[] | null }>(t, "SELECT pending FROM schema_meta");
        assert.ok(meta.every((m) => (m.pending ?? []).length === 0));
        assert.equal((await kong(t, "3.7.1", ["migrations", "list"], bundled)).code, 0);
    });

    it("finish with new migrations says to run up, and exits 0", async () => {
        // kong/cmd/utils/migrations.lua:156-159
        const t = await bootstrapped("finishnew", "3.4.3");
        const r = await kong(t, "3.5.0", ["migrations", "finish"]);
        assert.equal(r.code, 0);
        assert.equal(r.stdout, "\nNew migrations available; run 'kong migrations up' to proceed\n");
    });

    it("list with pending and new migrations exits 4 (pending wins) and warns on stderr", async () => {
        // kong/cmd/migrations.lua:128-142; kong/cmd/utils/log.lua:74-82
        const t = await bootstrapped("both", "3.5.0", bundled);
        assert.equal((await kong(t, "3.6.1", ["migrations", "up"], bundled)).code, 0);
        const r = await kong(t, "3.7.1", ["migrations", "list"], bundled);
        assert.equal(r.code, 4);
        assert.match(r.stderr, /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[warn\] Database has pending migrations from a previous upgrade, and new migrations from this upgrade \(version 3\.7\.1\)\n$/);
        assert.ok(r.stdout.endsWith("\n\n\nRun 'kong migrations finish' when ready to complete pending migrations (postgres database will be incompatible with the previous Kong version)\n"), r.stdout);
    });

    it("-q prints nothing, and the exit codes stay", async () => {
        // kong/cmd/migrations.lua:83-85 (log.disable); 10-migrations_spec.lua:156-161, 227-232, 276-281, 328-333
        const t = await server.kongDatabase("quiet");
        const runs: Array<[string[], string, number]> = [
            [["migrations", "list", "-q"], "3.4.3", 3], [["migrations", "bootstrap", "-q"], "3.4.3", 0], [["migrations", "list", "-q"], "3.5.0", 5],
            [["migrations", "up", "-q"], "3.6.1", 0], [["migrations", "list", "-q"], "3.6.1", 0], [["migrations", "finish", "-q"], "3.6.1", 0],
        ];
        for (const [args, version, code] of runs) {
            const r = await kong(t, version, args);
            assert.deepEqual([r.code, r.stdout, r.stderr], [code, "", ""], `${args.join(" ")} with ${version}`);
        }
    });
});

describe("kong migrations status", () => {
    it("prints one JSON object; keys with empty lists are absent", async () => {
        // kong/cmd/migrations.lua:156-175; kong/db/migrations/state.lua:209-215, 288-299; kong/db/migrations/subsystems.lua
        const t = await server.kongDatabase("status");
        // Before bootstrap every migration is new (kong/db/migrations/state.lua:219-246).
        assert.deepEqual(JSON.parse((await kong(t, "3.4.3", ["migrations", "status"])).stdout), {
            needs_bootstrap: true, new_migrations: [{ subsystem: "core", namespace: "kong.db.migrations.core", migrations: CORE_TO_340.split(", ") }],
        });
        await kong(t, "3.4.3", ["migrations", "bootstrap"], bundled);
        const fresh = JSON.parse((await kong(t, "3.6.1", ["migrations", "status"], { KONG_PLUGINS: "rate-limiting" })).stdout) as Record<string, unknown>;
        assert.deepEqual(Object.keys(fresh).sort(), ["executed_migrations", "needs_bootstrap", "new_migrations"]);
        assert.deepEqual(fresh.new_migrations, [
            { subsystem: "core", namespace: "kong.db.migrations.core", migrations: ["021_340_to_350", "022_350_to_360"] },
            { subsystem: "rate-limiting", namespace: "kong.plugins.rate-limiting.migrations", migrations: ["006_350_to_360"] },
        ]);
        // -q does not silence status: it prints with print(), not the log.
        const quiet = await kong(t, "3.4.3", ["migrations", "status", "-q"]);
        assert.equal(JSON.parse(quiet.stdout).needs_bootstrap, false);
    });
});

// A migration in neither `executed` nor `pending`: State.load sets n = i + 1 only on reaching the
// migration named last_executed, and files an absent one as new when `not n or i >= n`, else
// missing (kong/db/migrations/state.lua:250-283). So only last_executed itself can be missing.
describe("kong migrations: a migration the database has no record of", () => {
    const CORE_TO_370 = `${CORE_TO_340}, 021_340_to_350, 022_350_to_360, 023_360_to_370`;
    const forget = (t: Db, names: string[], lastExecuted?: string) => query(t,
        "UPDATE schema_meta SET executed = (SELECT coalesce(array_agg(e), '{}') FROM unnest(executed) e WHERE e <> ALL($1)), " +
        "last_executed = coalesce($2, last_executed) WHERE subsystem = 'core'", [names, lastExecuted ?? null]);
    const without = (names: string[]) => CORE_TO_370.split(", ").filter((n) => !names.includes(n)).join(", ");

    it("one before last_executed is new: list exits 5 and shows it, up runs it", async () => {
        // kong/db/migrations/state.lua:250-279 (n still nil before last_executed); kong/cmd/migrations.lua:123-126, 149-152;
        // kong/cmd/utils/migrations.lua:94-103 (up runs new_migrations); kong/db/strategies/postgres/connector.lua:912-919
        const t = await bootstrapped("absentbefore", "3.7.1");
        await forget(t, ["021_340_to_350"]);
        const list = await kong(t, "3.7.1", ["migrations", "list"]);
        assert.equal(list.code, 5);
        assert.equal(list.stdout, `Executed migrations:\ncore: ${without(["021_340_to_350"])}\n\nNew migrations available:\ncore: 021_340_to_350\n\nRun 'kong migrations up' to proceed\n`);
        const up = await kong(t, "3.7.1", ["migrations", "up"]);
        assert.equal(up.code, 0, up.stderr);
        assert.equal(up.stdout, `migrating core on database '${t.db.database}'...\ncore migrated up to: 021_340_to_350 (executed)\n1 migration processed\n1 executed\n`);
        assert.equal((await kong(t, "3.7.1", ["migrations", "list"])).code, 0);
        assert.deepEqual(await query(t, "SELECT last_executed FROM schema_meta WHERE subsystem = 'core'"), [{ last_executed: "021_340_to_350" }]);
    });

    it("last_executed itself is missing: not new, list exits 0, up has nothing to run, status lists it under missing_migrations", async () => {
        // kong/db/migrations/state.lua:253-255, 278-283 (at last_executed n = i + 1 > i); kong/cmd/migrations.lua:105-154 (list ignores
        // missing), 160-175 (cleanup leaves missing_migrations as migration tables: name and postgres.up); kong/cmd/utils/migrations.lua:94-100
        const t = await bootstrapped("absentlast", "3.7.1");
        await forget(t, ["023_360_to_370"]);
        const list = await kong(t, "3.7.1", ["migrations", "list"]);
        assert.deepEqual([list.code, list.stdout], [0, `Executed migrations:\ncore: ${without(["023_360_to_370"])}\n`]);
        const up = await kong(t, "3.7.1", ["migrations", "up"]);
        assert.deepEqual([up.code, up.stdout], [0, "Database is already up-to-date\n"]);
        const status = await kong(t, "3.7.1", ["migrations", "status"]);
        assert.equal(status.code, 0, status.stderr);
        const st = JSON.parse(status.stdout) as Record<string, unknown>;
        assert.deepEqual(Object.keys(st).sort(), ["executed_migrations", "missing_migrations", "needs_bootstrap"]);
        const missing = st.missing_migrations as Array<{ subsystem: string; namespace: string; migrations: Array<{ name: string; postgres: Record<string, unknown> }> }>;
        assert.deepEqual(missing.map((e) => [e.subsystem, e.namespace, e.migrations.map((m) => m.name)]), [["core", "kong.db.migrations.core", ["023_360_to_370"]]]);
        // The migration module as loaded: Kong's own SQL there, the stand-in's here; only `up` (no teardown, no up_f).
        assert.deepEqual(Object.keys(missing[0].migrations[0].postgres), ["up"]);
        assert.equal(typeof missing[0].migrations[0].postgres.up, "string");
    });

    it("status fails with exit 1 when the missing migration has a teardown: cjson cannot encode a function", async () => {
        // kong/cmd/migrations.lua:160-175; kong/db/schema/others/migrations.lua (teardown is a function);
        // lua-cjson 2.1.0.13 lua_cjson.c json_append_data: a function value → json_encode_exception "Cannot serialise function: type not
        // supported" (encode_skip_unsupported_value_types defaults to 0, Kong never sets it); LuaJIT 2.1-20231117 lj_err.c luaL_error
        // prefixes the Lua caller's "file:line: ", which kong/cmd/init.lua:31-42 strips before "Error: …", then exit 1.
        const t = await bootstrapped("absentteardown", "3.7.1");
        await forget(t, ["016_280_to_300"], "016_280_to_300");
        const status = await kong(t, "3.7.1", ["migrations", "status"]);
        assert.deepEqual([status.code, status.stdout], [1, ""]);
        assert.ok(status.stderr.startsWith("Error: Cannot serialise function: type not supported\n\n  Run with --v (verbose) or --vv (debug) for more details\n"), status.stderr);
        // list does not encode anything: the missing migration is simply not shown.
        const list = await kong(t, "3.7.1", ["migrations", "list"]);
        assert.deepEqual([list.code, list.stdout], [0, `Executed migrations:\ncore: ${without(["016_280_to_300"])}\n`]);
    });

    it("last_executed naming a migration this Kong does not ship: every absent migration is new", async () => {
        // kong/db/migrations/state.lua:250-279: no migration matches last_executed, n stays nil, `not n` holds throughout
        const t = await bootstrapped("absentunknown", "3.9.0");
        assert.deepEqual(await query(t, "SELECT last_executed FROM schema_meta WHERE subsystem = 'core'"), [{ last_executed: "024_380_to_390" }]);
        await forget(t, ["022_350_to_360", "023_360_to_370"]);
        const list = await kong(t, "3.7.1", ["migrations", "list"]);
        assert.equal(list.code, 5);
        assert.ok(list.stdout.endsWith("\n\nNew migrations available:\ncore: 022_350_to_360, 023_360_to_370\n\nRun 'kong migrations up' to proceed\n"), list.stdout);
        const st = JSON.parse((await kong(t, "3.7.1", ["migrations", "status"])).stdout) as Record<string, unknown>;
        assert.deepEqual(Object.keys(st).sort(), ["executed_migrations", "needs_bootstrap", "new_migrations"]);
    });
});

describe("the migrations lock", () => {
    const holdLock = (t: Db, seconds: number) =>
        query(t, "INSERT INTO locks (key, owner, ttl) VALUES ('migrations', 'other-node', now() + make_interval(secs => $1))", [seconds]);

    it("finish does not wait for another node's lock: it aborts, exits 0 and migrates nothing", async () => {
        // kong/cmd/utils/migrations.lua:5, 131, 171-173; kong/db/init.lua:367-371
        const t = await bootstrapped("lockfinish", "3.5.0", bundled);
        await kong(t, "3.6.1", ["migrations", "up"], bundled);
        await holdLock(t, 60);
        const r = await kong(t, "3.6.1", ["migrations", "finish"], bundled);
        assert.deepEqual([r.code, r.stdout], [0, "aborted: another node is performing database changes\n"]);
        assert.equal((await kong(t, "3.6.1", ["migrations", "list"], bundled)).code, 4);
    });

    it("up waits for the lock; released meanwhile, it aborts with exit 0 and migrates nothing", async () => {
        // kong/db/init.lua:373-393 (cluster_mutex ignores `abort`); kong/cmd/utils/migrations.lua:118-120
        const t = await bootstrapped("lockup", "3.4.3");
        await holdLock(t, 60);
        const started = Date.now();
        const pending = kong(t, "3.5.0", ["migrations", "up", "--lock-timeout", "30"]);
        // Release the lock only once up is connected and waiting for it.
        for (let i = 0; i < 200; i++) {
            const waiting = await query(t, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kong-standin-3.5.0'");
            if (waiting.length > 0) break;
            await new Promise((r) => setTimeout(r, 100));
        }
        await new Promise((r) => setTimeout(r, 1500));
        await query(t, "DELETE FROM locks");
        const r = await pending;
        assert.deepEqual([r.code, r.stdout], [0, "aborted: another node is performing database changes\n"]);
        assert.ok(Date.now() - started >= 1500, "up returned before the lock was released");
        assert.equal((await kong(t, "3.5.0", ["migrations", "list"])).code, 5);
    });

    it("up fails with exit 1 when the lock is still held after --lock-timeout", async () => {
        // kong/db/init.lua:377-398 ("[PostgreSQL error] timeout"); kong/cmd/utils/migrations.lua:114-116
        const t = await bootstrapped("locktimeout", "3.4.3");
        await holdLock(t, 60);
        const r = await kong(t, "3.5.0", ["migrations", "up", "--lock-timeout", "2"]);
        assert.equal(r.code, 1);
        assert.ok(r.stderr.startsWith("Error: [PostgreSQL error] timeout\n"), r.stderr);
    });

    it("takes the lock with a TTL of --lock-timeout seconds, and an expired lock is cleared", async () => {
        // kong/db/strategies/postgres/connector.lua:668-700 (insert_lock: DELETE expired, INSERT ttl = now + ttl)
        const t = await bootstrapped("lockttl", "3.4.3");
        await query(t, "INSERT INTO locks (key, owner, ttl) VALUES ('migrations', 'dead-node', now() - interval '1 second')");
        const r = await kong(t, "3.5.0", ["migrations", "up", "--lock-timeout", "45"], { KONG_SIM_CRASH_HOLDING_LOCK: "1" });
        assert.notEqual(r.code, 0);
        const rows = await query<{ owner: string; secs: number }>(t, "SELECT owner, extract(epoch FROM ttl - now())::float AS secs FROM locks");
        assert.equal(rows.length, 1);
        assert.notEqual(rows[0].owner, "dead-node");
        assert.ok(rows[0].secs > 40 && rows[0].secs <= 45, `ttl ${rows[0].secs} s`);
    });
});

describe("kong migrations reset", () => {
    it("refuses without --yes when not on a terminal", async () => {
        // 10-migrations_spec.lua:72-80; kong/cmd/migrations.lua:185-188
        const t = await bootstrapped("resettty", "3.7.1");
        const r = await kong(t, "3.7.1", ["migrations", "reset"]);
        assert.equal(r.code, 1);
        assert.ok(r.stderr.includes("not a tty"), r.stderr);
    });

    it("resets with --yes, even without a locks table, and not twice", async () => {
        // 10-migrations_spec.lua:82-115; kong/cmd/utils/migrations.lua:177-211
        const t = await bootstrapped("reset", "3.7.1");
        assert.equal((await kong(t, "3.7.1", ["migrations", "reset", "--yes"])).code, 0);
        assert.equal((await kong(t, "3.7.1", ["migrations", "list"])).code, 3);
        await kong(t, "3.7.1", ["migrations", "bootstrap"]);
        await query(t, "DROP TABLE locks");
        assert.equal((await kong(t, "3.7.1", ["migrations", "reset", "--yes"])).code, 0);
        const twice = await kong(t, "3.7.1", ["migrations", "reset", "--yes"]);
        assert.equal(twice.code, 1);
        assert.ok(twice.stdout.includes("nothing to reset"), twice.stdout);
    });
});

// ---- schema --------------------------------------------------------------------------------------

async function layout(t: Db): Promise<Layout> {
    const c = new Client({ host: t.db.host, port: t.db.port, user: t.db.user, password: t.password, database: t.db.database });
    await c.connect();
    try {
        return await readLayout(c);
    } finally {
        await c.end();
    }
}

describe("Kong's schema", () => {
    it("a 3.7.1 bootstrap with the bundled plugins has Kong 3.7.1's tables, columns, keys, triggers and 18 subsystems", async () => {
        const t = await bootstrapped("schema371", "3.7.1", bundled);
        const got = await layout(t);
        assert.deepEqual(got.tables, KONG_371_TABLE_LIST);
        assert.deepEqual(expectedTables("3.7.1"), KONG_371_TABLE_LIST);
        assert.deepEqual(got, kong371Layout());
        assert.equal(got.triggers.length, 27);
        assert.equal((await query(t, "SELECT 1 FROM schema_meta")).length, 18);
        // Rows Kong's migrations insert: the default workspace and the cluster id.
        assert.deepEqual(await query(t, "SELECT name FROM workspaces"), [{ name: "default" }]);
        assert.equal((await query(t, "SELECT 1 FROM parameters WHERE key = 'cluster_id'")).length, 1);
    });

    it("3.4 → 3.5 → 3.6 → 3.7 through up and finish ends in the same layout as a 3.7.1 bootstrap", async () => {
        const t = await bootstrapped("schemapath", "3.4.3", bundled);
        const before = await layout(t);
        assert.ok(!before.tables.includes("clustering_rpc_requests"));
        assert.ok(!before.columns.some((c) => c.startsWith("clustering_data_planes.labels")));
        await query(t, `INSERT INTO plugins (id, name, config, enabled) VALUES (gen_random_uuid(), 'rate-limiting', '{"minute": 5, "redis_host": "redis.internal", "redis_port": 6379}', true)`);
        for (const hop of ["3.5.0", "3.6.1", "3.7.1"]) {
            assert.equal((await kong(t, hop, ["migrations", "up"], bundled)).code, 0);
            assert.equal((await kong(t, hop, ["migrations", "finish"], bundled)).code, 0);
            assert.equal((await kong(t, hop, ["migrations", "list"], bundled)).code, 0, hop);
        }
        assert.deepEqual(await layout(t), kong371Layout());
        // 3.6's rate-limiting migration moved the flat redis_* fields into `redis` (up) and dropped them (teardown).
        const [p] = await query<{ config: Record<string, unknown> }>(t, "SELECT config FROM plugins");
        assert.deepEqual([p.config.redis_host, (p.config.redis as Record<string, unknown>).host, (p.config.redis as Record<string, unknown>).port], [undefined, "redis.internal", 6379]);
    });

    it("the tag-sync triggers keep the tags table in step", async () => {
        // kong/db/migrations/core/003_100_to_110.lua (sync_tags and the <table>_sync_tags_trigger triggers)
        const t = await bootstrapped("tags", "3.7.1");
        await query(t, "INSERT INTO services (id, name, host, tags) VALUES ('6d7c1e5a-1f2b-4c3d-8e9f-0a1b2c3d4e5f', 's', 'h', '{a,b}')");
        assert.deepEqual(await query(t, "SELECT entity_name, tags FROM tags"), [{ entity_name: "services", tags: ["a", "b"] }]);
        await query(t, "DELETE FROM services");
        assert.equal((await query(t, "SELECT 1 FROM tags")).length, 0);
    });
});

// ---- a node: /status, /status/ready, kong health, start ---------------------------------------

function freePort(): Promise<number> {
    return new Promise((resolve) => {
        const s = net.createServer().listen(0, "127.0.0.1", () => {
            const port = (s.address() as net.AddressInfo).port;
            s.close(() => resolve(port));
        });
    });
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const r = await fetch(url);
    return { status: r.status, body: await r.json() as Record<string, unknown> };
}

async function waitFor(url: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
        try { await fetch(url); return; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    throw new Error(`${url} never answered`);
}

describe("a node", () => {
    it("refuses to start with new migrations", async () => {
        // kong/cmd/utils/migrations.lua:13-23 (check_state): new migrations → error
        const t = await bootstrapped("start", "3.4.3");
        const r = await kong(t, "3.5.0", ["start"], { KONG_PREFIX: mkdtempSync(path.join(os.tmpdir(), "kong-prefix-")) });
        assert.equal(r.code, 1);
        assert.ok(r.stderr.startsWith("Error: New migrations available; run 'kong migrations up' to proceed\n"), r.stderr);
    });

    it("GET /status is always 200 with Kong's keys; database.reachable follows the database", async () => {
        // kong/api/routes/health.lua:38-68; kong/status/ready.lua:72-113
        const t = await bootstrapped("status", "3.7.1");
        const port = await freePort();
        const prefix = mkdtempSync(path.join(os.tmpdir(), "kong-prefix-"));
        const env = { KONG_PREFIX: prefix, KONG_STATUS_LISTEN: `127.0.0.1:${port}`, KONG_ADMIN_LISTEN: `127.0.0.1:${port + 1}`, KONG_PROXY_LISTEN: `127.0.0.1:${port + 2}` };
        const node = spawn(STANDIN, ["start"], { env: { ...process.env, ...pgEnv(t), KONG_VERSION: "3.7.1", KONG_PLUGINS: "off", ...env }, stdio: "ignore" });
        const exited = new Promise((r) => node.on("exit", r));
        try {
            await waitFor(`http://127.0.0.1:${port}/status`);
            for (const base of [`http://127.0.0.1:${port}`, `http://127.0.0.1:${port + 1}`]) {
                const s = await getJson(`${base}/status`);
                assert.equal(s.status, 200);
                assert.deepEqual(Object.keys(s.body).sort(), ["database", "memory", "server"]);
                assert.deepEqual(Object.keys(s.body.memory as object).sort(), ["lua_shared_dicts", "workers_lua_vms"]);
                assert.deepEqual(Object.keys(s.body.server as object).sort(), ["connections_accepted", "connections_active", "connections_handled",
                    "connections_reading", "connections_waiting", "connections_writing", "total_requests"]);
                assert.deepEqual(s.body.database, { reachable: true });
            }
            assert.deepEqual(await getJson(`http://127.0.0.1:${port}/status/ready`), { status: 200, body: { message: "ready" } });
            // /status/ready is served on the Status API only.
            assert.equal((await getJson(`http://127.0.0.1:${port + 1}/status/ready`)).status, 404);

            const h = await kong(t, "3.7.1", ["health"], { KONG_PREFIX: prefix });
            // kong/cmd/health.lua:28-42
            assert.deepEqual([h.code, h.stdout], [0, `nginx.......running\n\nKong is healthy at ${prefix}\n`]);

            // The database refuses the node: /status still 200, reachable false; ready 503.
            const admin = await server.admin();
            await admin.query(`ALTER ROLE "${t.db.user}" NOLOGIN`);
            await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [t.db.user]);
            await admin.end();
            const down = await getJson(`http://127.0.0.1:${port}/status`);
            assert.deepEqual([down.status, down.body.database], [200, { reachable: false }]);
            assert.deepEqual(await getJson(`http://127.0.0.1:${port}/status/ready`), { status: 503, body: { message: "failed to connect to database" } });
            // kong health does not look at the database.
            assert.equal((await kong(t, "3.7.1", ["health"], { KONG_PREFIX: prefix })).code, 0);
        } finally {
            const admin = await server.admin();
            await admin.query(`ALTER ROLE "${t.db.user}" LOGIN`);
            await admin.end();
            node.kill("SIGQUIT");
        }
        await exited;
        // After the node stops: kong/cmd/health.lua:30-39.
        const stopped = await kong(t, "3.7.1", ["health"], { KONG_PREFIX: prefix });
        assert.deepEqual([stopped.code, stopped.stdout], [1, "nginx.......not running\n\n"]);
        assert.ok(stopped.stderr.startsWith(`Error: Kong is not running at ${prefix}\n`), stopped.stderr);
        const none = await kong(t, "3.7.1", ["health"], { KONG_PREFIX: path.join(prefix, "absent") });
        assert.ok(none.stderr.startsWith(`Error: no such prefix: ${path.join(prefix, "absent")}`), none.stderr);
        rmSync(prefix, { recursive: true, force: true });
    });
});
