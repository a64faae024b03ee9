// The configuration contract (`kong-upgrade:kong`, `:upgrade`, `:database`, `:docker`) and its validation.
// Pure: takes the parsed JSON of each key, returns typed settings with defaults applied, or throws
// a ConfigError naming every problem and what to change. Runs before any resource exists, so a
// wrong request fails `pulumi preview` and changes nothing.
import { KongVersion, VersionError, compareVersions, parseVersion, upgradeChain } from "./versions";

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
    /** Extra KONG_* environment for every node and migration run. Default {}. */
    env: Record<string, string>;
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
    /** Kong's password (secret). Required. */
    password: string;
    /** KONG_PG_SSL / sslmode. Default "disable". */
    sslmode: SslMode;
    /** KONG_PG_SCHEMA; unset means the server's search_path decides. */
    schema?: string;
    /** Embedded only: the PostgreSQL image. Default "postgres:15". */
    image: string;
    /** Embedded only: the superuser password (secret). Default: `password`. */
    adminPassword: string;
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

export const EMBEDDED_DATABASE_ALIAS = "kong-database";

const KONG_KEYS = ["version", "image", "nodes", "plugins", "env", "ports", "adminAddress", "proxyAddress",
    "drainSeconds", "lockTimeoutSeconds", "healthTimeoutSeconds", "smokePath", "license", "role", "dataPlanes",
    "clusterCert", "clusterCertKey", "clusterControlPlane"] as const;
const PORT_KEYS = ["proxy", "admin", "status", "stride", "dpProxy", "dpStatus", "cluster"] as const;
const UPGRADE_KEYS = ["to", "via", "rollback", "snapshot", "snapshotStrategy", "restoreStrategy",
    "terminateSessions", "onlineSnapshot", "dumpDirectory", "dumpImage", "declarativeExport", "canary"] as const;
const DATABASE_KEYS = ["mode", "host", "port", "containerHost", "name", "user", "password", "sslmode",
    "schema", "image", "adminPassword"] as const;
const DOCKER_KEYS = ["hosts"] as const;
const HOST_KEYS = ["name", "host", "certPath", "address", "firstNode", "firstDataPlane"] as const;
export const ROOT_KEYS = ["kong", "upgrade", "database", "docker"] as const;

type Obj = Record<string, unknown>;

/** Collects problems while reading one config object, so all of them are reported at once. */
class Reader {
    constructor(private readonly problems: string[], private readonly prefix: string, private readonly obj: Obj) {}

    unknownKeys(known: readonly string[], hint = ""): void {
        for (const k of Object.keys(this.obj)) {
            if (!known.includes(k)) {
                const near = known.find((c) => closeEnough(c, k));
                this.problems.push(`unknown key ${this.prefix}.${k}` +
                    (near ? ` (did you mean ${this.prefix}.${near}?)` : `; known keys: ${known.join(", ")}`) + hint);
            }
        }
    }

    string(key: string, fallback?: string): string | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return fallback;
        if (typeof v !== "string" || v.trim() === "") {
            this.problems.push(`${this.prefix}.${key} must be a non-empty string, not ${JSON.stringify(v)}`);
            return fallback;
        }
        return v.trim();
    }

    oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
        const v = this.string(key);
        if (v === undefined) return fallback;
        if (!(allowed as readonly string[]).includes(v)) {
            this.problems.push(`${this.prefix}.${key} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, not "${v}"`);
            return fallback;
        }
        return v as T;
    }

    integer(key: string, fallback: number, min: number, max: number): number {
        let v = this.obj[key];
        if (v === undefined || v === null) return fallback;
        if (typeof v === "string" && /^\d+$/.test(v)) v = Number(v); // `pulumi config set` without --path typing
        if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
            this.problems.push(`${this.prefix}.${key} must be a whole number from ${min} to ${max}, not ${JSON.stringify(this.obj[key])}`);
            return fallback;
        }
        return v;
    }

    boolean(key: string, fallback: boolean): boolean {
        const v = this.obj[key];
        if (v === undefined || v === null) return fallback;
        if (v === "true" || v === "false") return v === "true";
        if (typeof v !== "boolean") {
            this.problems.push(`${this.prefix}.${key} must be true or false, not ${JSON.stringify(v)}`);
            return fallback;
        }
        return v;
    }

    object(key: string): Obj | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return undefined;
        if (!isObject(v)) {
            this.problems.push(`${this.prefix}.${key} must be an object, not ${JSON.stringify(v)}`);
            return undefined;
        }
        return v;
    }

    version(key: string): KongVersion | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return undefined;
        try {
            return parseVersion(v, `${this.prefix}.${key}`);
        } catch (e) {
            this.problems.push((e as Error).message);
            return undefined;
        }
    }
}

function isObject(v: unknown): v is Obj {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** One edit (insert, delete, substitute or swap) apart: catches `nodez`, `verison`. */
function closeEnough(a: string, b: string): boolean {
    if (a === b) return false;
    if (Math.abs(a.length - b.length) > 1) return false;
    const la = a.toLowerCase();
    const lb = b.toLowerCase();
    if (la === lb) return true;
    let i = 0;
    while (i < la.length && la[i] === lb[i]) i++;
    const tail = (x: string, n: number) => x.slice(i + n);
    return tail(la, 1) === tail(lb, 1) || tail(la, 1) === tail(lb, 0) || tail(la, 0) === tail(lb, 1) ||
        (la[i] === lb[i + 1] && la[i + 1] === lb[i] && tail(la, 2) === tail(lb, 2));
}

function rootObject(problems: string[], key: string, raw: unknown, required: boolean): Obj | undefined {
    if (raw === undefined || raw === null) {
        if (required) problems.push(`kong-upgrade:${key} is not set; see README "Configuration"`);
        return required ? {} : undefined;
    }
    if (!isObject(raw)) {
        problems.push(`kong-upgrade:${key} must be an object (pulumi config set --path ${key}.<field> …), not ${JSON.stringify(raw)}`);
        return required ? {} : undefined;
    }
    return raw;
}

const ADDRESS_PATTERN = /^(\d{1,3}\.){3}\d{1,3}$|^::1?$|^\[?[0-9a-fA-F:]+\]?$/;
const IDENTIFIER_PATTERN = /^[a-z_][a-z0-9_]{0,47}$/;

/** Validates and completes the configuration. Throws ConfigError with every problem found. */
export function readSettings(raw: RawConfig, stack: string): Settings {
    const problems: string[] = [];
    for (const k of raw.otherKeys ?? []) {
        const near = ROOT_KEYS.find((c) => closeEnough(c, k));
        problems.push(`unknown key kong-upgrade:${k}` + (near ? ` (did you mean kong-upgrade:${near}?)` : `; known keys: ${ROOT_KEYS.join(", ")}`));
    }

    const kongObj = rootObject(problems, "kong", raw.kong, true)!;
    const k = new Reader(problems, "kong", kongObj);
    k.unknownKeys(KONG_KEYS);
    const version = k.version("version");
    if (kongObj.version === undefined) problems.push(`kong.version is required: the version cluster X runs now, e.g. "3.4.3"`);
    const portsObj = k.object("ports") ?? {};
    const p = new Reader(problems, "kong.ports", portsObj);
    p.unknownKeys(PORT_KEYS);
    const ports: KongPorts = {
        proxy: p.integer("proxy", 8000, 1, 65535),
        admin: p.integer("admin", 8001, 1, 65535),
        status: p.integer("status", 8100, 1, 65535),
        stride: p.integer("stride", 10, 1, 1000),
        dpProxy: p.integer("dpProxy", 9000, 1, 65535),
        dpStatus: p.integer("dpStatus", 9100, 1, 65535),
        cluster: p.integer("cluster", 8005, 1, 65535),
    };
    const role = k.oneOf("role", ["traditional", "hybrid"] as const, "traditional");
    const nodes = k.integer("nodes", role === "hybrid" ? 1 : 2, 1, 64);
    const dataPlanes = role === "hybrid" ? k.integer("dataPlanes", 2, 1, 64) : 0;
    for (const key of ["dataPlanes", "clusterCert", "clusterCertKey", "clusterControlPlane"]) {
        if (role !== "hybrid" && kongObj[key] !== undefined) problems.push(`kong.${key} only applies to kong.role: hybrid`);
    }
    if ((kongObj.clusterCert === undefined) !== (kongObj.clusterCertKey === undefined)) {
        problems.push(`kong.clusterCert and kong.clusterCertKey go together (both secrets); leave both out to have them generated`);
    }
    const envObj = k.object("env") ?? {};
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(envObj)) {
        if (!/^KONG_[A-Z0-9_]+$/.test(name)) {
            problems.push(`kong.env.${name}: only KONG_* settings belong here (Kong reads every kong.conf property as KONG_<NAME>)`);
        } else if (/^KONG_(PG_|DATABASE$|PLUGINS$|LICENSE_DATA$)/.test(name)) {
            problems.push(`kong.env.${name} is managed by the program; set it through kong.plugins, kong.license or database.* instead`);
        } else if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
            problems.push(`kong.env.${name} must be a string`);
        } else {
            env[name] = String(value);
        }
    }
    const kong: KongSettings = {
        version: version ?? { major: 0, minor: 0, rest: [0], text: "0.0.0" },
        image: k.string("image", "kong")!,
        nodes,
        role,
        dataPlanes,
        clusterCert: k.string("clusterCert"),
        clusterCertKey: k.string("clusterCertKey"),
        plugins: k.string("plugins", "bundled")!,
        env,
        ports,
        adminAddress: k.string("adminAddress", "127.0.0.1")!,
        proxyAddress: k.string("proxyAddress", "0.0.0.0")!,
        drainSeconds: k.integer("drainSeconds", 30, 0, 3600),
        lockTimeoutSeconds: k.integer("lockTimeoutSeconds", 600, 1, 86400),
        healthTimeoutSeconds: k.integer("healthTimeoutSeconds", 120, 5, 3600),
        clusterControlPlane: k.string("clusterControlPlane"),
        smokePath: k.string("smokePath"),
        license: k.string("license"),
    };
    for (const key of ["adminAddress", "proxyAddress"] as const) {
        if (!ADDRESS_PATTERN.test(kong[key])) problems.push(`kong.${key} must be an IP address such as 127.0.0.1, not "${kong[key]}"`);
    }
    if (kong.smokePath !== undefined && !kong.smokePath.startsWith("/")) {
        problems.push(`kong.smokePath must start with "/", not "${kong.smokePath}"`);
    }

    const dbObj = rootObject(problems, "database", raw.database, false) ?? {};
    const d = new Reader(problems, "database", dbObj);
    d.unknownKeys(DATABASE_KEYS);
    const mode = d.oneOf("mode", ["embedded", "external"] as const, "embedded");
    const password = d.string("password");
    if (password === undefined && dbObj.password === undefined) {
        problems.push(`database.password is required: pulumi config set --secret --path database.password <password>`);
    }
    const name = d.string("name", "kong")!;
    const user = d.string("user", "kong")!;
    for (const [key, value] of [["name", name], ["user", user]] as const) {
        if (!IDENTIFIER_PATTERN.test(value)) {
            problems.push(`database.${key} "${value}" must be a lower-case PostgreSQL identifier of at most 48 characters (letters, digits, _)`);
        }
    }
    const schema = d.string("schema");
    if (schema !== undefined && !IDENTIFIER_PATTERN.test(schema)) problems.push(`database.schema "${schema}" must be a lower-case PostgreSQL identifier`);
    let database: DatabaseSettings;
    if (mode === "embedded") {
        for (const key of ["host", "containerHost"]) {
            if (dbObj[key] !== undefined) problems.push(`database.${key} is for an external server; set database.mode: external, or remove it`);
        }
        const hostPort = d.integer("port", 15432, 1, 65535);
        database = {
            mode, host: "127.0.0.1", port: hostPort, containerHost: EMBEDDED_DATABASE_ALIAS, containerPort: 5432,
            name, user, password: password ?? "", sslmode: d.oneOf("sslmode", ["disable", "require", "verify-ca", "verify-full"] as const, "disable"),
            schema, image: d.string("image", "postgres:15")!, adminPassword: d.string("adminPassword") ?? password ?? "",
        };
        if (Object.values(ports).includes(hostPort)) problems.push(`database.port ${hostPort} collides with a Kong port; choose another`);
    } else {
        const host = d.string("host");
        if (host === undefined) problems.push(`database.host is required when database.mode is external: the PostgreSQL server's address`);
        for (const key of ["image", "adminPassword"]) {
            if (dbObj[key] !== undefined) problems.push(`database.${key} only applies to the embedded server; remove it`);
        }
        const port = d.integer("port", 5432, 1, 65535);
        const containerHost = d.string("containerHost", host) ?? "";
        if (isLoopback(containerHost)) {
            problems.push(`database.host "${containerHost}" is the loopback address, which Kong's containers cannot reach; ` +
                `set database.containerHost to an address of the server that the containers can reach (e.g. host.docker.internal)`);
        }
        database = {
            mode, host: host ?? "", port, containerHost, containerPort: port, name, user, password: password ?? "",
            sslmode: d.oneOf("sslmode", ["disable", "require", "verify-ca", "verify-full"] as const, "disable"),
            schema, image: "", adminPassword: "",
        };
    }

    let upgrade: UpgradeSettings | undefined;
    const upObj = rootObject(problems, "upgrade", raw.upgrade, false);
    if (upObj) {
        const u = new Reader(problems, "upgrade", upObj);
        u.unknownKeys(UPGRADE_KEYS);
        const to = u.version("to");
        const rollback = u.boolean("rollback", false);
        if (upObj.to === undefined) {
            problems.push(rollback
                ? `upgrade.rollback needs upgrade.to: the version of the upgrade being rolled back (cluster Y)`
                : `upgrade.to is required: the target version of cluster Y, e.g. "3.7.1"; remove the upgrade block to run cluster X unchanged`);
        }
        const viaRaw = upObj.via;
        const via: KongVersion[] = [];
        if (viaRaw !== undefined && viaRaw !== null) {
            if (!Array.isArray(viaRaw)) problems.push(`upgrade.via must be a list of versions, e.g. ["3.5.0", "3.6.1"]`);
            else viaRaw.forEach((v, i) => {
                try { via.push(parseVersion(v, `upgrade.via[${i}]`)); } catch (e) { problems.push((e as Error).message); }
            });
        }
        const snapshot = u.string("snapshot");
        if (snapshot !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(snapshot)) {
            problems.push(`upgrade.snapshot "${snapshot}" is not a database name (lower-case letters, digits, _)`);
        }
        upgrade = {
            to: to ?? kong.version, via, rollback, snapshot,
            snapshotStrategy: u.oneOf("snapshotStrategy", ["template", "dump"] as const, "template"),
            restoreStrategy: u.oneOf("restoreStrategy", ["rename", "copy"] as const, "rename"),
            terminateSessions: u.boolean("terminateSessions", false),
            onlineSnapshot: u.boolean("onlineSnapshot", false),
            dumpDirectory: u.string("dumpDirectory", "./snapshots")!,
            dumpImage: u.string("dumpImage", "postgres:15")!,
            declarativeExport: u.boolean("declarativeExport", false),
            canary: u.boolean("canary", true),
        };
        if (to && version) {
            const cmp = compareVersions(to, version);
            if (cmp === 0) {
                problems.push(`upgrade.to equals kong.version (${to.text}): nothing to upgrade; remove the upgrade block`);
            } else if (cmp < 0) {
                problems.push(`upgrade.to ${to.text} is older than kong.version ${version.text}: Kong cannot migrate down; ` +
                    `to undo an upgrade set kong.version to the old version, upgrade.to to the new one and upgrade.rollback: true`);
            } else if (!rollback || via.length > 0) {
                try { upgradeChain(version, via, to); } catch (e) {
                    if (!(e instanceof VersionError)) throw e;
                    problems.push(e.message);
                }
            }
        }
    }

    const docker = readDocker(problems, raw.docker);
    const severalHosts = docker.hosts.length > 1;
    problems.push(...portProblems(ports, nodes, dataPlanes, role === "hybrid" && severalHosts ? nodes : 0));
    problems.push(...hostProblems(docker, kong, database, upgrade));

    if (problems.length > 0) throw new ConfigError(problems);
    return { stack, kong, upgrade, database, docker, network: `kong-upgrade-${stack}` };
}

const HOST_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,30}$/;
const HOSTNAME_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** Whether an address is this machine's loopback, which no other machine or container reaches. */
export function isLoopback(address: string): boolean {
    return /^(localhost|127\.|::1$|\[::1\]$)/.test(address);
}

/** Whether an address means every interface of the host. */
export function isWildcard(address: string): boolean {
    return address === "0.0.0.0" || address === "::";
}

/** The parts of a Docker endpoint that matter here; undefined when it is not one we support. */
export function parseDockerEndpoint(endpoint: string): { scheme: "unix" | "tcp" | "ssh"; host: string; rest: string } | undefined {
    const m = /^(unix|tcp|ssh):\/\/(.+)$/.exec(endpoint);
    if (!m) return undefined;
    const scheme = m[1] as "unix" | "tcp" | "ssh";
    if (scheme === "unix") return m[2].startsWith("/") ? { scheme, host: "", rest: m[2] } : undefined;
    // [user@]host[:port][/path]
    const hm = /^(?:[^@/]+@)?(\[[0-9A-Fa-f:]+\]|[^:/]+)(?::(\d+))?(\/.*)?$/.exec(m[2]);
    if (!hm) return undefined;
    return { scheme, host: hm[1].replace(/^\[|\]$/g, ""), rest: m[2] };
}

/** A host's default name: the socket file's or machine's name, in the characters names allow. */
function defaultHostName(endpoint: string): string {
    const e = parseDockerEndpoint(endpoint);
    const base = !e ? "host" : e.scheme === "unix" ? (e.rest.split("/").pop() ?? "").replace(/\.sock$/, "") : e.host;
    const name = base.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 31);
    return name === "" || name === "docker" ? "local" : name;
}

function readDocker(problems: string[], raw: unknown): DockerSettings {
    const obj = rootObject(problems, "docker", raw, false);
    if (!obj) return { hosts: [] };
    new Reader(problems, "docker", obj).unknownKeys(DOCKER_KEYS);
    const list = obj.hosts;
    if (list === undefined || list === null) return { hosts: [] };
    if (!Array.isArray(list) || list.length === 0 || list.length > 32) {
        problems.push(`docker.hosts must be a list of 1 to 32 Docker endpoints (unix://, tcp:// with TLS, ssh://), e.g. ["unix:///var/run/docker.sock", "ssh://ops@edge-b"]`);
        return { hosts: [] };
    }
    const hosts: DockerHost[] = [];
    list.forEach((entry: unknown, i) => {
        const at = `docker.hosts[${i}]`;
        const h = new Reader(problems, at, typeof entry === "string" ? { host: entry } : isObject(entry) ? entry : {});
        if (typeof entry !== "string" && !isObject(entry)) {
            problems.push(`${at} must be an endpoint string or an object with host, name, certPath, address, firstNode, firstDataPlane`);
            return;
        }
        h.unknownKeys(HOST_KEYS);
        const endpoint = h.string("host");
        if (endpoint === undefined) {
            problems.push(`${at}.host is required: the Docker endpoint, e.g. "unix:///var/run/docker.sock", "tcp://10.0.0.6:2376" or "ssh://ops@edge-b"`);
            return;
        }
        const parsed = parseDockerEndpoint(endpoint);
        if (!parsed) {
            problems.push(`${at}.host "${endpoint}" is not a Docker endpoint this program supports: use unix:///path/to/docker.sock, tcp://host:port (with certPath) or ssh://user@host`);
            return;
        }
        const certPath = h.string("certPath");
        if (parsed.scheme === "tcp" && certPath === undefined) {
            problems.push(`${at}.host "${endpoint}" is a TCP endpoint without TLS, which hands root on that machine to anyone on the network: ` +
                `set ${at}.certPath to a folder with ca.pem, cert.pem and key.pem, or use ssh://`);
        }
        if (parsed.scheme !== "tcp" && certPath !== undefined) problems.push(`${at}.certPath only applies to tcp:// endpoints; remove it`);
        const address = h.string("address", parsed.scheme === "unix" ? "127.0.0.1" : parsed.host)!;
        if (!ADDRESS_PATTERN.test(address) && !HOSTNAME_PATTERN.test(address)) {
            problems.push(`${at}.address "${address}" must be an IP address or a host name`);
        }
        const name = h.string("name", defaultHostName(endpoint))!;
        if (!HOST_NAME_PATTERN.test(name)) {
            problems.push(`${at}.name "${name}" must be lower-case letters, digits and "-", at most 31 characters (it is part of resource names)`);
        }
        hosts.push({
            name, endpoint, certPath, address,
            firstNode: h.integer("firstNode", 0, 0, 64),
            firstDataPlane: h.integer("firstDataPlane", 0, 0, 64),
        });
    });
    const seen = new Map<string, number>();
    hosts.forEach((h, i) => {
        const before = seen.get(h.name);
        if (before !== undefined) {
            problems.push(`docker.hosts[${before}] and docker.hosts[${i}] are both named "${h.name}": give each a distinct name (its resources are named after it)`);
        }
        seen.set(h.name, i);
        const same = hosts.findIndex((o) => o.endpoint === h.endpoint);
        if (same < i) problems.push(`docker.hosts[${i}] repeats the endpoint of docker.hosts[${same}] (${h.endpoint})`);
    });
    return { hosts };
}

/** What several Docker hosts, or a host other than this machine, require of the rest of the configuration. */
function hostProblems(docker: DockerSettings, kong: KongSettings, database: DatabaseSettings, upgrade: UpgradeSettings | undefined): string[] {
    const hosts = docker.hosts;
    if (hosts.length === 0) return [];
    const problems: string[] = [];
    if (!hosts.some((h) => h.firstNode === 0)) {
        problems.push(`no Docker host takes node 0: set firstNode: 0 on the host the cluster started on (firstNode is the lowest node index a host takes)`);
    }
    if (kong.role === "hybrid" && !hosts.some((h) => h.firstDataPlane === 0)) {
        problems.push(`no Docker host takes data plane 0: set firstDataPlane: 0 on one host`);
    }
    if (database.mode === "embedded") {
        if (hosts.length > 1) {
            problems.push(`docker.hosts lists ${hosts.length} hosts, and Kong nodes on several hosts need a database every host reaches: ` +
                `set database.mode to external with database.host (and database.containerHost if the containers see it at another address)`);
        } else if (!hosts[0].endpoint.startsWith("unix://")) {
            problems.push(`the embedded database publishes on 127.0.0.1 of its Docker host, which the step programs cannot reach on ${hosts[0].endpoint}: ` +
                `use a unix:// host on this machine, or database.mode external`);
        }
    }
    if (isLoopback(kong.adminAddress)) {
        for (const [i, h] of hosts.entries()) {
            if (!isLoopback(h.address)) {
                problems.push(`kong.adminAddress ${kong.adminAddress} publishes the Admin and Status APIs on each host's loopback, which the step programs ` +
                    `cannot reach on docker.hosts[${i}] (${h.address}): set kong.adminAddress to "0.0.0.0" (and keep those ports behind a firewall)`);
            }
        }
    }
    const tools = hosts[0];
    if (upgrade && !upgrade.rollback && upgrade.canary && !tools.endpoint.startsWith("unix://")) {
        problems.push(`upgrade.canary publishes its Y node on 127.0.0.1 of docker.hosts[0], which runs one-off containers; ${tools.endpoint} is not this machine: ` +
            `list a unix:// host first, or set upgrade.canary: false (the upgrade then runs without rehearsing on a clone)`);
    }
    if (upgrade && (upgrade.snapshotStrategy === "dump" || upgrade.declarativeExport) && !tools.endpoint.startsWith("unix://")) {
        problems.push(`upgrade.${upgrade.snapshotStrategy === "dump" ? "snapshotStrategy dump" : "declarativeExport"} writes into upgrade.dumpDirectory through a bind mount on ` +
            `docker.hosts[0], which runs one-off containers; ${tools.endpoint} is not this machine: list a unix:// host first, or use snapshotStrategy template`);
    }
    if (kong.role === "hybrid" && hosts.length > 1 && kong.clusterControlPlane === undefined) {
        const cp0 = hosts.find((h) => h.firstNode === 0);
        if (cp0 && isLoopback(cp0.address)) {
            problems.push(`data planes on other hosts reach control plane 0 at its host's address, and docker.hosts "${cp0.name}" has the loopback ` +
                `address ${cp0.address}: set its address to one the other hosts reach, or set kong.clusterControlPlane to host:port of a load balancer`);
        }
    }
    if (kong.clusterControlPlane !== undefined && !/^[A-Za-z0-9.:[\]-]+:\d{1,5}$/.test(kong.clusterControlPlane)) {
        problems.push(`kong.clusterControlPlane must be host:port, e.g. "cp.internal:8005", not "${kong.clusterControlPlane}"`);
    }
    return problems;
}

/** Every host port of every node (and data plane) must be distinct. */
export function portProblems(ports: KongPorts, nodes: number, dataPlanes = 0, clusterListeners = 0): string[] {
    const seen = new Map<number, string>();
    const problems: string[] = [];
    const published: Array<[number, Exclude<keyof KongPorts, "stride">, string]> = [];
    for (let i = 0; i < nodes; i++) for (const kind of ["proxy", "admin", "status"] as const) published.push([i, kind, `node ${i} ${kind}`]);
    for (let i = 0; i < clusterListeners; i++) published.push([i, "cluster", `control plane ${i} cluster listener`]);
    for (let i = 0; i < dataPlanes; i++) for (const kind of ["dpProxy", "dpStatus"] as const) published.push([i, kind, `data plane ${i} ${kind}`]);
    for (const [i, kind, who] of published) {
        const port = ports[kind] + i * ports.stride;
        if (port > 65535) {
            problems.push(`${who} port would be ${port} (kong.ports.${kind} + ${i} × kong.ports.stride), above 65535: lower the base port or kong.nodes`);
        } else if (seen.has(port)) {
            problems.push(`${who} and ${seen.get(port)} would both publish port ${port}: ` +
                `set kong.ports.stride above ${nodes > 1 ? "the spacing of your base ports" : "0"} or move kong.ports.${kind}`);
        } else {
            seen.set(port, who);
        }
    }
    return problems;
}

/** Host ports of data plane `index`. */
export function dataPlanePorts(ports: KongPorts, index: number): { proxy: number; status: number } {
    return { proxy: ports.dpProxy + index * ports.stride, status: ports.dpStatus + index * ports.stride };
}

/** Host ports of node `index`. */
export function nodePorts(ports: KongPorts, index: number): { proxy: number; admin: number; status: number; cluster: number } {
    return {
        proxy: ports.proxy + index * ports.stride,
        admin: ports.admin + index * ports.stride,
        status: ports.status + index * ports.stride,
        cluster: ports.cluster + index * ports.stride,
    };
}
