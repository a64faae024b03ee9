// The canary's clone: pg_dump of the live database streamed straight into pg_restore of a new
// database. pg_dump reads one MVCC snapshot and takes only ACCESS SHARE locks, so X keeps reading
// and writing throughout. (CREATE DATABASE … TEMPLATE would be faster but needs no session on the
// source: it would have to end X's connections and hold them off, which is what the canary avoids.)
// The clone carries a record (COMMENT ON DATABASE) naming the upgrade it belongs to; only a
// database whose record says it is this upgrade's canary is ever dropped.
import { spawn } from "child_process";
import { Client } from "pg";
import { databaseExists, databaseNote, quoteIdent, setDatabaseNote, terminateSessions } from "./db";
import { dockerBinary, dockerEnv } from "./docker";
import { StepError, progress } from "./log";
import { DbTarget, DumpTarget } from "./spec";

/** The record a canary clone carries. */
export interface CanaryNote {
    kind: "kong-upgrade-canary";
    clone: string;
    /** Database it was cloned from. */
    source: string;
    stack: string;
    from: string;
    to: string;
    createdAt: string;
}

export type CopyTarget = Omit<DumpTarget, "directory">;

/** Whether `note` says the database is the canary of exactly this upgrade. */
export function isCanaryOf(note: CanaryNote | undefined, want: Pick<CanaryNote, "clone" | "source" | "stack" | "from" | "to">): boolean {
    return note?.kind === "kong-upgrade-canary" && note.clone === want.clone && note.source === want.source &&
        note.stack === want.stack && note.from === want.from && note.to === want.to;
}

/**
 * Drops `name` if it exists and its record says it is this upgrade's canary; refuses otherwise.
 * Returns whether a database was dropped. The record is read on the same connection that drops.
 */
export async function dropCanaryDatabase(c: Client, name: string, want: Pick<CanaryNote, "source" | "stack" | "from" | "to">): Promise<boolean> {
    if (!(await databaseExists(c, name))) return false;
    const note = await databaseNote<CanaryNote>(c, name);
    if (!isCanaryOf(note, { ...want, clone: name })) {
        throw new StepError(`a database named ${name} exists and its record does not say it is the canary of this upgrade ` +
            `(${want.from} → ${want.to} of ${want.source}, stack ${want.stack}); the program never drops it. ` +
            `Rename or drop it yourself if it is not needed, or set upgrade.canary: false`);
    }
    await terminateSessions(c, name);
    await c.query(`DROP DATABASE ${quoteIdent(name)}`);
    return true;
}

/**
 * Databases, whatever their name, whose record says they are this upgrade's canary (or its
 * snapshot trial): a killed canary's leftovers under an earlier naming scheme are found by their
 * record, not by a name that may have changed since.
 */
export async function canaryDatabasesOf(c: Client, want: Pick<CanaryNote, "source" | "stack" | "from" | "to">): Promise<string[]> {
    const r = await c.query<{ datname: string; note: string }>(
        "SELECT datname, shobj_description(oid, 'pg_database') AS note FROM pg_database " +
        "WHERE shobj_description(oid, 'pg_database') LIKE '%kong-upgrade-canary%' ORDER BY datname");
    return r.rows.filter((row) => {
        try {
            return isCanaryOf(JSON.parse(row.note) as CanaryNote, { ...want, clone: row.datname });
        } catch {
            return false;
        }
    }).map((row) => row.datname);
}

/** Creates the empty clone database with its record. */
export async function createCanaryDatabase(c: Client, note: CanaryNote): Promise<void> {
    if (await databaseExists(c, note.clone)) throw new StepError(`a database named ${note.clone} exists already`);
    try {
        await c.query(`CREATE DATABASE ${quoteIdent(note.clone)}`);
    } catch (e) {
        const msg = (e as Error).message;
        throw new StepError(`cannot create the canary's clone ${note.clone}: ${msg}` + (/permission denied/.test(msg)
            ? `. Kong's role needs CREATEDB for the canary, or set upgrade.canary: false` : ""));
    }
    await setDatabaseNote(c, note.clone, note);
}

/** argv of a PostgreSQL client tool: in a container of the dump image, or local (KONG_UPGRADE_PG_TOOLS=local, tests). */
export function pgToolCommand(copy: CopyTarget, tool: "pg_dump" | "pg_restore", args: string[], labels: Record<string, string>): string[] {
    if (process.env.KONG_UPGRADE_PG_TOOLS === "local") return [tool, ...args];
    // --entrypoint: the tool itself, whatever the image's entrypoint does with other commands.
    return [dockerBinary(), "run", "--rm", "-i", "--network", copy.network, ...Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
        "-e", "PGPASSWORD", "--entrypoint", tool, copy.image, ...args];
}

/** Connection flags as the tool sees the server. */
export function toolConnArgs(copy: CopyTarget, db: DbTarget, database: string): string[] {
    const local = process.env.KONG_UPGRADE_PG_TOOLS === "local";
    return ["-h", local ? db.host : copy.host, "-p", String(local ? db.port : copy.port), "-U", db.user, "-d", database];
}

interface Piped { code: number; stderr: string }

function run(argv: string[], env: Record<string, string>): { child: ReturnType<typeof spawn>; done: Promise<Piped> } {
    const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => { stderr += d.toString(); });
    const done = new Promise<Piped>((resolve) => {
        child.on("error", (e) => resolve({ code: 127, stderr: `${stderr}${e.message}` }));
        child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stderr }));
    });
    return { child, done };
}

/** pg_dump -Fc of `db` streamed into pg_restore of `clone`. Returns the bytes that went through. */
export async function streamClone(copy: CopyTarget, db: DbTarget, clone: string, password: string, labels: Record<string, string>): Promise<number> {
    const env = { PGPASSWORD: password, ...dockerEnv(copy.docker) };
    // -Z0: the stream never touches a disk, so compressing it only costs CPU (bench/bench.ts).
    const dump = run(pgToolCommand(copy, "pg_dump", ["-Fc", "-Z0", ...toolConnArgs(copy, db, db.database)], labels), env);
    const restore = run(pgToolCommand(copy, "pg_restore",
        ["--no-owner", "--no-privileges", "--exit-on-error", ...toolConnArgs(copy, db, clone)], labels), env);
    let bytes = 0;
    dump.child.stdout!.on("data", (d: Buffer) => { bytes += d.length; });
    dump.child.stdout!.pipe(restore.child.stdin!);
    restore.child.stdin!.on("error", () => undefined); // pg_restore gave up: its own exit code says why
    restore.child.stdout!.resume();
    const [d, r] = await Promise.all([dump.done, restore.done]);
    if (d.code !== 0 && r.code === 0) throw new StepError(`pg_dump of ${db.database} failed (exit ${d.code}):\n${d.stderr.trim()}`);
    if (r.code !== 0) {
        throw new StepError(`pg_restore into the clone ${clone} failed (exit ${r.code}):\n${r.stderr.trim()}` +
            (d.code !== 0 ? `\npg_dump (exit ${d.code}):\n${d.stderr.trim()}` : ""));
    }
    progress(`cloned ${db.database} into ${clone}: ${(bytes / 1e6).toFixed(1)} MB streamed`);
    return bytes;
}

/** pg_dump -Fc of `database` read to the end and discarded: what a `dump` snapshot of that size costs. */
export async function timedDump(copy: CopyTarget, db: DbTarget, database: string, password: string, labels: Record<string, string>): Promise<number> {
    const dump = run(pgToolCommand(copy, "pg_dump", ["-Fc", ...toolConnArgs(copy, db, database)], labels), { PGPASSWORD: password, ...dockerEnv(copy.docker) });
    let bytes = 0;
    dump.child.stdout!.on("data", (d: Buffer) => { bytes += d.length; });
    const d = await dump.done;
    if (d.code !== 0) throw new StepError(`pg_dump of ${database} failed (exit ${d.code}):\n${d.stderr.trim()}`);
    return bytes;
}
