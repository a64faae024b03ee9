// snapshot: a database-level copy of Kong's database, taken after X stopped and before any
// migration. Default `template`: CREATE DATABASE <snap> TEMPLATE <db> on the same server. `dump`:
// pg_dump -Fc into the dump folder, with its SHA-256. The snapshot records Kong's migration state
// and entity counts, so restore and verify can prove they got the same data back.
import { mkdirSync, statSync, writeFileSync } from "fs";
import * as path from "path";
import {
    allowConnections, databaseExists, databaseSize, describeSessions, entityCounts, freezeReadOnly, liftReadOnly, quoteIdent, readSchemaMeta,
    sessionsOn, setDatabaseNote, terminateSessions, withDatabase, withServer,
} from "./lib/db";
import { StepError, progress, stamp } from "./lib/log";
import { pgConnArgs, pgToolArgv, runPgTool } from "./lib/pgtools";
import { SnapshotNote, sha256File } from "./lib/snapshots";
import { runKong } from "./lib/kong";
import { databasePassword } from "./lib/secrets";
import { StepSpec } from "./lib/spec";

type Snapshot = Extract<StepSpec, { step: "snapshot" }>;

export async function snapshot(spec: Snapshot): Promise<SnapshotNote> {
    const note = await databaseSnapshot(spec);
    if (!spec.declarativeExport) return note;
    return { ...note, declarative: await declarativeExport(spec.declarativeExport, note.snapshot) };
}

/** `kong config db_export` beside the snapshot: a secondary safeguard, never the only one (kong-facts §6.1). */
async function declarativeExport(exp: NonNullable<Snapshot["declarativeExport"]>, name: string): Promise<{ location: string; sha256: string }> {
    const dir = path.resolve(exp.directory);
    mkdirSync(dir, { recursive: true });
    const file = `${name}.kong.yml`;
    progress(`kong config db_export with ${exp.kong.image} → ${path.join(dir, file)}`);
    const r = await runKong(exp.kong, ["config", "db_export", `/export/${file}`], 600, [{ host: dir, container: "/export" }]);
    if (r.code !== 0) throw new StepError(`kong config db_export failed (exit ${r.code}); the database snapshot is taken and kept:\n${(r.stdout + r.stderr).trim()}`);
    const location = path.join(dir, file);
    return { location, sha256: await sha256File(location) };
}

async function databaseSnapshot(spec: Snapshot): Promise<SnapshotNote> {
    if (!spec.online) return takeSnapshot(spec);
    // Online: freeze first, so nothing written after the copy is lost; lift the freeze on any
    // failure, since X keeps serving and must get its writes back.
    const pw = databasePassword();
    const source = spec.db.database;
    await withServer(spec.db, pw, async (c) => {
        progress(`freezing ${source} read-only while cluster ${spec.from} keeps proxying`);
        await freezeReadOnly(c, source);
        progress(`ending ${await terminateSessions(c, source)} session(s) on ${source}; clients reconnect read-only`);
    });
    try {
        const note = await takeSnapshot({ ...spec, terminateSessions: true });
        progress(`${source} stays read-only until cluster ${spec.from} is stopped`);
        return note;
    } catch (e) {
        await withServer(spec.db, pw, (c) => liftReadOnly(c, source)).catch(() => undefined);
        progress(`snapshot failed: the freeze on ${source} is lifted`);
        throw e;
    }
}

async function takeSnapshot(spec: Snapshot): Promise<SnapshotNote> {
    const pw = databasePassword();
    const source = spec.db.database;
    const name = `${spec.prefix}${stamp()}`;
    const { schemaMeta, counts } = await withDatabase(spec.db, pw, async (c) => ({
        schemaMeta: await readSchemaMeta(c), counts: await entityCounts(c),
    }));
    if (schemaMeta.length === 0) throw new StepError(`${source} has no Kong schema_meta: nothing to snapshot (is database.name right?)`);
    const base = {
        kind: "kong-upgrade-snapshot" as const, snapshot: name, strategy: spec.strategy, source, from: spec.from, to: spec.to,
        schemaMeta, entityCounts: counts,
    };

    if (spec.strategy === "dump") {
        const dump = spec.dump;
        if (!dump) throw new StepError("dump strategy without a dump target");
        mkdirSync(path.resolve(dump.directory), { recursive: true });
        const file = path.join(path.resolve(dump.directory), `${name}.dump`);
        progress(`pg_dump -Fc ${source} → ${file}`);
        const takenAt = new Date().toISOString();
        await runPgTool(dump, pgToolArgv(dump, "pg_dump", ["-Fc", ...pgConnArgs(dump, spec.db, source), "-f", { file: `${name}.dump` }]));
        const note: SnapshotNote = { ...base, takenAt, sizeBytes: statSync(file).size, location: file, sha256: await sha256File(file) };
        writeFileSync(path.join(path.resolve(dump.directory), `${name}.json`), `${JSON.stringify(note, null, 2)}\n`);
        return note;
    }

    return withServer(spec.db, pw, async (c) => {
        if (await databaseExists(c, name)) throw new StepError(`a database named ${name} exists already; it is never overwritten`);
        const sessions = await sessionsOn(c, source);
        if (sessions.length > 0) {
            if (!spec.terminateSessions) {
                throw new StepError(`${sessions.length} session(s) are connected to ${source} (${describeSessions(sessions)}); ` +
                    `a template copy needs none. Stop those clients, or set upgrade.terminateSessions: true to end them`);
            }
            progress(`ending ${await terminateSessions(c, source)} session(s) on ${source}: ${describeSessions(sessions)}`);
        }
        if (spec.online) {
            // A template copy needs no session on the source: hold X's reconnects off for the copy
            // (its nodes keep proxying from their caches), then end the sessions that remain.
            await allowConnections(c, source, false);
            await terminateSessions(c, source);
        }
        const takenAt = new Date().toISOString();
        progress(`CREATE DATABASE ${name} TEMPLATE ${source}`);
        try {
            await c.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(source)}`);
            if (spec.online) await allowConnections(c, source, true);
        } catch (e) {
            const msg = (e as Error).message;
            throw new StepError(`snapshot copy of ${source} failed: ${msg}` + (/being accessed/.test(msg)
                ? `. A client connected meanwhile; set upgrade.terminateSessions: true or stop it, then run pulumi up again`
                : /permission denied/.test(msg) ? `. Kong's role needs CREATEDB for template snapshots, or use upgrade.snapshotStrategy: dump` : ""));
        }
        // Nobody connects to a snapshot by mistake; restore allows connections again.
        await allowConnections(c, name, false);
        const note: SnapshotNote = { ...base, takenAt, sizeBytes: await databaseSize(c, name) };
        await setDatabaseNote(c, name, note);
        progress(`snapshot ${name}: ${(note.sizeBytes / 1e6).toFixed(1)} MB`);
        return note;
    });
}
