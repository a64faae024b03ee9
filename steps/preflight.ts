// preflight: every check that can fail before anything changes. On failure nothing has been
// stopped: X keeps serving (upgrade) and Y keeps whatever state it has (rollback).
import { Client } from "pg";
import { isFrozen, liftReadOnly, migrationsLock, withDatabase, withServer } from "./lib/db";
import { inspectContainer, onHost, runningWithLabels } from "./lib/docker";
import { MigrationState, MigrationStatus, migrationsList, migrationsStatus } from "./lib/kong";
import { LearntCatalog, catalogFingerprint, catalogFromStatus, imageIdOf } from "./lib/migrationstate";
import { StepError, progress } from "./lib/log";
import { ClusterRef, DbTarget, KongRun, StepSpec } from "./lib/spec";
import { checkSnapshotPresent, chooseSnapshot, restoredBy } from "./restore";
import { databasePassword } from "./lib/secrets";
import { dumpFolder, dumpRecords } from "./lib/snapshots";

type Preflight = Extract<StepSpec, { step: "preflight" }>;

async function checkLock(db: DbTarget, pw: string): Promise<string | undefined> {
    const lock = await withDatabase(db, pw, migrationsLock);
    if (!lock) return undefined;
    if (lock.live) {
        throw new StepError(`another runner holds Kong's migrations lock (owner ${lock.owner}, until ${lock.ttl}); ` +
            `wait for it to finish or expire, then run pulumi up again`);
    }
    const note = `an expired migrations lock (owner ${lock.owner}, expired ${lock.ttl}) is left over; Kong clears it on the next run`;
    progress(note);
    return note;
}

/** Kong nodes of this stack that run but are not of `expected` version. */
async function strayNodes(cluster: ClusterRef): Promise<Array<{ name: string; version: string }>> {
    const hosts = cluster.hosts && cluster.hosts.length > 0 ? cluster.hosts : [undefined];
    const running = (await Promise.all(hosts.map((h) => runningWithLabels({ "kong-upgrade.stack": cluster.stack, "kong-upgrade.role": "node" }, h)))).flat();
    return running.filter((c) => c.labels["kong-upgrade.version"] !== cluster.version)
        .map((c) => ({ name: c.name, version: c.labels["kong-upgrade.version"] ?? "?" }));
}

/** A note when X is stopped and this upgrade's snapshot exists (see preflight); undefined otherwise. */
async function ownProgress(spec: Extract<Preflight, { mode: "upgrade" }>, pw: string): Promise<string | undefined> {
    const states = await Promise.all(spec.cluster.nodes.map((n) => inspectContainer(n.container, n.docker)));
    if (states.length === 0 || states.some((st) => st === undefined || st.running)) return undefined;
    const taken = await withServer(spec.db, pw, (c) => snapshotOfThisUpgrade(c, spec));
    if (!taken) return undefined;
    return `this upgrade is under way: ${spec.cluster.version} is stopped and its snapshot ${taken} exists; continuing it`;
}

/**
 * The newest snapshot of this upgrade of this stack's database, if one was taken: a database with
 * the upgrade's prefix (it holds a hash of stack and database), or a dump record in the stack's folder.
 */
async function snapshotOfThisUpgrade(c: Client, spec: Extract<Preflight, { mode: "upgrade" }>): Promise<string | undefined> {
    const r = await c.query<{ datname: string }>(
        "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY datname DESC LIMIT 1", [spec.snapshotPrefix]);
    if (r.rows[0]) return r.rows[0].datname;
    if (!spec.dumpDirectory) return undefined;
    const dumps = dumpRecords(dumpFolder(spec.dumpDirectory, spec.cluster.stack, spec.db.database)).filter((d) => d.snapshot.startsWith(spec.snapshotPrefix));
    return dumps[dumps.length - 1]?.snapshot;
}

export async function preflight(spec: Preflight): Promise<object> {
    const pw = databasePassword();
    const notes: string[] = [];
    if (spec.mode === "rollback") {
        // An online snapshot killed mid-way leaves Kong's database frozen (read-only, closed to
        // connections): lift that before anything else, even before connecting to it.
        await withServer(spec.db, pw, async (c) => {
            if (await isFrozen(c, spec.db.database)) {
                progress(`${spec.db.database} is still frozen by an interrupted online snapshot: lifting the freeze`);
                await liftReadOnly(c, spec.db.database);
            }
        });
    }
    // The database answers with the configured credentials (a clear error otherwise).
    await withDatabase(spec.db, pw, async (c) => { await c.query("SELECT 1"); });
    progress(`database ${spec.db.database} answers at ${spec.db.host}:${spec.db.port}`);
    const lockNote = await checkLock(spec.db, pw);
    if (lockNote) notes.push(lockNote);

    if (spec.mode === "rollback") {
        const q = { stack: spec.stack, db: spec.db, snapshot: spec.snapshot, dumpDirectory: spec.dumpDirectory };
        const found = await withServer(spec.db, pw, async (c) => {
            const chosen = await chooseSnapshot(c, q);
            const done = await restoredBy(c, chosen, spec.db.database);
            if (done) return `${spec.db.database} is already ${chosen.snapshot} restored (${done.name} set aside)`;
            await checkSnapshotPresent(c, chosen, q);
            return `snapshot ${chosen.snapshot} (taken ${chosen.takenAt} of ${chosen.source}, stack ${chosen.stack}, Kong ${chosen.from} → ${chosen.to})`;
        });
        progress(`rollback will use ${found}`);
        return { mode: "rollback", snapshot: found, notes };
    }

    // This upgrade's own progress: X's nodes exist but none runs (the stop ran), and a snapshot of
    // this upgrade exists (taken after the stop, or before it when online). A preflight that runs
    // again then (its identity changed, or the run was killed before its result was recorded)
    // continues the upgrade instead of refusing what the upgrade itself left behind.
    const own = await ownProgress(spec, pw);
    if (own) {
        notes.push(own);
        progress(own);
    }
    // Each hop's catalog, learnt here while X serves, so the steps inside the window read the state
    // from schema_meta rather than start Kong for it; the first hop's status is also the state now.
    const learnt = await learnCatalogs(spec.hopRuns ?? [], notes);
    const first = learnt.find((l) => l.run.version === spec.kong.version && l.status);
    const list = first?.status ? stateOfStatus(first.status) : await migrationsList(spec.kong);
    switch (list.state) {
        case "new":
            progress(`kong migrations list with ${spec.kong.image}: new migrations to run`);
            break;
        case "up-to-date":
            notes.push(`kong migrations list with ${spec.kong.image} reports nothing new: an earlier run already migrated`);
            progress(notes[notes.length - 1]);
            break;
        case "pending":
            if (own) {
                notes.push(`pending migrations belong to this upgrade (${(spec.hops ?? [spec.to]).join(" → ")}); the next steps finish them`);
                progress(notes[notes.length - 1]);
                break;
            }
            throw new StepError(`an earlier upgrade was not finished: the database has pending migrations. ` +
                `Run kong migrations finish with the version that ran up, or roll that upgrade back, before upgrading to ${spec.to}:\n${list.output}`);
        case "needs-bootstrap":
            throw new StepError(`not a bootstrapped Kong database: kong migrations list exits 3. ` +
                `Check database.name and database.schema:\n${list.output}`);
    }

    const missing: string[] = [];
    for (const node of spec.cluster.nodes) {
        if (!(await inspectContainer(node.container, node.docker))) missing.push(`${node.container}${onHost(node.docker)}`);
    }
    if (missing.length > 0) {
        throw new StepError(`cluster ${spec.cluster.version} node(s) ${missing.join(", ")} do not exist: is kong.version (${spec.cluster.version}) the version serving now?`);
    }
    // Y's own nodes, started by this upgrade before a later step failed, are not strays.
    const strays = (await strayNodes(spec.cluster)).filter((n) => !(own && n.version === spec.to));
    if (strays.length > 0) {
        const versions = [...new Set(strays.map((s) => s.version))];
        throw new StepError(`Kong ${versions.join(", ")} is running (${strays.map((s) => s.name).join(", ")}) while kong.version says ${spec.cluster.version}: ` +
            `promote ${versions[0]} first (set kong.version: ${versions[0]} and remove the upgrade block), or roll it back with upgrade.rollback: true`);
    }
    progress(`preflight passed: ${spec.cluster.nodes.length} node(s) of ${spec.cluster.version} ready to stop`);
    return { mode: "upgrade", notes, catalogs: learnt.flatMap((l) => l.catalog ? [l.catalog] : []) };
}

/** `kong migrations status` as `list` would report it (cmd/migrations.lua 105-152), with a text for messages. */
function stateOfStatus(status: MigrationStatus): { state: MigrationState; output: string } {
    const lines = (label: string, e?: Array<{ subsystem: string; migrations: string[] }>) =>
        e && e.length > 0 ? [`${label}:`, ...e.map((x) => `${x.subsystem}: ${x.migrations.join(", ")}`)] : [];
    const output = [...lines("Executed migrations", status.executed_migrations), ...lines("Pending migrations", status.pending_migrations),
        ...lines("New migrations available", status.new_migrations)].join("\n");
    const state: MigrationState = status.needs_bootstrap ? "needs-bootstrap" : status.pending_migrations?.length ? "pending"
        : status.new_migrations?.length ? "new" : "up-to-date";
    return { state, output };
}

/**
 * `kong migrations status` with every hop's run, side by side. A hop before 3.0 (no `status`) or
 * whose status fails gets no catalog: its steps then ask `kong migrations list`, as before.
 */
async function learnCatalogs(runs: KongRun[], notes: string[]): Promise<Array<{ run: KongRun; status?: MigrationStatus; catalog?: LearntCatalog }>> {
    return Promise.all(runs.map(async (run) => {
        if (Number(run.version.split(".")[0]) < 3) return { run };
        try {
            const [status, imageId] = await Promise.all([migrationsStatus(run), imageIdOf(run)]);
            const subsystems = catalogFromStatus(status as unknown as Record<string, unknown>);
            if (!subsystems.core) throw new StepError(`its status names no core migrations`);
            return { run, status, catalog: { version: run.version, fingerprint: catalogFingerprint(run), ...(imageId ? { imageId } : {}), subsystems } };
        } catch (e) {
            notes.push(`no catalog of ${run.image}: ${(e as Error).message.split("\n")[0]}; its steps will ask kong migrations list`);
            progress(notes[notes.length - 1]);
            return { run };
        }
    }));
}
