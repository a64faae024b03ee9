// restore: puts a snapshot's content in place of Kong's database. The current database is
// first set aside as <db>_failed_<time>, never dropped. Template snapshots are renamed into place
// (constant time; the snapshot becomes the database) or copied (time grows with size; the
// snapshot stays for another rollback). Dump snapshots are restored into a fresh database that
// is then swapped in. Afterwards schema_meta and entity counts must equal the snapshot's record.
import { Client } from "pg";
import { existsSync } from "fs";
import {
    databaseExists, databaseNote, describeSessions, entityCounts, freeDatabaseName, liftReadOnly, quoteIdent, readSchemaMeta, sessionsOn,
    setDatabaseNote, withDatabase, withServer,
} from "./lib/db";
import { StepError, progress, stamp } from "./lib/log";
import { pgConnArgs, pgToolArgv, runPgTool } from "./lib/pgtools";
import { RestoredNote, SnapshotNote, dumpSnapshots, sha256File, templateSnapshots } from "./lib/snapshots";
import { StepSpec } from "./lib/spec";
import { databasePassword } from "./lib/secrets";

type Restore = Extract<StepSpec, { step: "restore" }>;

export interface RestoreResult {
    snapshot: string;
    strategy: string;
    restoredAs: string;
    setAside?: string;
    alreadyRestored?: boolean;
    entityCounts: Record<string, number>;
    sizeBytes: number;
    takenAt: string;
    from: string;
    to: string;
    /** Seconds spent changing the database (set aside, then rename, copy or pg_restore and swap). */
    databaseSeconds: number;
}

/** Where to look for a rollback's snapshot: its name's prefix, its name if given, the dump folder for dumps. */
export interface SnapshotQuery {
    prefix: string;
    snapshot?: string;
    dumpDirectory?: string;
}

/** The snapshot a rollback uses: the one named, else the newest of this upgrade. */
export async function chooseSnapshot(c: Client, q: SnapshotQuery): Promise<SnapshotNote | undefined> {
    const all = q.dumpDirectory ? dumpSnapshots(q.dumpDirectory, q.prefix) : await templateSnapshots(c, q.prefix);
    if (q.snapshot) return all.find((n) => n.snapshot === q.snapshot);
    return all[all.length - 1];
}

/** True when the live database already is the named (or any of this upgrade's) snapshot restored. */
export function alreadyRestored(note: RestoredNote | undefined, spec: Pick<Restore, "prefix" | "snapshot">): boolean {
    if (note?.kind !== "kong-upgrade-restored") return false;
    return spec.snapshot ? note.restoredFrom === spec.snapshot : note.restoredFrom.startsWith(spec.prefix);
}

function equalJson(a: unknown, b: unknown): boolean {
    return JSON.stringify(a) === JSON.stringify(b);
}

export async function restore(spec: Restore): Promise<RestoreResult> {
    const pw = databasePassword();
    const live = spec.db.database;
    const outcome = await withServer(spec.db, pw, async (c) => {
        const liveNote = await databaseNote<RestoredNote>(c, live);
        const chosen = await chooseSnapshot(c, { prefix: spec.prefix, snapshot: spec.snapshot, dumpDirectory: spec.dump?.directory });
        if (!chosen || (liveNote && liveNote.restoredFrom === chosen.snapshot)) {
            if (alreadyRestored(liveNote, spec)) {
                progress(`${live} is already ${liveNote!.restoredFrom} restored (at ${liveNote!.at}); nothing to do`);
                return { note: liveNote!.snapshot, setAside: liveNote!.setAside, already: true, databaseSeconds: 0 };
            }
            throw new StepError(spec.snapshot
                ? `snapshot ${spec.snapshot} does not exist; check upgrade.snapshot`
                : `no snapshot of this upgrade (${spec.prefix}…) exists; name one with upgrade.snapshot`);
        }
        const sessions = await sessionsOn(c, live);
        if (sessions.length > 0) {
            throw new StepError(`${sessions.length} session(s) are still connected to ${live} (${describeSessions(sessions)}); ` +
                `stop every Kong node and client of it, then run pulumi up again. Nothing was changed`);
        }
        const setAside = await freeDatabaseName(c, `${live.slice(0, 40)}_failed_${stamp()}`);
        const started = process.hrtime.bigint();
        let incoming = chosen.snapshot;
        if (chosen.strategy === "dump") incoming = await restoreDump(c, spec, chosen);

        progress(`setting ${live} aside as ${setAside}`);
        await c.query(`ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(setAside)}`);
        try {
            if (chosen.strategy === "template" && spec.strategy === "copy") {
                progress(`CREATE DATABASE ${live} TEMPLATE ${incoming}`);
                await c.query(`CREATE DATABASE ${quoteIdent(live)} TEMPLATE ${quoteIdent(incoming)}`);
            } else {
                progress(`renaming ${incoming} to ${live}`);
                await c.query(`ALTER DATABASE ${quoteIdent(incoming)} RENAME TO ${quoteIdent(live)}`);
            }
            // Whatever the snapshot was taken from, the restored database takes writes again.
            await liftReadOnly(c, live);
        } catch (e) {
            // Put the database back where it was: a failed restore changes nothing.
            if (!(await databaseExists(c, live))) await c.query(`ALTER DATABASE ${quoteIdent(setAside)} RENAME TO ${quoteIdent(live)}`);
            throw new StepError(`restore of ${chosen.snapshot} failed, ${live} is unchanged: ${(e as Error).message}`);
        }
        const databaseSeconds = Number(process.hrtime.bigint() - started) / 1e9;
        await setDatabaseNote(c, setAside, { kind: "kong-upgrade-set-aside", was: live, at: new Date().toISOString(), replacedBy: chosen.snapshot });
        const note: RestoredNote = { kind: "kong-upgrade-restored", restoredFrom: chosen.snapshot, setAside, at: new Date().toISOString(), snapshot: chosen };
        await setDatabaseNote(c, live, note);
        return { note: chosen, setAside, already: false, databaseSeconds };
    });

    const { schemaMeta, counts } = await withDatabase(spec.db, pw, async (c) => ({ schemaMeta: await readSchemaMeta(c), counts: await entityCounts(c) }));
    if (!equalJson(schemaMeta, outcome.note.schemaMeta) || !equalJson(counts, outcome.note.entityCounts)) {
        throw new StepError(`after restore, ${live} does not match snapshot ${outcome.note.snapshot}: ` +
            `schema_meta ${JSON.stringify(schemaMeta)} vs ${JSON.stringify(outcome.note.schemaMeta)}, ` +
            `counts ${JSON.stringify(counts)} vs ${JSON.stringify(outcome.note.entityCounts)}. ` +
            `The database set aside as ${outcome.setAside} is untouched`);
    }
    progress(`${live} now holds ${outcome.note.snapshot}: schema_meta and entity counts match`);
    return {
        snapshot: outcome.note.snapshot, strategy: outcome.note.strategy === "dump" ? "dump" : spec.strategy, restoredAs: live,
        setAside: outcome.setAside, alreadyRestored: outcome.already || undefined, entityCounts: outcome.note.entityCounts,
        sizeBytes: outcome.note.sizeBytes, takenAt: outcome.note.takenAt, from: outcome.note.from, to: outcome.note.to,
        databaseSeconds: outcome.databaseSeconds,
    };
}

/** pg_restore a dump into a fresh database and return its name, ready to be swapped in. */
async function restoreDump(c: Client, spec: Restore, note: SnapshotNote): Promise<string> {
    if (!spec.dump || !note.location) throw new StepError(`snapshot ${note.snapshot} is a dump, but no dump folder is configured`);
    const file = `${note.snapshot}.dump`;
    const full = `${spec.dump.directory}/${file}`;
    if (!existsSync(full)) throw new StepError(`dump file ${full} is missing`);
    const sum = await sha256File(full);
    if (sum !== note.sha256) throw new StepError(`dump file ${full} has checksum ${sum}, not ${note.sha256} as recorded: refusing to restore it`);
    const fresh = await freeDatabaseName(c, `${spec.db.database.slice(0, 40)}_restore_${stamp()}`);
    progress(`pg_restore ${file} into ${fresh}`);
    await c.query(`CREATE DATABASE ${quoteIdent(fresh)}`);
    await runPgTool(spec.dump, pgToolArgv(spec.dump, "pg_restore", ["--no-owner", "--exit-on-error", ...pgConnArgs(spec.dump, spec.db, fresh), { file }]));
    return fresh;
}
