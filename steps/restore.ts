// restore: puts a snapshot's content in place of Kong's database, whole: rows, schema, and what
// the database carries outside itself (settings, role-in-database settings, ACL, comment,
// connection limit, owner), as recorded at snapshot time.
//
// Which snapshot: the one this upgrade recorded (its record comes from Pulumi state, through
// KONG_UPGRADE_EXPECT), or the one `upgrade.snapshot` names. Either is refused when recorded for
// another stack, server or database; a dump also when its file's SHA-256 differs from the one in
// state. It never picks "the newest by prefix".
//
// Crash safety. The only change to the live name is one transaction: rename the live database
// aside, rename the incoming one into place, re-apply the properties, write our note on the
// set-aside database. So at every instant exactly one database has the live name, and either the
// swap happened entirely or not at all. Invariants a rerun relies on:
//   - a set-aside database whose note says it was replaced by this snapshot (same upgrade id)
//     means the restore is done: only the checks run again;
//   - otherwise the live database is untouched; a leftover incoming database (`<…>_rest_<…>`, a
//     name only this step creates, filled from the snapshot or the dump) is dropped and refilled;
//   - the snapshot itself is only ever renamed (rename strategy) inside the swap, never changed.
// A second run beside this one waits on an advisory lock (stack, database), then refuses.
import { Client } from "pg";
import { existsSync } from "fs";
import * as path from "path";
import {
    applyDatabaseProps, countDifferences, createOptions, databaseExists, describeSessions, entityCounts, freeDatabaseName, isFrozen,
    liftReadOnly, lockStack, quoteIdent, quoteLiteral, readSchemaMeta, serverIdentity, sessionsOn, withDatabase, withServer,
} from "./lib/db";
import { StepError, parseStepResult, progress, stamp } from "./lib/log";
import { pgConnArgs, pgToolArgv, runPgTool } from "./lib/pgtools";
import { SetAsideNote, SnapshotRecord, dumpFolder, dumpRecords, incomingName, sha256File } from "./lib/snapshots";
import { DbTarget, EXPECT_ENV, StepSpec } from "./lib/spec";
import { databasePassword } from "./lib/secrets";

type Restore = Extract<StepSpec, { step: "restore" }>;

export interface RestoreResult {
    snapshot: string;
    strategy: string;
    restoredAs: string;
    setAside?: string;
    alreadyRestored?: boolean;
    upgradeId: string;
    entityCounts: Record<string, number>;
    sizeBytes: number;
    takenAt: string;
    from: string;
    to: string;
    /** Database-level statements the role was not allowed to re-apply; the operator runs them. */
    notReapplied?: string[];
    /** Seconds spent changing the database (fill the incoming database if any, then the swap). */
    databaseSeconds: number;
}

/** Which snapshot a rollback may use, and whose. */
export interface SnapshotQuery {
    stack: string;
    db: DbTarget;
    /** `upgrade.snapshot`, when named. */
    snapshot?: string;
    dumpDirectory?: string;
}

/** The snapshot record Pulumi state holds (the snapshot step's stdout), if the program passed one. */
export function stateRecord(raw = process.env[EXPECT_ENV]): SnapshotRecord | undefined {
    if (!raw) return undefined;
    const r = parseStepResult<SnapshotRecord>(raw);
    return r?.kind === "kong-upgrade-snapshot" ? r : undefined;
}

/** Set-aside databases and the notes a restore left on them. */
async function setAsideNotes(c: Client): Promise<Array<{ name: string; note: SetAsideNote }>> {
    const r = await c.query<{ datname: string; note: string }>(
        `SELECT datname, shobj_description(oid, 'pg_database') AS note FROM pg_database
          WHERE shobj_description(oid, 'pg_database') LIKE '{"kind":"kong-upgrade-set-aside"%' ORDER BY datname`);
    const out: Array<{ name: string; note: SetAsideNote }> = [];
    for (const row of r.rows) {
        try {
            out.push({ name: row.datname, note: JSON.parse(row.note) as SetAsideNote });
        } catch {
            progress(`warning: the note on ${row.datname} cannot be read; skipped`);
        }
    }
    return out;
}

/** The set-aside database that says `record` was restored in place of the live database, if any. */
export async function restoredBy(c: Client, record: SnapshotRecord, live: string): Promise<{ name: string; note: SetAsideNote } | undefined> {
    if (!(await databaseExists(c, live))) return undefined;
    return (await setAsideNotes(c)).find((s) => s.note.replacedBy === record.snapshot && s.note.upgradeId === record.upgradeId && s.note.was === live);
}

/** A template snapshot's record, kept as its comment; undefined when it has none or none readable. */
async function templateRecord(c: Client, name: string): Promise<SnapshotRecord | undefined> {
    const r = await c.query<{ note: string | null }>("SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [name]);
    const note = r.rows[0]?.note;
    if (!note) return undefined;
    try {
        const rec = JSON.parse(note) as SnapshotRecord;
        return rec.kind === "kong-upgrade-snapshot" ? rec : undefined;
    } catch {
        progress(`warning: the record of ${name} cannot be read; skipped`);
        return undefined;
    }
}

/**
 * The record of the snapshot a rollback restores: the one named, else the one in state. Refused
 * when it was taken of another stack, server or database.
 */
export async function chooseSnapshot(c: Client, q: SnapshotQuery, fromState = stateRecord()): Promise<SnapshotRecord> {
    let record: SnapshotRecord | undefined;
    if (q.snapshot && fromState?.snapshot !== q.snapshot) {
        record = (await templateRecord(c, q.snapshot)) ??
            (q.dumpDirectory ? dumpRecords(dumpFolder(q.dumpDirectory, q.stack, q.db.database)).find((r) => r.snapshot === q.snapshot) : undefined);
        if (!record) {
            const done = (await setAsideNotes(c)).find((s) => s.note.replacedBy === q.snapshot && s.note.was === q.db.database);
            record = done?.note.snapshot;
        }
        if (!record) throw new StepError(`snapshot ${q.snapshot} does not exist (as a database, or as a dump of this stack's ${q.db.database}): check upgrade.snapshot`);
    } else {
        record = fromState;
        if (!record) {
            throw new StepError(`no snapshot of this upgrade is recorded in the stack's state (the snapshot step's resource is gone, ` +
                `e.g. after promotion): name the one to restore with upgrade.snapshot (the snapshot.name stack output of the upgrade)`);
        }
    }
    const theirs = (what: string) => new StepError(`snapshot ${record!.snapshot} was taken of ${what}; refusing to restore it into ` +
        `${q.db.database} of stack ${q.stack}. Name this stack's own snapshot with upgrade.snapshot`);
    if (record.stack !== q.stack) throw theirs(`stack ${record.stack}`);
    if (record.source !== q.db.database) throw theirs(`database ${record.source}`);
    const server = await serverIdentity(c);
    if (record.systemIdentifier && server.systemIdentifier && record.systemIdentifier !== server.systemIdentifier) {
        throw theirs(`another server (system_identifier ${record.systemIdentifier}, this one is ${server.systemIdentifier})`);
    }
    if (!record.systemIdentifier || !server.systemIdentifier) progress(`the server's identity is not checked: ${record.serverNote ?? server.note ?? "unknown"}`);
    return record;
}

/** Where the snapshot is now, and whether it can still be restored. Throws with the reason when not. */
export async function checkSnapshotPresent(c: Client, record: SnapshotRecord, q: SnapshotQuery): Promise<string> {
    if (record.strategy === "dump") {
        if (!q.dumpDirectory) throw new StepError(`snapshot ${record.snapshot} is a dump, but upgrade.snapshotStrategy is not dump (no dump folder configured)`);
        const file = path.join(dumpFolder(q.dumpDirectory, q.stack, q.db.database), `${record.snapshot}.dump`);
        if (!existsSync(file)) throw new StepError(`dump file ${file} is missing`);
        const sum = await sha256File(file);
        if (sum !== record.sha256) {
            throw new StepError(`dump file ${file} has checksum ${sum}, not ${record.sha256} as the snapshot recorded (in state): refusing to restore it`);
        }
        return file;
    }
    const atRest = await templateRecord(c, record.snapshot);
    if (!atRest) {
        if (await databaseExists(c, record.snapshot)) throw new StepError(`database ${record.snapshot} carries no snapshot record: refusing to restore it`);
        throw new StepError(`snapshot database ${record.snapshot} does not exist`);
    }
    if (atRest.upgradeId !== record.upgradeId) {
        throw new StepError(`database ${record.snapshot} holds the record of upgrade ${atRest.upgradeId}, not ${record.upgradeId}: refusing to restore it`);
    }
    return record.snapshot;
}

export async function restore(spec: Restore): Promise<RestoreResult> {
    const pw = databasePassword();
    const live = spec.db.database;
    const q: SnapshotQuery = { stack: spec.stack, db: spec.db, snapshot: spec.snapshot, dumpDirectory: spec.dump?.directory };
    const outcome = await withServer(spec.db, pw, async (c) => {
        await lockStack(c, spec.stack, live);
        const record = await chooseSnapshot(c, q);
        const done = await restoredBy(c, record, live);
        if (done) {
            progress(`${live} is already ${record.snapshot} restored (${done.name} set aside at ${done.note.at}); nothing to do`);
            return { record, setAside: done.name, already: true, databaseSeconds: 0, notReapplied: [] as string[] };
        }
        await checkSnapshotPresent(c, record, q);
        if (await isFrozen(c, live)) await liftReadOnly(c, live);
        const sessions = await sessionsOn(c, live);
        if (sessions.length > 0) {
            throw new StepError(`${sessions.length} session(s) are still connected to ${live} (${describeSessions(sessions)}); ` +
                `stop every Kong node and client of it, then run pulumi up again. Nothing was changed`);
        }
        const started = process.hrtime.bigint();
        let incoming = record.snapshot;
        if (record.strategy === "dump") incoming = await fillFromDump(c, spec, record);
        else if (spec.strategy === "copy") incoming = await fillFromTemplate(c, record);

        const setAside = await freeDatabaseName(c, live, `_failed_${stamp()}`);
        const liveComment = (await c.query<{ note: string | null }>(
            "SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [live])).rows[0]?.note ?? null;
        const note: SetAsideNote = {
            kind: "kong-upgrade-set-aside", was: live, replacedBy: record.snapshot, upgradeId: record.upgradeId, at: new Date().toISOString(),
            comment: liveComment, snapshot: record,
        };
        progress(`in one transaction: ${live} → ${setAside}, ${incoming} → ${live}, database settings, ACL and comment as recorded`);
        let notReapplied: string[];
        await c.query("BEGIN");
        try {
            await c.query(`ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(setAside)}`);
            await c.query(`ALTER DATABASE ${quoteIdent(incoming)} RENAME TO ${quoteIdent(live)}`);
            notReapplied = await applyDatabaseProps(c, live, record.database);
            await c.query(`COMMENT ON DATABASE ${quoteIdent(setAside)} IS ${quoteLiteral(JSON.stringify(note))}`);
            await c.query("COMMIT");
        } catch (e) {
            await c.query("ROLLBACK").catch(() => undefined);
            throw new StepError(`restore of ${record.snapshot} failed, ${live} is unchanged: ${(e as Error).message}`);
        }
        for (const s of notReapplied) progress(`warning: not re-applied (the role lacks the privilege; run it as an admin): ${s}`);
        const databaseSeconds = Number(process.hrtime.bigint() - started) / 1e9;
        return { record, setAside, already: false, databaseSeconds, notReapplied };
    });

    const { schemaMeta, counts } = await withDatabase(spec.db, pw, async (c) => ({ schemaMeta: await readSchemaMeta(c), counts: await entityCounts(c) }));
    const diff = countDifferences(counts, outcome.record.entityCounts);
    if (JSON.stringify(schemaMeta) !== JSON.stringify(outcome.record.schemaMeta) || diff.length > 0) {
        throw new StepError(`after restore, ${live} does not match snapshot ${outcome.record.snapshot}: ` +
            (diff.length > 0 ? `row counts differ: ${diff.join(", ")}` : `schema_meta ${JSON.stringify(schemaMeta)} vs ${JSON.stringify(outcome.record.schemaMeta)}`) +
            `. The database set aside as ${outcome.setAside} is untouched`);
    }
    progress(`${live} now holds ${outcome.record.snapshot}: schema_meta and the row counts of all ${Object.keys(counts).length} tables match`);
    const r = outcome.record;
    return {
        snapshot: r.snapshot, strategy: r.strategy === "dump" ? "dump" : spec.strategy, restoredAs: live, setAside: outcome.setAside,
        alreadyRestored: outcome.already || undefined, upgradeId: r.upgradeId, entityCounts: r.entityCounts, sizeBytes: r.sizeBytes,
        takenAt: r.takenAt, from: r.from, to: r.to, notReapplied: outcome.notReapplied.length > 0 ? outcome.notReapplied : undefined,
        databaseSeconds: outcome.databaseSeconds,
    };
}

/** Drops a leftover incoming database of an interrupted run: only this step creates that name. */
async function clearIncoming(c: Client, name: string): Promise<void> {
    if (!(await databaseExists(c, name))) return;
    progress(`dropping ${name}, left half-filled by an interrupted restore (the snapshot itself is untouched)`);
    await c.query(`DROP DATABASE ${quoteIdent(name)} WITH (FORCE)`);
}

/** `copy`: a template copy of the snapshot under the incoming name; the snapshot stays for another rollback. */
async function fillFromTemplate(c: Client, record: SnapshotRecord): Promise<string> {
    const incoming = incomingName(record.snapshot);
    await clearIncoming(c, incoming);
    progress(`CREATE DATABASE ${incoming} TEMPLATE ${record.snapshot}`);
    await c.query(`CREATE DATABASE ${quoteIdent(incoming)} TEMPLATE ${quoteIdent(record.snapshot)}`);
    return incoming;
}

/** `dump`: pg_restore into a fresh database with the recorded encoding and locale, then ANALYZE. */
async function fillFromDump(c: Client, spec: Restore, record: SnapshotRecord): Promise<string> {
    const dump = spec.dump!;
    const folder = dumpFolder(dump.directory, spec.stack, spec.db.database);
    const incoming = incomingName(record.snapshot);
    await clearIncoming(c, incoming);
    await c.query(`CREATE DATABASE ${quoteIdent(incoming)} ${createOptions(record.database)}`);
    progress(`pg_restore ${record.snapshot}.dump into ${incoming}`);
    await runPgTool(dump, pgToolArgv(dump, "pg_restore", ["--no-owner", "--exit-on-error", ...pgConnArgs(dump, spec.db, incoming), { file: `${record.snapshot}.dump` }], folder));
    // pg_restore brings no planner statistics (postgres-facts): Kong's first queries must not run blind.
    await withDatabase(spec.db, databasePassword(), async (k) => { await k.query("ANALYZE"); }, incoming);
    return incoming;
}
