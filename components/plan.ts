// Step planning: which resources a configuration declares, in which order, and what the engine
// deletes at the end. Pure: the components build exactly these steps, and `npm run plan` and the
// `runbook` stack output print them.
import { Settings } from "./config";
import { KongVersion, upgradeChain, versionSlug } from "./versions";

export type Mode = "steady" | "upgrade" | "rollback";

export type StepKind =
    | "database" | "images" | "bootstrap" | "preflight" | "stop" | "snapshot"
    | "migrations-up" | "migrations-finish" | "nodes" | "start" | "restore" | "verify";

export interface PlannedStep {
    kind: StepKind;
    /** Logical resource name(s) of the step, as `pulumi preview` shows them. */
    resources: string[];
    /** What an operator reads in the runbook. */
    title: string;
    /** Resources (by logical name) this step waits for. */
    after: string[];
    /** The Kong version the step concerns, when it concerns one. */
    version?: KongVersion;
}

export interface Runbook {
    mode: Mode;
    summary: string;
    steps: PlannedStep[];
    /** Resources no longer declared: the engine deletes them after every step above succeeded. */
    deletions: string[];
}

// ---- names: every resource name says which step or version it is -------------------------

export const names = {
    cluster: (v: KongVersion) => `kong-${versionSlug(v)}`,
    node: (v: KongVersion, i: number) => `kong-${versionSlug(v)}-node-${i}`,
    /** Docker's container name: the stack keeps two stacks on one host apart. */
    container: (stack: string, v: KongVersion, i: number) => `${stack}-kong-${versionSlug(v)}-node-${i}`,
    image: (v: KongVersion) => `image-kong-${versionSlug(v)}`,
    preflight: (from: KongVersion, to: KongVersion) => `preflight-${versionSlug(from)}-to-${versionSlug(to)}`,
    rollbackPreflight: (from: KongVersion, to: KongVersion) => `preflight-rollback-${versionSlug(to)}-to-${versionSlug(from)}`,
    stop: (v: KongVersion) => `stop-kong-${versionSlug(v)}`,
    start: (v: KongVersion) => `start-kong-${versionSlug(v)}`,
    snapshot: (from: KongVersion, to: KongVersion) => `snapshot-${versionSlug(from)}-to-${versionSlug(to)}`,
    migrationsUp: (v: KongVersion) => `migrations-up-${versionSlug(v)}`,
    migrationsFinish: (v: KongVersion) => `migrations-finish-${versionSlug(v)}`,
    restore: (from: KongVersion, to: KongVersion) => `restore-${versionSlug(from)}-from-${versionSlug(to)}`,
    verify: (v: KongVersion) => `verify-kong-${versionSlug(v)}`,
    bootstrap: "bootstrap",
    database: "database",
    /** Prefix of snapshot databases of one upgrade; a UTC timestamp completes the name. */
    snapshotPrefix: (db: string, from: KongVersion, to: KongVersion) =>
        `${db.slice(0, 16)}_snap_${versionSlug(from).replace(/-/g, "_")}_to_${versionSlug(to).replace(/-/g, "_")}_`,
};

function nodeNames(v: KongVersion, count: number): string[] {
    return Array.from({ length: count }, (_, i) => names.node(v, i));
}

/** The versions whose images the run needs, in order of use. */
export function imagesNeeded(s: Settings): KongVersion[] {
    const u = s.upgrade;
    if (!u) return [s.kong.version];
    if (u.rollback) return [s.kong.version, u.to];
    return [s.kong.version, ...upgradeChain(s.kong.version, u.via, u.to)];
}

export function modeOf(s: Settings): Mode {
    if (!s.upgrade) return "steady";
    return s.upgrade.rollback ? "rollback" : "upgrade";
}

/** The runbook of a validated configuration. */
export function planRunbook(s: Settings): Runbook {
    const x = s.kong.version;
    const n = s.kong.nodes;
    const image = (v: KongVersion) => `${s.kong.image}:${v.text}`;
    const db = s.database.mode === "embedded"
        ? `embedded PostgreSQL (${s.database.image}) on 127.0.0.1:${s.database.port}, role and database "${s.database.name}"`
        : `external PostgreSQL ${s.database.host}:${s.database.port}/${s.database.name}`;
    const steps: PlannedStep[] = [];
    const add = (step: Omit<PlannedStep, "after">, after?: string[]) => {
        const prev = steps[steps.length - 1];
        steps.push({ ...step, after: after ?? (prev ? prev.resources : []) });
    };
    add({ kind: "database", resources: [names.database], title: `shared database: ${db}` });
    const images = imagesNeeded(s);
    add({ kind: "images", resources: images.map(names.image),
        title: `images present before anything stops: ${images.map(image).join(", ")}` }, []);
    add({ kind: "bootstrap", resources: [names.bootstrap],
        title: `kong migrations bootstrap with ${image(x)}, only if \`kong migrations list\` says the database needs it (exit 3)` },
        [names.database, names.image(x)]);
    const u = s.upgrade;

    if (!u) {
        add({ kind: "nodes", resources: nodeNames(x, n), version: x,
            title: `cluster ${x.text}: ${n} node(s) of ${image(x)}, each waited on until healthy` });
        add({ kind: "verify", resources: [names.verify(x)], version: x,
            title: `verify ${x.text}: /status says database.reachable on every node, \`kong migrations list\` exits 0` });
        return { mode: "steady", summary: `Kong ${x.text} (${n} nodes), no upgrade requested`, steps, deletions: [] };
    }

    const y = u.to;
    if (u.rollback) {
        const which = u.snapshot ? `snapshot ${u.snapshot}` : `the newest snapshot of ${x.text} → ${y.text}`;
        add({ kind: "preflight", resources: [names.rollbackPreflight(x, y)],
            title: `preflight: ${which} exists, the database answers, no migration holds the lock` },
        [names.bootstrap, ...images.map(names.image)]);
        add({ kind: "stop", resources: [names.stop(y)], version: y,
            title: `stop cluster ${y.text} (${n} nodes, ${s.kong.drainSeconds}s to drain) and confirm it is down` });
        add({ kind: "restore", resources: [names.restore(x, y)],
            title: `restore ${which} at database level by ${u.restoreStrategy === "rename" ? "renaming it into place" : "template copy"}; ` +
                `the current database is set aside as ${s.database.name}_failed_<time>, never dropped` });
        add({ kind: "nodes", resources: nodeNames(x, n), version: x,
            title: `cluster ${x.text}: ${n} node(s) of ${image(x)} declared again` });
        add({ kind: "start", resources: [names.start(x)], version: x,
            title: `start cluster ${x.text}'s nodes (also those a failed upgrade only stopped) and wait until healthy` });
        add({ kind: "verify", resources: [names.verify(x)], version: x,
            title: `verify ${x.text}: /status on every node, \`kong migrations list\` exits 0, entity counts equal the snapshot's` });
        return {
            mode: "rollback",
            summary: `roll back Kong ${y.text} → ${x.text} from ${which}`,
            steps,
            deletions: nodeNames(y, n).map((r) => `${r} (cluster ${y.text}), deleted last`),
        };
    }

    const chain = upgradeChain(x, u.via, y);
    add({ kind: "preflight", resources: [names.preflight(x, y)],
        title: `preflight: database answers, \`kong migrations list\` with ${image(chain[0])} exits 5 (or 0), ` +
            `no live migrations lock, snapshot name free, ${n} node(s) of ${x.text} exist and no other Kong node runs` },
    [names.bootstrap, ...images.map(names.image)]);
    const stop = () => add({ kind: "stop", resources: [names.stop(x)], version: x,
        title: `stop cluster ${x.text} (${n} nodes, ${s.kong.drainSeconds}s to drain): downtime starts` +
            (u.onlineSnapshot ? `; then lift the read-only freeze` : `, no Admin API writes`) });
    const copy = u.snapshotStrategy === "template"
        ? `CREATE DATABASE ${names.snapshotPrefix(s.database.name, x, y)}<time> TEMPLATE ${s.database.name}`
        : `pg_dump -Fc in ${u.dumpImage} into ${u.dumpDirectory}, with its checksum`;
    const snapshot = () => add({ kind: "snapshot", resources: [names.snapshot(x, y)],
        title: u.onlineSnapshot
            ? `online snapshot while ${x.text} proxies: freeze ${s.database.name} read-only (X reconnects read-only), ${copy}; never deleted by the program`
            : `snapshot: ${copy}; never deleted by the program` });
    // Online, the snapshot comes before the stop, so the downtime window excludes it.
    if (u.onlineSnapshot) { snapshot(); stop(); } else { stop(); snapshot(); }
    for (const hop of chain) {
        add({ kind: "migrations-up", resources: [names.migrationsUp(hop)], version: hop,
            title: `kong migrations up with ${image(hop)} in a one-off container (list before: 5; after: 4 or 0)` });
        add({ kind: "migrations-finish", resources: [names.migrationsFinish(hop)], version: hop,
            title: `kong migrations finish with ${image(hop)} (list after: 0)` });
    }
    add({ kind: "nodes", resources: nodeNames(y, n), version: y,
        title: `cluster ${y.text}: ${n} node(s) of ${image(y)} beside the same database, each waited on until healthy` });
    add({ kind: "verify", resources: [names.verify(y)], version: y,
        title: `verify ${y.text}: /status on every node, \`kong migrations list\` exits 0, entity counts equal the snapshot's` +
            (s.kong.smokePath ? `, GET ${s.kong.smokePath} through each proxy` : "") });
    const path = [x, ...chain].map((v) => v.text).join(" → ");
    return {
        mode: "upgrade",
        summary: `upgrade Kong ${path} in place`,
        steps,
        deletions: nodeNames(x, n).map((r) => `${r} (cluster ${x.text}), decommissioned last`),
    };
}

/** The runbook as numbered lines, for the CLI and the `runbook` stack output. */
export function formatRunbook(r: Runbook): string[] {
    const lines = [`${r.mode}: ${r.summary}`];
    r.steps.forEach((s, i) => {
        lines.push(`${String(i + 1).padStart(2)}. ${s.resources.join(", ")}`);
        lines.push(`      ${s.title}`);
        if (s.after.length > 0) lines.push(`      waits for: ${s.after.join(", ")}`);
    });
    if (r.deletions.length > 0) {
        lines.push(`then, after every step above succeeded, the engine deletes:`);
        for (const d of r.deletions) lines.push(`    - ${d}`);
    }
    return lines;
}
