// snapshot: a database-level copy of Kong's database, taken after X stopped and before any
// migration. Default `template`: CREATE DATABASE <snap> TEMPLATE <db> on the same server. `dump`:
// pg_dump -Fc into the stack's dump folder, with its SHA-256. The snapshot's record (snapshots.ts)
// says whose it is (stack, server, database, upgrade id) and what it holds (schema_meta, the row
// count of every table, the database-level properties restore re-applies). It is printed on
// stdout, so Pulumi keeps it in state and the rollback restores exactly this snapshot.
//
// It refuses a database that is not at X (pending migrations, or migrations of a hop already
// run): @pulumi/command re-runs create when any input changes, and a copy taken then would be a
// half-migrated "snapshot". Each run takes a fresh snapshot; none is ever reused or overwritten.
import { randomUUID } from "crypto";
import { chmodSync, existsSync, readdirSync, renameSync, statSync } from "fs";
import * as path from "path";
import { Client } from "pg";
import {
    allowConnections, databaseExists, databaseProps, databaseSize, describeSessions, entityCounts, freezeReadOnly, isFrozen, liftReadOnly,
    lockStack, quoteIdent, quoteLiteral, readSchemaMeta, serverIdentity, sessionsOn, terminateSessions, withDatabase, withServer,
} from "./lib/db";
import { crashPoint } from "./lib/crash";
import { StepError, progress, sleep, stamp } from "./lib/log";
import { pgConnArgs, pgToolArgv, runPgTool } from "./lib/pgtools";
import { STAMP_LENGTH, SnapshotRecord, checkNameLength, dumpFolder, ensurePrivateFolder, sha256File, writePrivateFileAtomic } from "./lib/snapshots";
import { migrationsList, runKong } from "./lib/kong";
import { classify, learntCatalogs, readMigrationRows, usableCatalog } from "./lib/migrationstate";
import { databasePassword } from "./lib/secrets";
import { CATALOG_ENV, StepSpec } from "./lib/spec";

type Snapshot = Extract<StepSpec, { step: "snapshot" }>;

export async function snapshot(spec: Snapshot): Promise<SnapshotRecord> {
    const record = await withServer(spec.db, databasePassword(), async (c) => {
        await lockStack(c, spec.stack, spec.db.database);
        return databaseSnapshot(c, spec);
    });
    if (!spec.declarativeExport) return record;
    return { ...record, declarative: await declarativeExport(spec, record.snapshot) };
}

/** `kong config db_export` beside the snapshot: a secondary safeguard, never the only one (kong-facts §6.1). */
async function declarativeExport(spec: Snapshot, name: string): Promise<{ location: string; sha256: string }> {
    const exp = spec.declarativeExport!;
    const dir = dumpFolder(exp.directory, spec.stack, spec.db.database);
    ensurePrivateFolder(dir);
    const file = `${name}.kong.yml`;
    progress(`kong config db_export with ${exp.kong.image} → ${path.join(dir, file)}`);
    const r = await runKong(exp.kong, ["config", "db_export", `/export/${file}`], 600, [{ host: dir, container: "/export" }]);
    if (r.code !== 0) throw new StepError(`kong config db_export failed (exit ${r.code}); the database snapshot is taken and kept:\n${(r.stdout + r.stderr).trim()}`);
    const location = path.join(dir, file);
    if (existsSync(location)) chmodSync(location, 0o600);
    return { location, sha256: await sha256File(location) };
}

/**
 * The database is at X: no migration pending, and the first hop's `kong migrations list` still
 * sees its migrations as new (exit 5). After `up` it says pending (4); after that hop's `finish`,
 * or any later hop, nothing new (0). A direct upgrade without migrations (a patch) also says 0,
 * and then X's and Y's schema are the same, so the database is at X either way.
 */
export async function checkAtX(spec: Snapshot, schemaMeta: Awaited<ReturnType<typeof readSchemaMeta>>): Promise<void> {
    const source = spec.db.database;
    const found = () => schemaMeta.map((m) => `${m.subsystem} last executed ${m.last_executed ?? "none"}` +
        (m.pending.length > 0 ? `, pending ${m.pending.join(", ")}` : "")).join("; ");
    const refuse = (why: string) => new StepError(`${source} is not at Kong ${spec.from}: ${why} (schema_meta: ${found()}). ` +
        `A snapshot now would hold a half-migrated database; none is taken. If this is a rollback after promotion, ` +
        `name the upgrade's snapshot with upgrade.snapshot (the snapshot.name stack output of the upgrade)`);
    const pending = schemaMeta.filter((m) => m.pending.length > 0);
    if (pending.length > 0) throw refuse(`migrations are pending (${pending.map((m) => `${m.subsystem}: ${m.pending.join(", ")}`).join("; ")})`);
    if (!spec.firstHop) return;
    // Inside the window: the first hop's state from schema_meta against its catalog (as the
    // migration steps do), where preflight learnt it; else Kong's own list.
    const catalog = await usableCatalog(learntCatalogs(process.env[CATALOG_ENV]), spec.firstHop);
    const how = catalog ? `schema_meta against ${spec.firstHop.image}'s catalog` : `kong migrations list with ${spec.firstHop.image}`;
    const state = catalog
        ? classify(await withDatabase(spec.db, databasePassword(), readMigrationRows), catalog.subsystems).state
        : (await migrationsList(spec.firstHop)).state;
    switch (state) {
        case "new":
            progress(`${how}: new migrations to run, ${source} is at ${spec.from}`);
            return;
        case "up-to-date":
            if (spec.hops.length <= 1) return;
            throw refuse(`${how} finds nothing new: hop ${spec.firstHop.version} has already migrated it`);
        case "pending":
            throw refuse(`${how} reports pending migrations`);
        case "needs-bootstrap":
            throw refuse(`it is not a bootstrapped Kong database`);
    }
}

async function databaseSnapshot(c: Client, spec: Snapshot): Promise<SnapshotRecord> {
    const source = spec.db.database;
    if (await isFrozen(c, source)) {
        // An earlier online snapshot was interrupted before it could lift its freeze.
        progress(`${source} is still frozen by an interrupted online snapshot: lifting the freeze first`);
        await liftReadOnly(c, source);
    }
    const schemaMeta = await withDatabase(spec.db, databasePassword(), readSchemaMeta);
    if (schemaMeta.length === 0) throw new StepError(`${source} has no Kong schema_meta: nothing to snapshot (is database.name right?)`);
    await checkAtX(spec, schemaMeta);
    const props = await databaseProps(c, source);
    const server = await serverIdentity(c);
    if (server.note) progress(server.note);
    if (!spec.online) return takeSnapshot(c, spec, props, server);
    // Online: freeze first, so nothing written after the copy is lost; lift the freeze on any
    // failure, since X keeps serving and must get its writes back.
    progress(`freezing ${source} read-only while cluster ${spec.from} keeps proxying`);
    await freezeReadOnly(c, source);
    try {
        // takeSnapshot closes the database to new sessions, ends X's (they were read-write), copies
        // it and opens it again: X's nodes then reconnect read-only.
        const record = await takeSnapshot(c, { ...spec, terminateSessions: true }, props, server);
        progress(`${source} stays read-only until cluster ${spec.from} is stopped`);
        return record;
    } catch (e) {
        await liftReadOnly(c, source).catch(() => undefined);
        progress(`snapshot failed: the freeze on ${source} is lifted`);
        throw e;
    }
}

/**
 * A snapshot name nothing holds yet. Names carry the second they were taken in, and a rerun after
 * a kill can come within the second of the run it replaces: what that run left (a copy killed
 * before its record, a dump not yet recorded) is never overwritten nor adopted, so the name waits
 * for the next second.
 */
export async function unusedName(prefix: string, taken: (name: string) => Promise<boolean>): Promise<string> {
    for (let attempt = 0; attempt < 3; attempt++) {
        const name = `${prefix}${stamp()}`;
        checkNameLength(name);
        if (!(await taken(name))) return name;
        await sleep(1005 - (Date.now() % 1000));
    }
    throw new StepError(`every snapshot name ${prefix}<time> tried in the last 3 s exists already; none is ever overwritten`);
}

/**
 * Names what earlier runs of this upgrade's snapshot left, before a new one is taken. A copy or a
 * dump without its record (the run was killed before writing it) is not a snapshot: no rollback
 * ever picks it. One with its record but not in Pulumi's state (killed before it could report) is
 * kept like every snapshot. The program drops none of them; the operator may, once checked.
 */
async function reportLeftovers(c: Client, prefix: string, folder: string | undefined): Promise<void> {
    // This upgrade's names exactly: the prefix then the stamp (a prefix `…_to_3_4_3_` also begins
    // `…_to_3_4_3_1_<stamp>`, another upgrade's).
    const ours = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\d{${STAMP_LENGTH}}(\\.dump(\\.partial)?|\\.json)?$`);
    const copies = (await c.query<{ datname: string; recorded: boolean }>(
        `SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') LIKE '{"kind":"kong-upgrade-snapshot"%' AS recorded
           FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY 1`, [prefix])).rows.filter((d) => ours.test(d.datname));
    const files = folder && existsSync(folder) ? readdirSync(folder).filter((f) => ours.test(f)).sort() : [];
    const dumps = files.filter((f) => f.endsWith(".dump") || f.endsWith(".dump.partial")).map((f) => ({
        left: path.join(folder!, f), recorded: f.endsWith(".dump") && files.includes(f.replace(/\.dump$/, ".json")),
    }));
    for (const { left, recorded } of [...copies.map((d) => ({ left: `database ${d.datname}`, recorded: d.recorded })), ...dumps]) {
        progress(recorded
            ? `an earlier snapshot of this upgrade, ${left}, is kept; the rollback restores only the snapshot this run records`
            : `warning: ${left} was left by an interrupted snapshot of this upgrade; it has no record, is not a snapshot and is never restored. ` +
              `Remove it by hand once you have checked it`);
    }
}

async function takeSnapshot(c: Client, spec: Snapshot, database: SnapshotRecord["database"], server: { systemIdentifier?: string; note?: string }): Promise<SnapshotRecord> {
    const pw = databasePassword();
    const source = spec.db.database;
    const folder = spec.strategy === "dump" && spec.dump ? dumpFolder(spec.dump.directory, spec.stack, source) : undefined;
    await reportLeftovers(c, spec.prefix, folder);
    const name = await unusedName(spec.prefix, folder
        ? async (n) => [".dump", ".dump.partial", ".json"].some((ext) => existsSync(path.join(folder, `${n}${ext}`)))
        : (n) => databaseExists(c, n));
    const { schemaMeta, counts } = await withDatabase(spec.db, pw, async (k) => ({ schemaMeta: await readSchemaMeta(k), counts: await entityCounts(k) }));
    const base = {
        kind: "kong-upgrade-snapshot" as const, snapshot: name, strategy: spec.strategy, stack: spec.stack,
        systemIdentifier: server.systemIdentifier, serverNote: server.note, source, from: spec.from, to: spec.to, hops: spec.hops,
        upgradeId: randomUUID(), schemaMeta, entityCounts: counts, database,
    };

    if (spec.strategy === "dump") {
        const dump = spec.dump;
        if (!dump || !folder) throw new StepError("dump strategy without a dump target");
        ensurePrivateFolder(folder);
        crashPoint();
        const file = path.join(folder, `${name}.dump`);
        // pg_dump writes a partial file first; only a complete dump gets the final name.
        const partial = `${name}.dump.partial`;
        progress(`pg_dump -Fc ${source} → ${file}`);
        const takenAt = new Date().toISOString();
        await runPgTool(dump, pgToolArgv(dump, "pg_dump", ["-Fc", ...pgConnArgs(dump, spec.db, source), "-f", { file: partial }], folder));
        chmodSync(path.join(folder, partial), 0o600);
        crashPoint();
        const sha256 = await sha256File(path.join(folder, partial));
        renameSync(path.join(folder, partial), file);
        crashPoint();
        const record: SnapshotRecord = { ...base, takenAt, sizeBytes: statSync(file).size, location: file, sha256 };
        writePrivateFileAtomic(path.join(folder, `${name}.json`), `${JSON.stringify(record, null, 2)}\n`);
        return record;
    }

    // Online, X still serves and reconnects as soon as a session of its ends: hold its reconnects
    // off for the copy first (its nodes keep proxying from their caches), or ending its sessions
    // races with them (the caller opens the database again on failure).
    if (spec.online) await allowConnections(c, source, false);
    const sessions = await sessionsOn(c, source);
    if (sessions.length > 0) {
        if (!spec.terminateSessions) {
            throw new StepError(`${sessions.length} session(s) are connected to ${source} (${describeSessions(sessions)}); ` +
                `a template copy needs none. Stop those clients, or set upgrade.terminateSessions: true to end them`);
        }
        progress(`ending ${await terminateSessions(c, source)} session(s) on ${source}: ${describeSessions(sessions)}`);
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
    const record: SnapshotRecord = { ...base, takenAt, sizeBytes: await databaseSize(c, name) };
    // Nobody connects to a snapshot by mistake (restore allows connections again); its record is
    // its comment. Both in one transaction: a snapshot without its record is never chosen.
    await c.query("BEGIN");
    await c.query(`ALTER DATABASE ${quoteIdent(name)} WITH ALLOW_CONNECTIONS false`);
    await c.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${quoteLiteral(JSON.stringify(record))}`);
    await c.query("COMMIT");
    progress(`snapshot ${name}: ${(record.sizeBytes / 1e6).toFixed(1)} MB`);
    return record;
}
