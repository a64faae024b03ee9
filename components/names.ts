// Resource names: every resource name says which step or version it is. A module of its own so
// placement.ts and cluster.ts can name node kinds without importing the planner.
import { KongVersion, versionSlug } from "./versions";
import { canaryCloneName, snapshotPrefix } from "../steps/lib/snapshots";

/** A node's kind in its name: traditional node, hybrid control plane or data plane. */
export type NodeKind = "node" | "cp" | "dp";

export const names = {
    cluster: (v: KongVersion) => `kong-${versionSlug(v)}`,
    dataPlanes: (v: KongVersion) => `kong-${versionSlug(v)}-data-planes`,
    node: (v: KongVersion, i: number, kind: NodeKind = "node") => `kong-${versionSlug(v)}-${kind}-${i}`,
    /** Docker's container name: the stack keeps two stacks on one host apart. */
    container: (stack: string, v: KongVersion, i: number, kind: NodeKind = "node") => `${stack}-kong-${versionSlug(v)}-${kind}-${i}`,
    clusterCert: "cluster-cert",
    stopDataPlane: (v: KongVersion, i: number) => `stop-kong-${versionSlug(v)}-dp-${i}`,
    startDataPlane: (v: KongVersion, i: number) => `start-kong-${versionSlug(v)}-dp-${i}`,
    ready: (v: KongVersion, i: number) => `ready-kong-${versionSlug(v)}-dp-${i}`,
    /** Steady state: the wait until a node answers /status, before the next node may be replaced. */
    status: (node: string) => `status-${node}`,
    /** A version's image; with docker.hosts, one per host. */
    image: (v: KongVersion, host?: string) => `image-kong-${versionSlug(v)}${host ? `-on-${host}` : ""}`,
    /** The stack's Docker network; with docker.hosts, one per host (same Docker name). */
    network: (host?: string) => (host ? `network-${host}` : "network"),
    /** The Docker provider of one host of docker.hosts. */
    dockerProvider: (host: string) => `docker-${host}`,
    preflight: (from: KongVersion, to: KongVersion) => `preflight-${versionSlug(from)}-to-${versionSlug(to)}`,
    rollbackPreflight: (from: KongVersion, to: KongVersion) => `preflight-rollback-${versionSlug(to)}-to-${versionSlug(from)}`,
    stop: (v: KongVersion) => `stop-kong-${versionSlug(v)}`,
    start: (v: KongVersion) => `start-kong-${versionSlug(v)}`,
    snapshot: (from: KongVersion, to: KongVersion) => `snapshot-${versionSlug(from)}-to-${versionSlug(to)}`,
    migrationsUp: (v: KongVersion) => `migrations-up-${versionSlug(v)}`,
    migrationsFinish: (v: KongVersion) => `migrations-finish-${versionSlug(v)}`,
    restore: (from: KongVersion, to: KongVersion) => `restore-${versionSlug(from)}-from-${versionSlug(to)}`,
    verify: (v: KongVersion) => `verify-kong-${versionSlug(v)}`,
    canary: (from: KongVersion, to: KongVersion) => `canary-${versionSlug(from)}-to-${versionSlug(to)}`,
    /**
     * The canary's clone database: the only database the program ever drops, and only with its
     * record. A hash of stack and database, as in snapshot names, keeps it apart (steps/lib/snapshots.ts).
     */
    canaryClone: (stack: string, db: string, from: KongVersion, to: KongVersion) => canaryCloneName(stack, db, from.text, to.text),
    /** Docker's name of the canary's one Y node. */
    canaryContainer: (stack: string, to: KongVersion) => `${stack}-kong-canary-${versionSlug(to)}`,
    bootstrap: "bootstrap",
    database: "database",
    /**
     * Prefix of one upgrade's snapshots of one stack's database; a UTC timestamp completes the
     * name. Built to fit 63 bytes, with a hash of stack and database (steps/lib/snapshots.ts).
     */
    snapshotPrefix: (stack: string, db: string, from: KongVersion, to: KongVersion) => snapshotPrefix(stack, db, from.text, to.text),
};
