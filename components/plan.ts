// Step planning: which resources a configuration declares, in which order, and what the engine
// deletes at the end. Pure: the components build exactly these steps, and `npm run plan` and the
// `runbook` stack output print them.
import { Settings } from "./config";
import { hostSuffix, placement, toolsHost } from "./placement";
import { names } from "./names";
import type { NodeKind } from "./names";
import { KongVersion, upgradeChain } from "./versions";

// Resource names live in names.ts (placement.ts needs NodeKind without importing the planner);
// re-exported here so existing imports keep working.
export { names };
export type { NodeKind };

export type Mode = "steady" | "upgrade" | "rollback";

export type StepKind =
    | "database" | "images" | "bootstrap" | "preflight" | "stop" | "snapshot"
    | "migrations-up" | "migrations-finish" | "nodes" | "start" | "restore" | "verify"
    // the upgrade rehearsed on a clone of the live database before X stops
    | "canary"
    // hybrid mode
    | "cluster-cert" | "data-plane" | "stop-data-plane" | "start-data-plane" | "ready";

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
    /** Data-plane steps: which data plane. */
    index?: number;
}

export interface Runbook {
    mode: Mode;
    summary: string;
    steps: PlannedStep[];
    /** Resources no longer declared: the engine deletes them after every step above succeeded. */
    deletions: string[];
}

/** What the nodes of a cluster are called: control planes in hybrid mode, nodes otherwise. */
export function clusterNodeKind(s: Settings): NodeKind {
    return s.kong.role === "hybrid" ? "cp" : "node";
}

function nodeNames(v: KongVersion, count: number, kind: NodeKind = "node"): string[] {
    return Array.from({ length: count }, (_, i) => names.node(v, i, kind));
}

/** The versions whose images the run needs, in order of use. */
export function imagesNeeded(s: Settings): KongVersion[] {
    const u = s.upgrade;
    if (!u) return [s.kong.version];
    if (u.rollback) return [s.kong.version, u.to];
    return [s.kong.version, ...upgradeChain(s.kong.version, u.via, u.to)];
}

/** Image resources of `versions`: one per version, or one per version and host with docker.hosts. */
export function imageResources(s: Settings, versions: KongVersion[]): string[] {
    const hosts = s.docker.hosts;
    if (hosts.length === 0) return versions.map((v) => names.image(v));
    return hosts.flatMap((h) => versions.map((v) => names.image(v, hostSuffix(h))));
}

/** " (0, 2 on a; 1 on b)": which host runs which node, when there are several hosts to choose from. */
function where(s: Settings, kind: NodeKind): string {
    const placed = placement(s, kind);
    if (s.docker.hosts.length < 2 || placed.length === 0) return "";
    const by = new Map<string, number[]>();
    placed.forEach((h, i) => by.set(h.name, [...(by.get(h.name) ?? []), i]));
    return ` (${[...by].map(([h, is]) => `${is.join(", ")} on ${h}`).join("; ")})`;
}

/** The runbook of a validated configuration. */
export function planRunbook(s: Settings): Runbook {
    const x = s.kong.version;
    const n = s.kong.nodes;
    const hybrid = s.kong.role === "hybrid";
    const kind = clusterNodeKind(s);
    const what = hybrid ? "control plane(s)" : "node(s)";
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
    const hosts = s.docker.hosts;
    const imageNames = imageResources(s, images);
    add({ kind: "images", resources: imageNames,
        title: `images present before anything stops: ${images.map(image).join(", ")}` +
            (hosts.length > 0 ? ` on every Docker host (${hosts.map((h) => h.name).join(", ")})` : "") }, []);
    add({ kind: "bootstrap", resources: [names.bootstrap],
        title: `kong migrations bootstrap with ${image(x)}, only if \`kong migrations list\` says the database needs it (exit 3)` },
        [names.database, names.image(x, hostSuffix(toolsHost(s)))]);
    const certs = hybrid && s.kong.clusterCert === undefined;
    if (certs) {
        add({ kind: "cluster-cert", resources: [names.clusterCert],
            title: `cluster certificate and key for control and data planes, generated once (openssl, 1095 days), kept in state as secrets` }, []);
    }
    const cpAfter = (base: string[]) => (certs ? [...base, names.clusterCert] : base);
    /** Data planes of `v`, one at a time: stop the old one (if any), start the new, wait until it has configuration. */
    const dataPlaneHosts = placement(s, "dp");
    const rollDataPlanes = (v: KongVersion, from: KongVersion | undefined, restart: boolean) => {
        for (let i = 0; i < s.kong.dataPlanes; i++) {
            if (from) {
                add({ kind: "stop-data-plane", resources: [names.stopDataPlane(from, i)], version: from, index: i,
                    title: `stop data plane ${i} of ${from.text}; the others keep serving` });
            }
            const host = hosts.length > 1 ? ` on ${dataPlaneHosts[i].name}` : "";
            add({ kind: "data-plane", resources: [names.node(v, i, "dp")], version: v, index: i,
                title: `data plane ${i} of ${image(v)}${host} (KONG_ROLE=data_plane, database off), waited on until healthy` });
            if (restart) {
                add({ kind: "start-data-plane", resources: [names.startDataPlane(v, i)], version: v, index: i,
                    title: `start data plane ${i} of ${v.text} (also one a failed run only stopped)` });
            }
            add({ kind: "ready", resources: [names.ready(v, i)], version: v, index: i,
                title: `data plane ${i} of ${v.text}: /status/ready says it holds configuration from the control plane` });
        }
    };
    const u = s.upgrade;

    if (!u) {
        // Rolling: node i+1 waits until node i answers /status, so a change that replaces nodes
        // (Docker replaces delete-first) takes down one at a time.
        add({ kind: "nodes", resources: nodeNames(x, n, kind).flatMap((node) => [node, names.status(node)]), version: x,
            title: `cluster ${x.text}: ${n} ${what} of ${image(x)}${where(s, kind)}, one at a time: each waited on until healthy ` +
                `and answering /status (${names.status(names.node(x, 0, kind))}…) before the next is created or replaced` }, cpAfter([names.bootstrap]));
        add({ kind: "verify", resources: [names.verify(x)], version: x,
            title: `verify ${x.text}: /status says database.reachable on every ${hybrid ? "control plane" : "node"}, \`kong migrations list\` exits 0` });
        if (hybrid) rollDataPlanes(x, undefined, false);
        return { mode: "steady", summary: `Kong ${x.text} (${n} ${hybrid ? `control planes, ${s.kong.dataPlanes} data planes` : "nodes"}), no upgrade requested`, steps, deletions: [] };
    }

    const y = u.to;
    const dataPlaneNames = (v: KongVersion) => (hybrid ? nodeNames(v, s.kong.dataPlanes, "dp") : []);
    if (u.rollback) {
        const which = u.snapshot ? `snapshot ${u.snapshot}` : `the snapshot the ${x.text} → ${y.text} upgrade recorded`;
        if (!u.snapshot) {
            // The upgrade's snapshot resource, declared unchanged: its record (which snapshot,
            // whose, its checksum) flows from state into preflight and restore. Once it has left
            // the state (after promotion), it would run again and refuses: the database is not at X.
            add({ kind: "snapshot", resources: [names.snapshot(x, y)],
                title: `snapshot record of ${x.text} → ${y.text} kept in state from the upgrade (unchanged, nothing runs); ` +
                    `after promotion, name the snapshot with upgrade.snapshot` }, [names.bootstrap, ...imageNames]);
        }
        add({ kind: "preflight", resources: [names.rollbackPreflight(x, y)],
            title: `preflight: ${which} exists and is this stack's, server's and database's; the database answers, no migration holds the lock` },
        [names.bootstrap, ...imageNames, ...(u.snapshot ? [] : [names.snapshot(x, y)])]);
        // Data planes go back first: an older data plane is accepted by a newer control plane.
        if (hybrid) rollDataPlanes(x, y, true);
        add({ kind: "stop", resources: [names.stop(y)], version: y,
            title: `stop cluster ${y.text} (${n} ${what}, ${s.kong.drainSeconds}s to drain) and confirm it is down` });
        add({ kind: "restore", resources: [names.restore(x, y)],
            title: `restore ${which} at database level by ${u.restoreStrategy === "rename" ? "renaming it into place" : "template copy"}; ` +
                `the current database is set aside as ${s.database.name}_failed_<time>, never dropped` });
        add({ kind: "nodes", resources: nodeNames(x, n, kind), version: x,
            title: `cluster ${x.text}: ${n} ${what} of ${image(x)}${where(s, kind)} declared again` });
        add({ kind: "start", resources: [names.start(x)], version: x,
            title: `start cluster ${x.text}'s ${what} (also those a failed upgrade only stopped) and wait until healthy` });
        add({ kind: "verify", resources: [names.verify(x)], version: x,
            title: `verify ${x.text}: /status on every ${hybrid ? "control plane" : "node"}, \`kong migrations list\` exits 0, entity counts equal the snapshot's` });
        return {
            mode: "rollback",
            summary: `roll back Kong ${y.text} → ${x.text} from ${which}`,
            steps,
            deletions: [...nodeNames(y, n, kind), ...dataPlaneNames(y)].map((r) => `${r} (cluster ${y.text}), deleted last`),
        };
    }

    const chain = upgradeChain(x, u.via, y);
    add({ kind: "preflight", resources: [names.preflight(x, y)],
        title: `preflight: database answers, \`kong migrations list\` with ${image(chain[0])} exits 5 (or 0), ` +
            `no live migrations lock, snapshot name free, ${n} ${what} of ${x.text} exist and no other Kong node runs` },
    [names.bootstrap, ...imageNames]);
    if (u.canary) {
        add({ kind: "canary", resources: [names.canary(x, y)], version: y,
            title: `canary while ${x.text} serves: clone ${s.database.name} into ${names.canaryClone(s.stack, s.database.name, x, y)} (pg_dump | pg_restore, ` +
                `no lock X waits on), every hop's up and finish on the clone (${chain.map((v) => v.text).join(", ")}), one ${hybrid ? "control plane" : "node"} of ` +
                `${image(y)} on it (ports on 127.0.0.1 only), verified; clone and node always removed; forecasts the downtime window` },
        certs ? [names.preflight(x, y), names.clusterCert] : undefined);
    }
    const stop = () => add({ kind: "stop", resources: [names.stop(x)], version: x,
        title: `stop cluster ${x.text} (${n} ${what}, ${s.kong.drainSeconds}s to drain): downtime starts` +
            (hybrid ? ` for configuration changes; data planes keep proxying from their cached configuration` : "") +
            (u.onlineSnapshot ? `; then lift the read-only freeze` : `, no Admin API writes`) });
    const copy = u.snapshotStrategy === "template"
        ? `CREATE DATABASE ${names.snapshotPrefix(s.stack, s.database.name, x, y)}<time> TEMPLATE ${s.database.name}`
        : `pg_dump -Fc in ${u.dumpImage} into ${u.dumpDirectory}/${s.stack}/…, with its checksum`;
    const snapshot = () => add({ kind: "snapshot", resources: [names.snapshot(x, y)],
        title: u.onlineSnapshot
            ? `online snapshot while ${x.text} proxies: freeze ${s.database.name} read-only (X reconnects read-only), ${copy}; never deleted by the program`
            : `snapshot: refuses unless the database is at ${x.text}; ${copy}; never deleted by the program` });
    // Online, the snapshot comes before the stop, so the downtime window excludes it.
    if (u.onlineSnapshot) { snapshot(); stop(); } else { stop(); snapshot(); }
    for (const hop of chain) {
        add({ kind: "migrations-up", resources: [names.migrationsUp(hop)], version: hop,
            title: `kong migrations up with ${image(hop)} in a one-off container (list before: 5; after: 4 or 0)` });
        add({ kind: "migrations-finish", resources: [names.migrationsFinish(hop)], version: hop,
            title: `kong migrations finish with ${image(hop)} (list after: 0)` });
    }
    add({ kind: "nodes", resources: nodeNames(y, n, kind), version: y,
        title: `cluster ${y.text}: ${n} ${what} of ${image(y)}${where(s, kind)} beside the same database, each waited on until healthy` });
    add({ kind: "verify", resources: [names.verify(y)], version: y,
        title: `verify ${y.text}: /status on every ${hybrid ? "control plane" : "node"}, \`kong migrations list\` exits 0, entity counts equal the snapshot's` +
            (s.kong.smokePath && !hybrid ? `, GET ${s.kong.smokePath} through each proxy` : "") });
    // Data planes move only after Y's control planes verified: never ahead of their control plane.
    if (hybrid) rollDataPlanes(y, x, false);
    const path = [x, ...chain].map((v) => v.text).join(" → ");
    return {
        mode: "upgrade",
        summary: `upgrade Kong ${path} in place` + (u.canary ? "" : "; no canary (upgrade.canary: false): a migration that fails on this data fails after X stopped"),
        steps,
        deletions: [...nodeNames(x, n, kind), ...dataPlaneNames(x)].map((r) => `${r} (cluster ${x.text}), decommissioned last`),
    };
}

/**
 * Hybrid invariant (kong-facts §7): at every step of the runbook, no data plane runs a newer
 * minor than the control plane serving then. Returns the violations, empty when the order holds.
 */
export function dataPlaneOrderProblems(r: Runbook, runningAtStart: KongVersion | undefined): string[] {
    let controlPlane = runningAtStart;
    const problems: string[] = [];
    for (const step of r.steps) {
        if (step.kind === "nodes") controlPlane = step.version;
        if (step.kind === "stop") controlPlane = undefined; // stopped: data planes serve from their cache
        if (step.kind === "data-plane" && step.version) {
            const cp = controlPlane;
            if (!cp || step.version.major > cp.major || (step.version.major === cp.major && step.version.minor > cp.minor)) {
                problems.push(`data plane ${step.index} would start on ${step.version.text} while ${cp ? `control plane ${cp.text} serves` : "no control plane runs"}`);
            }
        }
    }
    return problems;
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
