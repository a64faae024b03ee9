// Reading the configuration: each key's object field by field, with defaults applied, then the
// cross-field rules. Pure: takes the parsed JSON of each key, returns typed settings, or throws a
// ConfigError naming every problem and what to change. Runs before any resource exists, so a
// wrong request fails `pulumi preview` and changes nothing.
import { KongVersion, VersionError, compareVersions, parseVersion, upgradeChain } from "../versions";
import { ADDRESS_PATTERN, HOSTNAME_PATTERN, HOST_NAME_PATTERN, defaultHostName, isLoopback, parseDockerEndpoint } from "./endpoints";
import { closeEnough } from "./hints";
import { portProblems } from "./ports";
import { Reader, isObject, rootObject } from "./reader";
import { hostProblems } from "./rules";
import {
    ConfigError, DatabaseSettings, DockerHost, DockerSettings, EMBEDDED_DATABASE_ALIAS, KongPorts, KongSettings, RawConfig, Settings,
    UpgradeSettings,
} from "./types";

const KONG_KEYS = ["version", "image", "nodes", "plugins", "env", "ports", "adminAddress", "proxyAddress",
    "drainSeconds", "lockTimeoutSeconds", "healthTimeoutSeconds", "smokePath", "license", "role", "dataPlanes",
    "clusterCert", "clusterCertKey", "clusterControlPlane"] as const;
const PORT_KEYS = ["proxy", "admin", "status", "stride", "dpProxy", "dpStatus", "cluster"] as const;
const UPGRADE_KEYS = ["to", "via", "rollback", "snapshot", "snapshotStrategy", "restoreStrategy",
    "terminateSessions", "onlineSnapshot", "dumpDirectory", "dumpImage", "declarativeExport"] as const;
const DATABASE_KEYS = ["mode", "host", "port", "containerHost", "name", "user", "password", "sslmode",
    "schema", "image", "adminPassword"] as const;
const DOCKER_KEYS = ["hosts"] as const;
const HOST_KEYS = ["name", "host", "certPath", "address", "firstNode", "firstDataPlane"] as const;
export const ROOT_KEYS = ["kong", "upgrade", "database", "docker"] as const;

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

