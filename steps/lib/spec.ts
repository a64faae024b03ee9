// What a step program is told to do. The Pulumi program serialises a StepSpec into the
// Command's environment as KONG_UPGRADE_SPEC; secrets travel separately (see SECRET_ENV).
// Nothing secret is ever part of a spec.

/** Environment variables that carry secrets into a step program; marked secret in Pulumi. */
export const SECRET_ENV = {
    /** Kong's database password. Passed on to Kong containers by name only (`-e KONG_PG_PASSWORD`). */
    password: "KONG_PG_PASSWORD",
    /** Enterprise license, passed on by name only. */
    license: "KONG_LICENSE_DATA",
} as const;

export const SPEC_ENV = "KONG_UPGRADE_SPEC";
/**
 * Result of an earlier step, from Pulumi state: the snapshot's record for the rollback's preflight
 * and restore (which snapshot, whose, its checksum), the snapshot's or restore's for verify.
 */
export const EXPECT_ENV = "KONG_UPGRADE_EXPECT";

/** Where Kong's database is, as seen from the machine that runs the step programs. */
export interface DbTarget {
    host: string;
    port: number;
    database: string;
    user: string;
    sslmode: "disable" | "require" | "verify-ca" | "verify-full";
    schema?: string;
}

/**
 * One Docker host of `docker.hosts`, as the docker CLI is pointed at it (DOCKER_HOST, and for
 * TLS DOCKER_TLS_VERIFY with DOCKER_CERT_PATH). Absent everywhere: the CLI's own default host.
 */
export interface DockerEndpoint {
    host: string;
    certPath?: string;
}

/** How to run a `kong` command of one version against the shared database. */
export interface KongRun {
    /** Full image reference, e.g. kong:3.7.1. */
    image: string;
    version: string;
    /** Docker network shared with the database. */
    network: string;
    /** KONG_PLUGINS: the same for nodes and migrations (kong-facts §2.3). */
    plugins: string;
    /** Extra non-secret KONG_* settings. */
    env: Record<string, string>;
    /** KONG_PG_* as the containers see the server. */
    pg: { host: string; port: number; database: string; user: string; ssl: boolean; schema?: string };
    lockTimeoutSeconds: number;
    /** Whether KONG_LICENSE_DATA is to be passed through. */
    license: boolean;
    /** The Docker host that runs the one-off container. Default: the CLI's own. */
    docker?: DockerEndpoint;
}

/** Where `dump` snapshots are written, and how pg_dump reaches the server from its container. */
export interface DumpTarget {
    image: string;
    network: string;
    directory: string;
    host: string;
    port: number;
    /** The Docker host that runs pg_dump/pg_restore; it must be this machine (bind mount). Default: the CLI's own. */
    docker?: DockerEndpoint;
}

/** One Kong node, with the host URLs the step programs reach it at. */
export interface NodeRef {
    container: string;
    statusUrl: string;
    proxyUrl: string;
    adminUrl: string;
    /** The Docker host it runs on. Default: the CLI's own. */
    docker?: DockerEndpoint;
}

export interface ClusterRef {
    stack: string;
    version: string;
    nodes: NodeRef[];
    /** Every Docker host of the stack, where preflight looks for other Kong nodes. Default: the CLI's own. */
    hosts?: DockerEndpoint[];
}

export type StepSpec =
    | { step: "bootstrap"; db: DbTarget; kong: KongRun }
    | {
        step: "preflight"; mode: "upgrade"; db: DbTarget; kong: KongRun; cluster: ClusterRef;
        to: string; snapshotPrefix: string;
    }
    | {
        step: "preflight"; mode: "rollback"; db: DbTarget; cluster: ClusterRef; from: string;
        snapshotPrefix: string; snapshot?: string; dumpDirectory?: string;
        /** Whose snapshots may be restored: only this stack's (with the server and database). */
        stack: string;
    }
    | {
        step: "stop"; cluster: ClusterRef; drainSeconds: number;
        /** After an online snapshot: lift the read-only freeze of this database once X is down, or if stopping fails. */
        liftFreeze?: DbTarget;
    }
    | { step: "start"; cluster: ClusterRef; timeoutSeconds: number }
    | {
        step: "snapshot"; db: DbTarget; strategy: "template" | "dump"; prefix: string; from: string; to: string;
        terminateSessions: boolean; dump?: DumpTarget;
        /** Recorded in the snapshot: whose it is and the path it belongs to. */
        stack: string; hops: string[];
        /** `kong migrations list` with the first hop's image proves the database is at X (not migrated yet). */
        firstHop?: KongRun;
        /** X still runs: freeze the database read-only, end X's sessions, then copy. */
        online?: boolean;
        /** Also `kong config db_export` with X's image into this folder (a secondary safeguard). */
        declarativeExport?: { kong: KongRun; directory: string };
    }
    | { step: "migrations"; phase: "up" | "finish"; db: DbTarget; kong: KongRun }
    | {
        step: "restore"; db: DbTarget; strategy: "rename" | "copy"; prefix: string; snapshot?: string;
        dump?: DumpTarget;
        /** Only this stack's snapshots are restored (with the server and database they were taken of). */
        stack: string;
    }
    | { step: "verify"; db: DbTarget; kong: KongRun; cluster: ClusterRef; timeoutSeconds: number; smokePath?: string }
    /** Hybrid: a cluster certificate and key, printed once (the Command's stdout is secret). */
    | { step: "cluster-cert"; days: number }
    /** Hybrid: wait until each node's /status/ready answers 200 (a data plane holds configuration). */
    | { step: "ready"; cluster: ClusterRef; timeoutSeconds: number };

export type StepName = StepSpec["step"];
