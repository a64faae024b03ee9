// The configuration contract (`kong-upgrade:kong`, `:upgrade`, `:database`) and its validation.
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

export interface Settings {
    stack: string;
    kong: KongSettings;
    upgrade?: UpgradeSettings;
    database: DatabaseSettings;
    /** The Docker network the cluster and the embedded database share. */
    network: string;
}

/** The parsed JSON of each project config key; anything may be missing or mistyped. */
export interface RawConfig {
    kong?: unknown;
    upgrade?: unknown;
    database?: unknown;
    /** Every other key set under the project's namespace (they are all mistakes). */
    otherKeys?: string[];
}

export const EMBEDDED_DATABASE_ALIAS = "kong-database";

const KONG_KEYS = ["version", "image", "nodes", "plugins", "env", "ports", "adminAddress", "proxyAddress",
    "drainSeconds", "lockTimeoutSeconds", "healthTimeoutSeconds", "smokePath", "license", "role", "dataPlanes",
    "clusterCert", "clusterCertKey"] as const;
const PORT_KEYS = ["proxy", "admin", "status", "stride", "dpProxy", "dpStatus"] as const;
const UPGRADE_KEYS = ["to", "via", "rollback", "snapshot", "snapshotStrategy", "restoreStrategy",
    "terminateSessions", "onlineSnapshot", "dumpDirectory", "dumpImage", "declarativeExport"] as const;
const DATABASE_KEYS = ["mode", "host", "port", "containerHost", "name", "user", "password", "sslmode",
    "schema", "image", "adminPassword"] as const;

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
        const near = ["kong", "upgrade", "database"].find((c) => closeEnough(c, k));
        problems.push(`unknown key kong-upgrade:${k}` + (near ? ` (did you mean kong-upgrade:${near}?)` : "; known keys: kong, upgrade, database"));
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
    };
    const role = k.oneOf("role", ["traditional", "hybrid"] as const, "traditional");
    const nodes = k.integer("nodes", role === "hybrid" ? 1 : 2, 1, 64);
    const dataPlanes = role === "hybrid" ? k.integer("dataPlanes", 2, 1, 64) : 0;
    for (const key of ["dataPlanes", "clusterCert", "clusterCertKey"]) {
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
        smokePath: k.string("smokePath"),
        license: k.string("license"),
    };
    for (const key of ["adminAddress", "proxyAddress"] as const) {
        if (!ADDRESS_PATTERN.test(kong[key])) problems.push(`kong.${key} must be an IP address such as 127.0.0.1, not "${kong[key]}"`);
    }
    if (kong.smokePath !== undefined && !kong.smokePath.startsWith("/")) {
        problems.push(`kong.smokePath must start with "/", not "${kong.smokePath}"`);
    }
    problems.push(...portProblems(ports, nodes, dataPlanes));

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
        if (/^(localhost|127\.|::1$)/.test(containerHost)) {
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

    if (problems.length > 0) throw new ConfigError(problems);
    return { stack, kong, upgrade, database, network: `kong-upgrade-${stack}` };
}

/** Every host port of every node (and data plane) must be distinct. */
export function portProblems(ports: KongPorts, nodes: number, dataPlanes = 0): string[] {
    const seen = new Map<number, string>();
    const problems: string[] = [];
    const published: Array<[number, "proxy" | "admin" | "status" | "dpProxy" | "dpStatus", string]> = [];
    for (let i = 0; i < nodes; i++) for (const kind of ["proxy", "admin", "status"] as const) published.push([i, kind, `node ${i} ${kind}`]);
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
export function nodePorts(ports: KongPorts, index: number): { proxy: number; admin: number; status: number } {
    return {
        proxy: ports.proxy + index * ports.stride,
        admin: ports.admin + index * ports.stride,
        status: ports.status + index * ports.stride,
    };
}
