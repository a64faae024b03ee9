// The configuration contract: the settings each key (`kong-upgrade:kong`, `:upgrade`, `:database`,
// `:docker`) holds once validated and completed with defaults, and the error that lists every problem.
import { KongVersion } from "../versions";

export class ConfigError extends Error {
    constructor(readonly problems: string[]) {
        super(problems.length === 1
            ? `Invalid configuration: ${problems[0]}`
            : `Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    }
}

export interface KongPorts {
    /** Host port of node 0's proxy (HTTP). Default 8000. */
    proxy: number;
    /** Host port of node 0's Admin API. Default 8001. */
    admin: number;
    /** Host port of node 0's Status API (`/status`, `/status/ready`). Default 8100. */
    status: number;
    /** Node i publishes each port at base + i × stride. Default 10. */
    stride: number;
    /** Hybrid only: host port of data plane 0's proxy. Default 9000. */
    dpProxy: number;
    /** Hybrid only: host port of data plane 0's Status API. Default 9100. */
    dpStatus: number;
    /**
     * Hybrid on several Docker hosts only: host port of control plane 0's cluster listener (8005),
     * which data planes on other hosts connect to. Default 8005.
     */
    cluster: number;
}

export type KongRole = "traditional" | "hybrid";

export interface KongSettings {
    /** The version serving now: cluster X. Required. */
    version: KongVersion;
    /** Image repository; the tag is the version. Default "kong" (`kong/kong-gateway` for Enterprise). */
    image: string;
    /** Nodes in the cluster; in hybrid mode, its control planes. Default 2 (hybrid: 1). */
    nodes: number;
    /** "traditional" (default) or "hybrid": control planes on the database, data planes without. */
    role: KongRole;
    /** Hybrid only: data planes, moved to Y one at a time after Y's control planes verify. Default 2. */
    dataPlanes: number;
    /** Hybrid only: cluster certificate and key (PEM, secrets). Default: generated once, kept in state as secrets. */
    clusterCert?: string;
    clusterCertKey?: string;
    /** KONG_PLUGINS for nodes and migrations alike (kong-facts §2.3). Default "bundled". */
    plugins: string;
    /** Extra KONG_* environment for every node and migration run, kept in plain text. Default {}. */
    env: Record<string, string>;
    /**
     * Secret KONG_* settings (`KONG_PASSWORD`, `KONG_ADMIN_GUI_SESSION_CONF`…) for every node and
     * migration run, values byte for byte. Read from a secret config value: whoever passes them on
     * wraps each in `pulumi.secret` and hands them to docker by name, never in a spec or argv.
     * Default {}.
     */
    secretEnv: Record<string, string>;
    ports: KongPorts;
    /** Host address the Admin and Status APIs are published on. Default "127.0.0.1". */
    adminAddress: string;
    /** Host address the proxy is published on. Default "0.0.0.0". */
    proxyAddress: string;
    /** Seconds a node gets to drain when stopped. Default 30. */
    drainSeconds: number;
    /** `--lock-timeout` of migration runs, above the longest expected migration. Default 600. */
    lockTimeoutSeconds: number;
    /** Seconds a node may take to become healthy. Default 120. */
    healthTimeoutSeconds: number;
    /**
     * Hybrid on several Docker hosts: `host:port` data planes connect to (a load balancer in front
     * of the control planes). Default: control plane 0's host address and cluster port.
     */
    clusterControlPlane?: string;
    /** Optional path requested through each node's proxy by verify, expecting a non-5xx answer. */
    smokePath?: string;
    /** The Enterprise license (secret); set means KONG_LICENSE_DATA is passed. */
    license?: string;
}

export type SnapshotStrategy = "template" | "dump";
export type RestoreStrategy = "rename" | "copy";

export interface UpgradeSettings {
    /** Target version: cluster Y. */
    to: KongVersion;
    /** Intermediate versions for a longer path, in order. Default []. */
    via: KongVersion[];
    /** Roll the from → to upgrade back. Default false. */
    rollback: boolean;
    /** Snapshot to restore from on rollback. Default: the newest of this upgrade. */
    snapshot?: string;
    /** "template" (CREATE DATABASE … TEMPLATE, default) or "dump" (pg_dump -Fc in a container). */
    snapshotStrategy: SnapshotStrategy;
    /** "rename" (constant time, default; the snapshot becomes the database) or "copy" (keeps it). */
    restoreStrategy: RestoreStrategy;
    /** End other sessions on the database before the snapshot copy. Default false. */
    terminateSessions: boolean;
    /**
     * Take the snapshot while X still proxies: the database is frozen read-only first (X's sessions
     * are ended and it reconnects read-only), so downtime starts after the snapshot. Default false.
     */
    onlineSnapshot: boolean;
    /** Host folder for `dump` snapshots. Default "./snapshots". */
    dumpDirectory: string;
    /** PostgreSQL client image that runs pg_dump/pg_restore for `dump`. Default "postgres:15". */
    dumpImage: string;
    /** Also write `kong config db_export` (with X's image) into dumpDirectory beside the snapshot. Default false. */
    declarativeExport: boolean;
    /**
     * Rehearse the whole upgrade on a clone of the live database before X stops (every hop's up and
     * finish, one Y node, verify), and forecast the downtime window from it. Default true.
     */
    canary: boolean;
}

export type SslMode = "disable" | "require" | "verify-ca" | "verify-full";

export interface DatabaseSettings {
    /** "embedded" (PostgreSQL container on a private network, default) or "external". */
    mode: "embedded" | "external";
    /** Server address as seen from the machine running Pulumi. Embedded: 127.0.0.1. */
    host: string;
    /** Port as seen from the machine running Pulumi. Embedded default 15432, external 5432. */
    port: number;
    /** Address the Kong containers use. Embedded: the network alias; external: `host`. */
    containerHost: string;
    /** Port the Kong containers use. */
    containerPort: number;
    /** Kong's database. Default "kong". */
    name: string;
    /** Kong's role. Default "kong". */
    user: string;
    /** Kong's password (secret), byte for byte. Required. */
    password: string;
    /** KONG_PG_SSL / sslmode. Default "disable". */
    sslmode: SslMode;
    /**
     * CA certificate file (PEM) on the machine running Pulumi that verify-ca / verify-full check
     * the server against; as written (a relative path starts at the project folder). Required for
     * those modes, refused for the others; its presence is checked at preview.
     */
    sslRootCert?: string;
    /** KONG_PG_SCHEMA; unset means the server's search_path decides. */
    schema?: string;
    /** Embedded only: the PostgreSQL image. Default "postgres:15". */
    image: string;
    /** Embedded only: the superuser password (secret), byte for byte. Unset: the program provides one. */
    adminPassword?: string;
}

/** One Docker host of `docker.hosts`. */
export interface DockerHost {
    /** Stable name, used in resource names and placement. Default: derived from the endpoint. */
    name: string;
    /** `unix://…`, `tcp://host:port` (TLS: `certPath` required) or `ssh://user@host`. */
    endpoint: string;
    /** tcp:// only: folder holding ca.pem, cert.pem and key.pem (Docker's DOCKER_CERT_PATH layout). */
    certPath?: string;
    /**
     * Address at which the machine running Pulumi, and containers on the other hosts, reach the
     * ports this host publishes. Default: the endpoint's host name; 127.0.0.1 for unix://.
     */
    address: string;
    /**
     * The lowest node index this host takes. Default 0. When adding a host to a running cluster,
     * set it to the current kong.nodes: no existing node moves, new nodes go to the new host.
     */
    firstNode: number;
    /** The same for data planes (hybrid). Default 0. */
    firstDataPlane: number;
}

export interface DockerSettings {
    /**
     * Docker hosts in the order they joined. Empty (the default): one host, the Docker CLI's and
     * provider's own default (DOCKER_HOST, else the local socket), exactly as without this key.
     */
    hosts: DockerHost[];
}

export interface Settings {
    stack: string;
    kong: KongSettings;
    upgrade?: UpgradeSettings;
    database: DatabaseSettings;
    docker: DockerSettings;
    /** The Docker network the cluster and the embedded database share (one per host, same name). */
    network: string;
}

/** The parsed JSON of each project config key; anything may be missing or mistyped. */
export interface RawConfig {
    kong?: unknown;
    upgrade?: unknown;
    database?: unknown;
    docker?: unknown;
    /** Every other key set under the project's namespace (they are all mistakes). */
    otherKeys?: string[];
}


/** The embedded server's network alias: Kong's containers reach the database by this name. */
export const EMBEDDED_DATABASE_ALIAS = "kong-database";
