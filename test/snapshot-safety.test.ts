// The way back never restores the wrong data (issue 10): whole-database fidelity on Kong 3.7.1's
// table layout for all three restore paths, and the reproductions of the issue, each against the
// real step programs and a real PostgreSQL.
import { strict as assert } from "assert";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { DbTarget, DumpTarget, StepSpec } from "../steps/lib/spec";
import { dumpFolder, snapshotPrefix } from "../steps/lib/snapshots";
import { stamp } from "../steps/lib/log";
import { unusedName } from "../steps/snapshot";
import { TestServer, startPostgres } from "./helpers/postgres";
import { StepRun, kongRun, runStep } from "./helpers/steps";
import { databaseLevel, fingerprint, loadKong371, schemaFacts, seedKong, withClient } from "./helpers/kong-fixture";

let server: TestServer;
let admin: Client;
before(async () => { server = await startPostgres(); admin = await server.admin(); });
after(async () => { await admin?.end(); await server?.stop(); });

const LOCAL = { KONG_UPGRADE_PG_TOOLS: "local" };

function ok(r: StepRun): Record<string, unknown> {
    assert.equal(r.code, 0, `step failed (exit ${r.code}):\n${r.stderr}`);
    return r.result!;
}

function refused(r: StepRun, why: RegExp): void {
    assert.equal(r.code, 1, `expected a refusal, got exit ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, why);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "a clear message, never a stack trace");
}

let counter = 0;
/** A role and a database named exactly `name` (or a fresh one), with Kong 3.7.1's tables and some entities. */
async function kongDb(name?: string, opts: { icu?: boolean; role?: string } = {}): Promise<{ db: DbTarget; password: string }> {
    const n = ++counter;
    const role = opts.role ?? `kr_${process.pid}_${n}`;
    const password = `pw-${role}`;
    const exists = (await admin.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [role])).rowCount;
    if (!exists) await admin.query(`CREATE ROLE "${role}" LOGIN CREATEDB PASSWORD '${password}'`);
    const database = name ?? `kong_${process.pid}_${n}`;
    const locale = opts.icu ? `TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C.UTF-8'` : "";
    await admin.query(`CREATE DATABASE "${database}" OWNER "${role}" ${locale}`);
    const db: DbTarget = { host: "127.0.0.1", port: server.port, database, user: role, sslmode: "disable" };
    await loadKong371(db, password);
    await seedKong(db, password, 6);
    return { db, password };
}

const snapSpec = (db: DbTarget, stack: string, strategy: "template" | "dump" = "template", dump?: DumpTarget): StepSpec => ({
    step: "snapshot", db, strategy, prefix: snapshotPrefix(stack, db.database, "3.4.3", "3.7.1"), from: "3.4.3", to: "3.7.1",
    terminateSessions: false, stack, hops: ["3.5.0", "3.6.1", "3.7.1"], dump,
});
const restoreSpec = (db: DbTarget, stack: string, strategy: "rename" | "copy" = "rename", dump?: DumpTarget, snapshot?: string): StepSpec => ({
    step: "restore", db, strategy, prefix: snapshotPrefix(stack, db.database, "3.4.3", "3.7.1"), stack, dump, snapshot,
});
const dumpTarget = (db: DbTarget, directory: string): DumpTarget => ({ image: "postgres:15", network: "unused", directory, host: db.host, port: db.port });

describe("whole-database fidelity on Kong 3.7.1's tables, every restore path", () => {
    for (const path_ of [
        { name: "template + rename", snap: "template", restore: "rename" },
        { name: "template + copy", snap: "template", restore: "copy" },
        { name: "dump", snap: "dump", restore: "rename" },
    ] as const) {
        it(`${path_.name}: rows, triggers, grants, statistics and every database-level property come back`, async () => {
            const t = await kongDb(undefined, { icu: true });
            const d = t.db.database;
            const reader = `reader_${process.pid}_${counter}`;
            await admin.query(`CREATE ROLE "${reader}"`);
            // What an operator set on Kong's database.
            await withClient(t.db, t.password, async (c) => {
                await c.query(`INSERT INTO consumers (id, username) VALUES (gen_random_uuid(), 'apple'), (gen_random_uuid(), 'Banana'), (gen_random_uuid(), 'cherry')`);
                await c.query(`ALTER DATABASE "${d}" SET statement_timeout = '45s'`);
                await c.query(`ALTER DATABASE "${d}" SET search_path TO "$user", public, kong_extra`);
                await c.query(`ALTER ROLE "${t.db.user}" IN DATABASE "${d}" SET work_mem = '8MB'`);
                await c.query(`REVOKE CONNECT ON DATABASE "${d}" FROM PUBLIC`);
                await c.query(`GRANT CONNECT ON DATABASE "${d}" TO "${reader}"`);
                await c.query(`GRANT SELECT ON services, routes TO "${reader}"`);
                await c.query(`COMMENT ON DATABASE "${d}" IS 'Kong production — team edge, do not drop'`);
                await c.query(`ALTER DATABASE "${d}" CONNECTION LIMIT 150`);
                await c.query("ANALYZE");
            });
            const original = { level: await databaseLevel(admin, d), rows: await fingerprint(t.db, t.password), inside: await schemaFacts(t.db, t.password) };
            assert.equal(original.level.datlocprovider, "i");
            assert.deepEqual((original.inside.order as string[]).filter((u) => /^[a-zA-Z]+$/.test(u)), ["apple", "Banana", "cherry"], "ICU order");
            assert.equal(Object.keys(original.rows).length, 34, "Kong 3.7.1 has 34 tables");

            const dir = mkdtempSync(path.join(os.tmpdir(), "fidelity-"));
            const dump = path_.snap === "dump" ? dumpTarget(t.db, dir) : undefined;
            const snap = ok(await runStep(snapSpec(t.db, "fid", path_.snap, dump), { ...t, env: LOCAL }));
            assert.equal(Object.keys(snap.entityCounts as object).length, 34, "counts every table the catalog lists");
            // The upgrade goes wrong and someone edits the database.
            await withClient(t.db, t.password, async (c) => {
                await c.query("DELETE FROM keyauth_credentials");
                await c.query(`ALTER DATABASE "${d}" SET statement_timeout = '1s'`);
                await c.query(`COMMENT ON DATABASE "${d}" IS 'changed'`);
                await c.query(`GRANT CONNECT ON DATABASE "${d}" TO PUBLIC`);
                await c.query(`ALTER DATABASE "${d}" CONNECTION LIMIT -1`);
            });
            const r = ok(await runStep(restoreSpec(t.db, "fid", path_.restore, dump), { ...t, env: LOCAL, expect: JSON.stringify(snap) }));
            assert.equal(r.notReapplied, undefined);
            assert.deepEqual(await databaseLevel(admin, d), original.level);
            assert.deepEqual(await fingerprint(t.db, t.password), original.rows);
            assert.deepEqual(await schemaFacts(t.db, t.password), original.inside);
            // PUBLIC cannot connect again; the reader can.
            const pub = await admin.query(`SELECT has_database_privilege('public', $1, 'CONNECT') AS ok`, [d]);
            assert.equal(pub.rows[0].ok, false);
            // The operator's comment on the database set aside is kept inside our note.
            const aside = await admin.query<{ note: string }>("SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [r.setAside]);
            assert.equal(JSON.parse(aside.rows[0].note).comment, "changed");
        });
    }
});

describe("reproductions of issue 10", () => {
    it("kong_production_eu and kong_production_us: names never collide, and US never gets EU's snapshot", async () => {
        const role = `kp_${process.pid}`;
        const eu = await kongDb("kong_production_eu", { role });
        const us = await kongDb("kong_production_us", { role });
        assert.notEqual(snapshotPrefix("prod", "kong_production_eu", "3.4.3", "3.7.1"), snapshotPrefix("prod", "kong_production_us", "3.4.3", "3.7.1"));
        const long = "kong_production_europe_west_primary_cluster_0001";
        const a = snapshotPrefix("prod", long, "3.10.0.1", "3.14.0.0");
        assert.ok(Buffer.byteLength(`${a}20261127130745`) <= 63);
        assert.notEqual(a, snapshotPrefix("prod", `${long}2`, "3.10.0.1", "3.14.0.0"));

        const euSnap = ok(await runStep(snapSpec(eu.db, "prod"), eu));
        const usSnap = ok(await runStep(snapSpec(us.db, "prod"), us));
        const usRows = await fingerprint(us.db, us.password);
        await withClient(us.db, us.password, (c) => c.query("DELETE FROM keyauth_credentials"));
        // EU's record handed to US's rollback (e.g. a copied state), and EU's snapshot named for US: refused.
        refused(await runStep(restoreSpec(us.db, "prod"), { ...us, expect: JSON.stringify(euSnap) }), /was taken of database kong_production_eu; refusing/);
        refused(await runStep(restoreSpec(us.db, "prod", "rename", undefined, String(euSnap.snapshot)), us), /was taken of database kong_production_eu/);
        const r = ok(await runStep(restoreSpec(us.db, "prod"), { ...us, expect: JSON.stringify(usSnap) }));
        assert.equal(r.snapshot, usSnap.snapshot);
        assert.deepEqual(await fingerprint(us.db, us.password), usRows);
    });

    it("two stacks with one dump folder: dumps namespaced, prod restores prod's dump even when dev's is newer", async () => {
        const t = await kongDb();
        const dir = mkdtempSync(path.join(os.tmpdir(), "shared-dumps-"));
        const dump = dumpTarget(t.db, dir);
        const prodSnap = ok(await runStep(snapSpec(t.db, "prod", "dump", dump), { ...t, env: LOCAL }));
        const prodRows = await fingerprint(t.db, t.password);
        await withClient(t.db, t.password, (c) => c.query("DELETE FROM acls"));
        const devSnap = ok(await runStep(snapSpec(t.db, "dev", "dump", dump), { ...t, env: LOCAL }));
        assert.notEqual(path.dirname(String(prodSnap.location)), path.dirname(String(devSnap.location)));
        assert.equal(path.dirname(String(prodSnap.location)), dumpFolder(dir, "prod", t.db.database));
        // Records at rest: folder 0700, dump and record 0600.
        const folder = path.dirname(String(prodSnap.location));
        assert.equal(statSync(folder).mode & 0o777, 0o700);
        for (const f of readdirSync(folder)) assert.equal(statSync(path.join(folder, f)).mode & 0o777, 0o600, f);
        // dev's snapshot named in prod's rollback: not prod's, refused.
        refused(await runStep(restoreSpec(t.db, "prod", "rename", dump, String(devSnap.snapshot)), { ...t, env: LOCAL }), /does not exist/);
        const r = ok(await runStep(restoreSpec(t.db, "prod", "rename", dump), { ...t, env: LOCAL, expect: JSON.stringify(prodSnap) }));
        assert.equal(r.snapshot, prodSnap.snapshot);
        assert.deepEqual(await fingerprint(t.db, t.password), prodRows);
    });

    it("a re-run of the snapshot step on a half-migrated database is refused, naming what it found", async () => {
        const t = await server.kongDatabase("halfmigrated");
        ok(await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") }, t));
        const spec = { ...snapSpec(t.db, "hm"), firstHop: kongRun(t.db, "3.5.0") } as StepSpec;
        ok(await runStep(spec, t));
        ok(await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0") }, t));
        // Kong 3.7.1's catalog gives 3.4 → 3.5 no teardown, so after `up` nothing is pending: the
        // first hop's list finds nothing new, and the step names the schema_meta it found.
        refused(await runStep(spec, t), /is not at Kong 3\.4\.3: (migrations are pending|kong migrations list with kong:3\.5\.0 finds nothing new).*core last executed 021_340_to_350.*name the upgrade's snapshot with upgrade\.snapshot/);
        ok(await runStep({ step: "migrations", phase: "finish", db: t.db, kong: kongRun(t.db, "3.5.0") }, t));
        refused(await runStep(spec, t), /hop 3\.5\.0 has already migrated it \(schema_meta: .*core last executed 021_340_to_350/);
        const snaps = await admin.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", [snapshotPrefix("hm", t.db.database, "3.4.3", "3.7.1")]);
        assert.equal(snaps.rowCount, 1, "only the snapshot taken at X exists");
    });

    it("unusedName: a taken name waits for the next second, never returns a taken one, and gives up after 3 s", async () => {
        const first = `p_${stamp()}`;
        const asked: string[] = [];
        // The first two names asked for are taken, whatever second they fall in.
        const name = await unusedName("p_", async (n) => asked.push(n) <= 2);
        assert.ok(!asked.slice(0, 2).includes(name), `${name} was taken`);
        assert.ok(name > first, `${name} is later than ${first}`);
        assert.equal(new Set(asked).size, asked.length, `each try is a new second: ${asked.join(", ")}`);
        await assert.rejects(unusedName("p_", async () => true), /tried in the last 3 s exists already; none is ever overwritten/);
    });

    it("a rerun within the second of a killed snapshot never takes or overwrites what it left: a new name, the leftover named", async () => {
        const t = await kongDb();
        const prefix = snapshotPrefix("rerun", t.db.database, "3.4.3", "3.7.1");
        // What a run killed between CREATE DATABASE and its record leaves, for this second and the next.
        const now = Date.now();
        const held = [stamp(new Date(now)), stamp(new Date(now + 1000))].map((s) => `${prefix}${s}`);
        for (const h of held) await admin.query(`CREATE DATABASE "${h}" TEMPLATE "${t.db.database}"`);
        const run = await runStep(snapSpec(t.db, "rerun"), t);
        const r = ok(run);
        assert.ok(!held.includes(String(r.snapshot)), `a new name, not ${r.snapshot}`);
        assert.ok(String(r.snapshot).startsWith(prefix));
        for (const h of held) {
            assert.match(run.stderr, new RegExp(`database ${h} was left by an interrupted snapshot`));
            const left = await admin.query("SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [h]);
            assert.equal(left.rowCount, 1, `${h} is kept`);
            assert.equal(left.rows[0].note, null, `${h} is left as it was`);
        }
    });

    it("a dump and its JSON swapped together are refused through the checksum kept in state", async () => {
        const t = await kongDb();
        const dir = mkdtempSync(path.join(os.tmpdir(), "swap-"));
        const dump = dumpTarget(t.db, dir);
        const mine = ok(await runStep(snapSpec(t.db, "sw", "dump", dump), { ...t, env: LOCAL }));
        await withClient(t.db, t.password, (c) => c.query("DELETE FROM keyauth_credentials"));
        await new Promise((r) => setTimeout(r, 1100));
        const other = ok(await runStep(snapSpec(t.db, "sw", "dump", dump), { ...t, env: LOCAL }));
        // Someone puts the other dump in place of mine and "fixes" my record's checksum.
        copyFileSync(String(other.location), String(mine.location));
        const recFile = String(mine.location).replace(/\.dump$/, ".json");
        const rec = JSON.parse(readFileSync(recFile, "utf8")) as Record<string, unknown>;
        writeFileSync(recFile, JSON.stringify({ ...rec, sha256: other.sha256 }));
        refused(await runStep(restoreSpec(t.db, "sw", "rename", dump), { ...t, env: LOCAL, expect: JSON.stringify(mine) }),
            /has checksum [0-9a-f]{64}, not [0-9a-f]{64} as the snapshot recorded \(in state\): refusing/);
    });

    it("a truncated JSON record is skipped with a warning naming it; the named snapshot is still restored", async () => {
        const t = await kongDb();
        const dir = mkdtempSync(path.join(os.tmpdir(), "trunc-"));
        const dump = dumpTarget(t.db, dir);
        const first = ok(await runStep(snapSpec(t.db, "tr", "dump", dump), { ...t, env: LOCAL }));
        const rows = await fingerprint(t.db, t.password);
        await new Promise((r) => setTimeout(r, 1100));
        const second = ok(await runStep(snapSpec(t.db, "tr", "dump", dump), { ...t, env: LOCAL }));
        const broken = String(second.location).replace(/\.dump$/, ".json");
        writeFileSync(broken, readFileSync(broken, "utf8").slice(0, 40));
        await withClient(t.db, t.password, (c) => c.query("DELETE FROM acls"));
        const r = await runStep(restoreSpec(t.db, "tr", "rename", dump, String(first.snapshot)), { ...t, env: LOCAL });
        ok(r);
        assert.match(r.stderr, new RegExp(`warning: snapshot record ${broken.replace(/[.]/g, "\\.")} cannot be read .*skipped`));
        assert.deepEqual(await fingerprint(t.db, t.password), rows);
    });

    it("another role's session is seen and named, and terminateSessions ends it", async () => {
        const t = await kongDb();
        const snap = ok(await runStep(snapSpec(t.db, "ss"), t));
        const other = await server.admin(); // a superuser's session on Kong's database
        await other.query(`SELECT 1`);
        const s = new Client({ host: "127.0.0.1", port: server.port, user: "postgres", password: `super-${process.pid}`, database: t.db.database });
        await s.connect();
        s.on("error", () => undefined);
        try {
            refused(await runStep(restoreSpec(t.db, "ss"), { ...t, expect: JSON.stringify(snap) }), /1 session\(s\) are still connected to .*pid \d+ postgres.*Nothing was changed/);
            refused(await runStep(snapSpec(t.db, "ss"), t), /1 session\(s\) are connected to .*pid \d+ postgres/);
            // Ending a superuser's session is beyond Kong's role: refused naming it, never a stack trace.
            refused(await runStep({ ...snapSpec(t.db, "ss"), terminateSessions: true } as StepSpec, t), /could not be ended .*pg_signal_backend/);
        } finally {
            await s.end().catch(() => undefined);
            await other.end();
        }
        // A session of another ordinary role, with pg_signal_backend granted to Kong's role: ended.
        const peer = `peer_${process.pid}`;
        await admin.query(`CREATE ROLE "${peer}" LOGIN PASSWORD 'peer'; GRANT CONNECT ON DATABASE "${t.db.database}" TO "${peer}"; GRANT pg_signal_backend TO "${t.db.user}"`);
        const p = new Client({ host: "127.0.0.1", port: server.port, user: peer, password: "peer", database: t.db.database });
        await p.connect();
        p.on("error", () => undefined);
        ok(await runStep({ ...snapSpec(t.db, "ss"), terminateSessions: true } as StepSpec, t));
        await assert.rejects(p.query("SELECT 1"));
    });

    it("two restores at once: one restores, the other waits and finds it done; never a stack trace", async () => {
        const t = await kongDb();
        const snap = ok(await runStep(snapSpec(t.db, "cc"), t));
        const rows = await fingerprint(t.db, t.password);
        await withClient(t.db, t.password, (c) => c.query("DELETE FROM routes"));
        const [a, b] = await Promise.all([0, 1].map(() => runStep(restoreSpec(t.db, "cc", "copy"), { ...t, expect: JSON.stringify(snap) })));
        ok(a);
        ok(b);
        assert.equal([a, b].filter((r) => r.result!.alreadyRestored === true).length, 1);
        const aside = await admin.query("SELECT datname FROM pg_database WHERE datname LIKE $1", [`${t.db.database}_failed_%`]);
        assert.equal(aside.rowCount, 1);
        assert.deepEqual(await fingerprint(t.db, t.password), rows);
    });

    it("a database left frozen by an interrupted online snapshot is unfrozen by the rollback's preflight first", async () => {
        const t = await kongDb();
        const snap = ok(await runStep(snapSpec(t.db, "fz"), t));
        // What a kill mid-way through an online snapshot leaves behind.
        await admin.query(`ALTER DATABASE "${t.db.database}" SET default_transaction_read_only = on`);
        await admin.query(`ALTER DATABASE "${t.db.database}" WITH ALLOW_CONNECTIONS false`);
        const pf = ok(await runStep({ step: "preflight", mode: "rollback", db: t.db, cluster: { stack: "fz", version: "3.7.1", nodes: [] }, from: "3.4.3",
            snapshotPrefix: snapshotPrefix("fz", t.db.database, "3.4.3", "3.7.1"), stack: "fz" }, { ...t, expect: JSON.stringify(snap) }));
        assert.match(String(pf.snapshot), new RegExp(`snapshot ${String(snap.snapshot)}`));
        const level = await databaseLevel(admin, t.db.database);
        assert.equal(level.datallowconn, true);
        assert.doesNotMatch(JSON.stringify(level.settings), /default_transaction_read_only/);
        await withClient(t.db, t.password, (c) => c.query("INSERT INTO parameters (key, value) VALUES ('writable', 'yes')"));
    });

    it("rows deleted from keyauth_credentials inside a snapshot are caught after restore, naming the table", async () => {
        const t = await kongDb();
        const snap = ok(await runStep(snapSpec(t.db, "kc", "template"), t));
        await admin.query(`ALTER DATABASE "${String(snap.snapshot)}" WITH ALLOW_CONNECTIONS true`);
        const inside = { ...t.db, database: String(snap.snapshot) };
        await withClient(inside, t.password, (c) => c.query("DELETE FROM keyauth_credentials WHERE key LIKE 'key-%1%'"), inside.database);
        await admin.query(`ALTER DATABASE "${String(snap.snapshot)}" WITH ALLOW_CONNECTIONS false`);
        refused(await runStep(restoreSpec(t.db, "kc"), { ...t, expect: JSON.stringify(snap) }), /row counts differ: keyauth_credentials \d+ of \d+/);
        assert.ok(existsSync("/") && (await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [t.db.database])).rowCount === 1);
    });
});
