// Crash test: the snapshot (template, online, dump) and restore (rename, copy, dump) step programs
// are SIGKILLed right after each SQL statement they send and between their file operations
// (KONG_UPGRADE_CRASH_AFTER, steps/lib/crash.ts), then run again as Pulumi would. Every case
// asserts: exactly one live database, holding the right rows and database-level properties,
// nothing lost (the database replaced is kept aside), the snapshot intact, no freeze left.
import { strict as assert } from "assert";
import { spawn } from "child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync } from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { stepArgv } from "../components/step";
import { parseStepResult } from "../steps/lib/log";
import { DbTarget, DumpTarget, EXPECT_ENV, SECRET_ENV, SPEC_ENV, StepSpec } from "../steps/lib/spec";
import { dumpFolder, sha256File, snapshotPrefix } from "../steps/lib/snapshots";
import { TestServer, startPostgres } from "./helpers/postgres";
import { ROOT } from "./helpers/steps";
import { databaseLevel, fingerprint, withClient } from "./helpers/kong-fixture";

let server: TestServer;
let admin: Client;
const ROLE = `crash_${process.pid}`;
const PASSWORD = "crash-pw";
const TEMPLATE = `crash_tpl_${process.pid}`;

before(async () => {
    server = await startPostgres();
    admin = await server.admin();
    await admin.query(`CREATE ROLE "${ROLE}" LOGIN CREATEDB PASSWORD '${PASSWORD}'`);
    await admin.query(`CREATE DATABASE "${TEMPLATE}" OWNER "${ROLE}"`);
    // A small Kong-shaped database: the kill points are the statements, not the table count.
    await withClient(target(TEMPLATE), PASSWORD, (c) => c.query(`
        CREATE TABLE schema_meta (key text, subsystem text, last_executed text, executed text[], pending text[], PRIMARY KEY (key, subsystem));
        INSERT INTO schema_meta VALUES ('schema_meta', 'core', '020_330_to_340', ARRAY['000_base', '020_330_to_340'], '{}');
        CREATE TABLE consumers (id uuid PRIMARY KEY, username text UNIQUE);
        CREATE TABLE keyauth_credentials (id uuid PRIMARY KEY, consumer_id uuid REFERENCES consumers (id) ON DELETE CASCADE, key text);
        INSERT INTO consumers SELECT gen_random_uuid(), 'user-' || i FROM generate_series(1, 50) i;
        INSERT INTO keyauth_credentials SELECT gen_random_uuid(), id, 'key-' || username FROM consumers;`));
});
after(async () => { await admin?.end(); await server?.stop(); });

function target(database: string): DbTarget {
    return { host: "127.0.0.1", port: server.port, database, user: ROLE, sslmode: "disable" };
}

interface Run { code: number | null; signal: string | null; stderr: string; result?: Record<string, unknown> }

function run(spec: StepSpec, env: Record<string, string>): Promise<Run> {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, stepArgv(spec.step).slice(1), {
            cwd: ROOT, stdio: ["ignore", "pipe", "pipe"],
            env: { ...process.env, [SPEC_ENV]: JSON.stringify(spec), [SECRET_ENV.password]: PASSWORD, KONG_UPGRADE_PG_TOOLS: "local", ...env },
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
        child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
        child.on("error", reject);
        child.on("close", (code, signal) => resolve({ code, signal, stderr, result: parseStepResult(stdout) }));
    });
}

function ok(r: Run): Record<string, unknown> {
    assert.equal(r.code, 0, `step failed (exit ${r.code}, ${r.signal}):\n${r.stderr}`);
    return r.result!;
}

let n = 0;
async function freshDatabase(): Promise<DbTarget> {
    const name = `kc_${process.pid}_${++n}`;
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${TEMPLATE}" OWNER "${ROLE}"`);
    // The operator's database-level properties, which must survive every crash and restore.
    await admin.query(`COMMENT ON DATABASE "${name}" IS 'operator comment'; ALTER DATABASE "${name}" SET statement_timeout = '40s';` +
        `ALTER DATABASE "${name}" CONNECTION LIMIT 90`);
    return target(name);
}

type Kind = "snapshot-template" | "snapshot-online" | "snapshot-dump" | "restore-rename" | "restore-copy" | "restore-dump";
const ALL: Kind[] = ["snapshot-template", "snapshot-online", "snapshot-dump", "restore-rename", "restore-copy", "restore-dump"];
/** CRASH_KINDS=restore-copy,restore-dump runs those alone (while working on one step); npm test runs all. */
const KINDS: Kind[] = process.env.CRASH_KINDS ? ALL.filter((k) => process.env.CRASH_KINDS!.split(",").includes(k)) : ALL;
const STACK = "crash";

function snapshotSpec(db: DbTarget, strategy: "template" | "dump", dump?: DumpTarget, online = false): StepSpec {
    return {
        step: "snapshot", db, strategy, prefix: snapshotPrefix(STACK, db.database, "3.4.3", "3.5.0"), from: "3.4.3", to: "3.5.0",
        terminateSessions: false, stack: STACK, hops: ["3.5.0"], dump, online: online || undefined,
    };
}

interface Case { spec: StepSpec; db: DbTarget; expect?: string; check: (r: Record<string, unknown>, stderr: string) => Promise<void> }

async function databases(like: string): Promise<string[]> {
    return (await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", [like])).rows.map((r) => r.datname);
}

async function notFrozen(db: DbTarget): Promise<void> {
    const level = await databaseLevel(admin, db.database);
    assert.equal(level.datallowconn, true, "connections allowed");
    assert.doesNotMatch(JSON.stringify(level.settings), /default_transaction_read_only/, "no read-only freeze left");
}

/** What the stop step does after an online snapshot (steps/cluster.ts: liftReadOnly). */
async function withServerLift(db: DbTarget): Promise<void> {
    await admin.query(`ALTER DATABASE "${db.database}" RESET default_transaction_read_only`);
}

/** Prepares one case of `kind`: the database, the spec to kill, and what must hold after the rerun. */
async function prepare(kind: Kind): Promise<Case> {
    const db = await freshDatabase();
    const dir = mkdtempSync(path.join(os.tmpdir(), "crash-dumps-"));
    const dump: DumpTarget = { image: "postgres:15", network: "unused", directory: dir, host: db.host, port: db.port };
    const rows = await fingerprint(db, PASSWORD);
    const level = await databaseLevel(admin, db.database);
    if (kind.startsWith("snapshot")) {
        const spec = snapshotSpec(db, kind === "snapshot-dump" ? "dump" : "template", kind === "snapshot-dump" ? dump : undefined, kind === "snapshot-online");
        return {
            spec, db,
            check: async (record, stderr) => {
                assert.deepEqual(await fingerprint(db, PASSWORD), rows);
                // What the killed run left is kept, never taken for the snapshot, and named to the operator.
                const prefix = snapshotPrefix(STACK, db.database, "3.4.3", "3.5.0");
                const left = kind === "snapshot-dump"
                    ? readdirSync(dumpFolder(dir, STACK, db.database)).filter((f) => f.endsWith(".dump") || f.endsWith(".dump.partial"))
                        .filter((f) => f !== `${String(record.snapshot)}.dump`)
                    : (await databases(`${prefix.replace(/_/g, "\\_")}%`)).filter((d) => d !== record.snapshot);
                for (const l of left) assert.ok(stderr.includes(l), `${l}, left by the killed run, is named`);
                if (kind === "snapshot-online") {
                    // A completed online snapshot leaves only the read-only freeze, which stopping X lifts.
                    const frozen = await databaseLevel(admin, db.database);
                    assert.equal(frozen.datallowconn, true, "connections allowed again after the copy");
                    assert.match(JSON.stringify(frozen.settings), /default_transaction_read_only=on/);
                    await withServerLift(db);
                }
                await notFrozen(db);
                assert.deepEqual(await databaseLevel(admin, db.database), level);
                assert.deepEqual(record.entityCounts, { consumers: 50, keyauth_credentials: 50, schema_meta: 1 });
                if (kind === "snapshot-dump") {
                    assert.equal(await sha256File(String(record.location)), record.sha256, "the dump in state is the file on disk");
                } else {
                    const note = await admin.query<{ note: string }>("SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [record.snapshot]);
                    assert.equal(JSON.parse(note.rows[0].note).upgradeId, record.upgradeId, "the snapshot in state exists with its record");
                }
            },
        };
    }
    const strategy = kind === "restore-dump" ? "dump" : "template";
    const record = ok(await run(snapshotSpec(db, strategy, strategy === "dump" ? dump : undefined), {}));
    // The upgrade went wrong: rows lost, the comment changed.
    await withClient(db, PASSWORD, (c) => c.query(`DELETE FROM keyauth_credentials WHERE key LIKE 'key-user-1%'; INSERT INTO consumers VALUES (gen_random_uuid(), 'written-after');` +
        `COMMENT ON DATABASE "${db.database}" IS 'changed'`));
    const damaged = await fingerprint(db, PASSWORD);
    const spec: StepSpec = {
        step: "restore", db, strategy: kind === "restore-copy" ? "copy" : "rename", prefix: snapshotPrefix(STACK, db.database, "3.4.3", "3.5.0"), stack: STACK,
        dump: strategy === "dump" ? dump : undefined,
    };
    return {
        spec, db, expect: JSON.stringify(record),
        check: async () => {
            assert.deepEqual(await databases(db.database), [db.database], "exactly one live database");
            assert.deepEqual(await fingerprint(db, PASSWORD), rows, "the snapshot's rows are live");
            assert.deepEqual(await databaseLevel(admin, db.database), level, "the operator's database-level properties are back");
            const aside = await databases(`${db.database}_failed_%`);
            assert.equal(aside.length, 1, "exactly one database set aside");
            assert.deepEqual(await fingerprint(db, PASSWORD, aside[0]), damaged, "nothing written after the snapshot is lost");
            assert.deepEqual(await databases(`${db.database}\\_%\\_rest\\_%`), [], "no half-filled database left");
            if (kind === "restore-copy") assert.deepEqual(await databases(String(record.snapshot)), [record.snapshot], "the snapshot stays");
            if (kind === "restore-dump") {
                const file = path.join(dumpFolder(dir, STACK, db.database), `${String(record.snapshot)}.dump`);
                assert.equal(await sha256File(file), record.sha256, "the dump is intact");
            }
        },
    };
}

/** How many kill points a full run of `kind` passes. */
async function killPoints(kind: Kind): Promise<number> {
    const c = await prepare(kind);
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "crash-count-")), "n");
    ok(await run(c.spec, { KONG_UPGRADE_CRASH_COUNT: file, ...(c.expect ? { [EXPECT_ENV]: c.expect } : {}) }));
    return Number(readFileSync(file, "utf8"));
}

async function killAndRerun(kind: Kind, point: number): Promise<void> {
    const c = await prepare(kind);
    const env: Record<string, string> = c.expect ? { [EXPECT_ENV]: c.expect } : {};
    const killed = await run(c.spec, { ...env, KONG_UPGRADE_CRASH_AFTER: String(point) });
    assert.equal(killed.signal, "SIGKILL", `${kind} was to be killed at point ${point}:\n${killed.stderr}`);
    if (kind.startsWith("restore")) {
        assert.deepEqual(await databases(c.db.database), [c.db.database], `${kind} killed at ${point}: the live name exists`);
    }
    const rerun = await run(c.spec, env);
    try {
        await c.check(ok(rerun), rerun.stderr);
    } catch (e) {
        (e as Error).message = `${kind} killed at point ${point}: ${(e as Error).message}\nrerun:\n${rerun.stderr}`;
        throw e;
    }
}

async function pool<T>(jobs: Array<() => Promise<T>>, width: number): Promise<T[]> {
    const out: T[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: width }, async () => {
        while (next < jobs.length) {
            const i = next++;
            out[i] = await jobs[i]();
        }
    }));
    return out;
}

describe("crash test", () => {
    it("kill after every statement and file operation, then rerun: one live database, right content, nothing lost", async () => {
        const started = Date.now();
        const points = Object.fromEntries(await Promise.all(KINDS.map(async (k) => [k, await killPoints(k)] as const))) as Record<Kind, number>;
        process.stdout.write(`# kill points: ${JSON.stringify(points)}\n`);
        const jobs = KINDS.flatMap((k) => Array.from({ length: points[k] }, (_, i) => () => killAndRerun(k, i + 1)));
        await pool(jobs, 4);
        const total = Object.values(points).reduce((a, b) => a + b, 0);
        const figure = `crash test: ${total} kill points × rerun over ${KINDS.length} step programs (${KINDS.map((k) => `${k} ${points[k]}`).join(", ")}), data lost 0`;
        process.stdout.write(`# ${figure} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
        assert.ok(total > KINDS.length * 5);
        assert.ok(existsSync(ROOT));
    });
});
