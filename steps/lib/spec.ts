// What a step program is told to do. The Pulumi program serialises a StepSpec into the
// Command's environment as KONG_UPGRADE_SPEC; secrets travel separately (see SECRET_ENV).
// Nothing secret is ever part of a spec.

/** Environment variables that carry secrets into a step program; marked secret in Pulumi. */
export const SECRET_ENV = {
    /** Kong's database password. Passed on to Kong containers by name only (`-e KONG_PG_PASSWORD`). */
    password: "KONG_PG_PASSWORD",
    /** Enterprise license, passed on by name only. */
    license: "KONG_LICENSE_DATA",
    /** The password step: the role's password to set (absent: keep the previous one, or generate one). */
    rolePassword: "KONG_UPGRADE_ROLE_PASSWORD",
} as const;

/** @pulumi/command's previous stdout on an update (addPreviousOutputInEnv): the password step's old password. */
export const PREVIOUS_STDOUT_ENV = "PULUMI_COMMAND_STDOUT";

/** Where the CA file of verify-ca/verify-full is mounted (read-only) in Kong's and pg_dump's containers. */
export const PG_CA_MOUNT = "/etc/kong-upgrade/pg-root-ca.pem";

export const SPEC_ENV = "KONG_UPGRADE_SPEC";
/**
 * Result of an earlier step, from Pulumi state: the snapshot's record for the rollback's preflight
 * and restore (which snapshot, whose, its checksum), the snapshot's or restore's for verify.
 */
export const EXPECT_ENV = "KONG_UPGRADE_EXPECT";
/**
 * The upgrade preflight's result, from Pulumi state: the catalog of migrations each hop's image
 * loads with this upgrade's settings, which the migration steps, the canary and verify classify
 * schema_meta against (lib/migrationstate.ts) instead of starting Kong for `migrations list`.
 */
export const CATALOG_ENV = "KONG_UPGRADE_CATALOGS";

/** Where Kong's database is, as seen from the machine that runs the step programs. */
export interface DbTarget {
    host: string;
    port: number;
    database: string;
    user: string;
    sslmode: "disable" | "require" | "verify-ca" | "verify-full";
    /** verify-ca/verify-full: the CA's PEM file on this machine. */
    sslRootCert?: string;
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
    /** Names of the secret KONG_* settings (kong.secretEnv): their values come from the step's secret environment. */
    secretEnv?: string[];
    /**
     * KONG_PG_* as the containers see the server. `sslRootCert`: the CA's PEM file on the Docker
     * host, mounted read-only at PG_CA_MOUNT; set means KONG_PG_SSL_VERIFY=on.
     */
    pg: { host: string; port: number; database: string; user: string; ssl: boolean; sslRootCert?: string; schema?: string };
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
    /** PGSSLMODE of pg_dump/pg_restore (libpq's default `prefer` never verifies). Default: disable. */
    sslmode?: DbTarget["sslmode"];
    /** PGSSLROOTCERT: the CA's PEM file on this machine, mounted read-only into the tools' container. */
    sslRootCert?: string;
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
        /** The versions this upgrade migrates through, in order (Y last): their pending migrations are this upgrade's own. */
        hops?: string[];
        /** `dump` snapshots: where this upgrade's snapshot would be. */
        dumpDirectory?: string;
        /**
         * Each hop's run (Y last): preflight learns the catalog of migrations each loads
         * (`kong migrations status`, Kong 3.0+) for the steps inside the window. Absent: none learnt.
         */
        hopRuns?: KongRun[];
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
    /** Before X stops: the upgrade rehearsed on a clone of the live database (steps/canary.ts). */
    | CanarySpec
    /** Hybrid: a cluster certificate and key, printed once (the Command's stdout is secret). */
    | { step: "cluster-cert"; days: number }
    /**
     * Wait until each node's /status/ready answers 200 (hybrid: a data plane holds configuration),
     * or with `path: "/status"`, until /status answers 200 (a node rolled in steady state serves again).
     */
    | { step: "ready"; cluster: ClusterRef; timeoutSeconds: number; path?: "/status" | "/status/ready" }
    /**
     * A role's password: created, prints it (given in KONG_UPGRADE_ROLE_PASSWORD, else generated
     * once); updated with another one, the role itself changes it in the server, authenticated
     * with the previous one (the previous stdout). The stdout is secret.
     */
    | {
        step: "password"; db: DbTarget;
        /** First run: check the server accepts the password ("if-running": unless nothing listens yet). */
        verifyOnCreate?: "always" | "if-running";
        /** Which setting holds the password, for the error message. */
        hint: string;
    };

export type StepName = StepSpec["step"];

/** Secret environment of a hybrid canary control plane (the cluster certificate), passed on by name. */
export const CANARY_SECRET_ENV = { clusterCert: "KONG_CLUSTER_CERT", clusterCertKey: "KONG_CLUSTER_CERT_KEY" } as const;

/**
 * The canary: clone `db` into `clone` (pg_dump streamed into pg_restore, which reads an MVCC
 * snapshot and blocks no writer), run every hop's `up` and `finish` on the clone with that hop's
 * KongRun (the exact settings the real steps get; the step points them at the clone), start one Y
 * node on the clone with ports on 127.0.0.1 only, verify it, and always remove node and clone.
 */
export interface CanarySpec {
    step: "canary";
    db: DbTarget;
    /** Name of the clone database; dropped only when its record says it is this upgrade's canary. */
    clone: string;
    stack: string;
    from: string;
    to: string;
    /** Every hop in order, as the real migrations steps run it (database: the live one). */
    hops: KongRun[];
    /** The one Y node: container name, role, graceful stop time (measured for the forecast). */
    node: { container: string; role: "traditional" | "control_plane"; drainSeconds: number };
    /** How pg_dump/pg_restore run: the dump image on the stack's network (or local tools, tests). */
    copy: Omit<DumpTarget, "directory">;
    timeoutSeconds: number;
    smokePath?: string;
    /** What the real run's snapshot does, measured on the clone for the forecast; undefined: online (outside the window). */
    snapshot?: "template" | "dump";
    /** X's run when that snapshot also takes `kong config db_export` (upgrade.declarativeExport): timed on the clone too. */
    declarativeExport?: KongRun;
}
