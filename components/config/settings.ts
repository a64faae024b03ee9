// Reading the configuration: each key's object field by field, with defaults applied, then the
// cross-field rules. Pure: takes the parsed JSON of each key, returns typed settings, or throws a
// ConfigError naming every problem and what to change. Runs before any resource exists, so a
// wrong request fails `pulumi preview` and changes nothing.
import { KongVersion } from "../versions";
import { HOST_NAME_PATTERN, defaultHostName, hostAddressProblem, ipAddressProblem, isLoopback, parseDockerEndpoint } from "./endpoints";
import { kongSettingProblem } from "./env";
import { closeEnough } from "./hints";
import { imageReferenceProblem, kongImageProblem } from "./images";
import { databasePortProblem, portProblems, publishedPorts } from "./ports";
import { Reader, exactVersion, isObject, rootObject, secretValueProblem } from "./reader";
import { clusterControlPlaneProblems, hostProblems, sslRootCertProblems, upgradePathProblems } from "./rules";
import {
    ConfigError, DatabaseSettings, DockerHost, DockerSettings, EMBEDDED_DATABASE_ALIAS, KongPorts, KongSettings, RawConfig, Settings,
    UpgradeSettings,
} from "./types";

const KONG_KEYS = ["version", "image", "nodes", "plugins", "env", "secretEnv", "ports", "adminAddress", "proxyAddress",
    "drainSeconds", "lockTimeoutSeconds", "healthTimeoutSeconds", "smokePath", "license", "role", "dataPlanes",
    "clusterCert", "clusterCertKey", "clusterControlPlane"] as const;
const PORT_KEYS = ["proxy", "admin", "status", "stride", "dpProxy", "dpStatus", "cluster"] as const;
const UPGRADE_KEYS = ["to", "via", "rollback", "snapshot", "snapshotStrategy", "restoreStrategy",
    "terminateSessions", "onlineSnapshot", "dumpDirectory", "dumpImage", "declarativeExport", "canary"] as const;
const DATABASE_KEYS = ["mode", "host", "port", "containerHost", "name", "user", "password", "sslmode",
    "schema", "image", "adminPassword", "sslRootCert"] as const;
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
    const { kong, version } = readKong(problems, raw.kong);
    const database = readDatabase(problems, raw.database);
    const { upgrade, checkPath } = readUpgrade(problems, raw.upgrade, kong);
    const docker = readDocker(problems, raw.docker);

    const hybrid = kong.role === "hybrid";
    const clusterListeners = hybrid && docker.hosts.length > 1 ? kong.nodes : 0;
    problems.push(...portProblems(kong.ports, kong.nodes, kong.dataPlanes, clusterListeners, hybrid));
    if (database.mode === "embedded") {
        const clash = databasePortProblem(database.port, publishedPorts(kong.ports, kong.nodes, kong.dataPlanes, clusterListeners, hybrid), hybrid);
        if (clash) problems.push(clash);
    }
    if (upgrade && version && checkPath) problems.push(...upgradePathProblems(version, upgrade));
    problems.push(...hostProblems(docker, kong, database, upgrade));

    if (problems.length > 0) throw new ConfigError(problems);
    return { stack, kong, upgrade, database, docker, network: `kong-upgrade-${stack}` };
}

/** `kong-upgrade:kong`; `version` is undefined when kong.version is missing or wrong. */
function readKong(problems: string[], raw: unknown): { kong: KongSettings; version?: KongVersion } {
    const kongObj = rootObject(problems, "kong", raw, true)!;
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
        if (role !== "hybrid" && kongObj[key] !== undefined) problems.push(`kong.${key} only applies to kong.role: hybrid; remove it, or set kong.role to "hybrid"`);
    }
    if ((kongObj.clusterCert === undefined) !== (kongObj.clusterCertKey === undefined)) {
        problems.push(`kong.clusterCert and kong.clusterCertKey go together (both secrets); set both, or leave both out to have them generated`);
    }
    const env = readKongSettings(problems, "kong.env", k.object("env") ?? {});
    const secretEnv = readKongSettings(problems, "kong.secretEnv", k.object("secretEnv") ?? {});
    for (const name of Object.keys(secretEnv)) {
        if (name in env) problems.push(`kong.env.${name} is also set in kong.secretEnv: keep it in one place; remove it from kong.env`);
    }
    const image = k.string("image", "kong")!;
    const imageProblem = kongImageProblem("kong.image", image);
    if (imageProblem) problems.push(imageProblem);
    const kong: KongSettings = {
        version: version ?? { major: 0, minor: 0, rest: [0], text: "0.0.0" },
        image,
        nodes,
        role,
        dataPlanes,
        clusterCert: k.secret("clusterCert"),
        clusterCertKey: k.secret("clusterCertKey"),
        plugins: k.string("plugins", "bundled")!,
        env,
        secretEnv,
        ports,
        adminAddress: k.string("adminAddress", "127.0.0.1")!,
        proxyAddress: k.string("proxyAddress", "0.0.0.0")!,
        drainSeconds: k.integer("drainSeconds", 30, 0, 3600),
        lockTimeoutSeconds: k.integer("lockTimeoutSeconds", 600, 1, 86400),
        healthTimeoutSeconds: k.integer("healthTimeoutSeconds", 120, 5, 3600),
        clusterControlPlane: k.string("clusterControlPlane"),
        smokePath: k.string("smokePath"),
        license: k.secret("license"),
    };
    for (const key of ["adminAddress", "proxyAddress"] as const) {
        const problem = ipAddressProblem(`kong.${key}`, kong[key]);
        if (problem) problems.push(problem);
    }
    if (kong.clusterControlPlane !== undefined) problems.push(...clusterControlPlaneProblems(kong.clusterControlPlane));
    if (kong.smokePath !== undefined && !kong.smokePath.startsWith("/")) {
        problems.push(`kong.smokePath must start with "/": set it to a path such as "/${kong.smokePath}", not "${kong.smokePath}"`);
    }
    return { kong, version };
}

/**
 * kong.env or kong.secretEnv: KONG_* names the program does not manage. Values are text as
 * written; numbers and booleans (as `pulumi config set --path` stores them) become their text.
 * Secret values are kept byte for byte and never repeated in a message.
 */
function readKongSettings(problems: string[], field: "kong.env" | "kong.secretEnv", obj: Record<string, unknown>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(obj)) {
        const nameProblem = kongSettingProblem(field, name);
        if (nameProblem) {
            problems.push(nameProblem);
        } else if (field === "kong.secretEnv") {
            const problem = typeof value === "number" || typeof value === "boolean" ? undefined : secretValueProblem(`${field}.${name}`, value);
            if (problem) problems.push(problem);
            else out[name] = String(value);
        } else if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
            problems.push(`${field}.${name} must be text, a number or true/false, not ${Array.isArray(value) ? "a list" : "an object"}: write Kong's value as text`);
        } else {
            out[name] = String(value);
        }
    }
    return out;
}

/** `kong-upgrade:database`. */
function readDatabase(problems: string[], raw: unknown): DatabaseSettings {
    const dbObj = rootObject(problems, "database", raw, false) ?? {};
    const d = new Reader(problems, "database", dbObj);
    d.unknownKeys(DATABASE_KEYS);
    const mode = d.oneOf("mode", ["embedded", "external"] as const, "embedded");
    const password = d.secret("password");
    if (dbObj.password === undefined || dbObj.password === null) {
        problems.push(`database.password is required: pulumi config set --secret --path database.password <password>`);
    }
    const name = d.string("name", "kong")!;
    const user = d.string("user", "kong")!;
    for (const [key, value] of [["name", name], ["user", user]] as const) {
        if (!IDENTIFIER_PATTERN.test(value)) {
            problems.push(`database.${key} "${value}" must be a lower-case PostgreSQL identifier of at most 48 characters (letters, digits, _): ` +
                `set it to e.g. "${value.toLowerCase().replace(/[^a-z0-9_]/g, "_").replace(/^([0-9])/, "_$1").slice(0, 48)}"`);
        }
    }
    const schema = d.string("schema");
    if (schema !== undefined && !IDENTIFIER_PATTERN.test(schema)) {
        problems.push(`database.schema "${schema}" must be a lower-case PostgreSQL identifier (letters, digits, _, at most 48 characters): rename it, or remove it to use the server's search_path`);
    }
    const sslmode = d.oneOf("sslmode", ["disable", "require", "verify-ca", "verify-full"] as const, "disable");
    const sslRootCert = d.string("sslRootCert");
    problems.push(...sslRootCertProblems(sslmode, sslRootCert));
    if (mode === "embedded") {
        for (const key of ["host", "containerHost"]) {
            if (dbObj[key] !== undefined) problems.push(`database.${key} is for an external server; set database.mode: external, or remove it`);
        }
        const image = d.string("image", "postgres:15")!;
        const imageProblem = imageReferenceProblem("database.image", image, "postgres:15");
        if (imageProblem) problems.push(imageProblem);
        return {
            mode, host: "127.0.0.1", port: d.integer("port", 15432, 1, 65535), containerHost: EMBEDDED_DATABASE_ALIAS, containerPort: 5432,
            name, user, password: password ?? "", sslmode, sslRootCert, schema, image, adminPassword: d.secret("adminPassword"),
        };
    }
    const host = d.string("host");
    if (host === undefined) {
        problems.push(`database.host is required when database.mode is external: set it to the PostgreSQL server's address (IP address or host name)`);
    } else {
        const problem = hostAddressProblem("database.host", host);
        if (problem) problems.push(problem);
    }
    for (const key of ["image", "adminPassword"]) {
        if (dbObj[key] !== undefined) problems.push(`database.${key} only applies to the embedded server; remove it`);
    }
    const port = d.integer("port", 5432, 1, 65535);
    const containerHost = d.string("containerHost", host) ?? "";
    if (dbObj.containerHost !== undefined) {
        const problem = hostAddressProblem("database.containerHost", containerHost);
        if (problem) problems.push(problem);
    }
    if (isLoopback(containerHost)) {
        problems.push(`database.host "${containerHost}" is the loopback address, which Kong's containers cannot reach; ` +
            `set database.containerHost to an address of the server that the containers can reach (e.g. host.docker.internal)`);
    }
    return {
        mode, host: host ?? "", port, containerHost, containerPort: port, name, user, password: password ?? "",
        sslmode, sslRootCert, schema, image: "", adminPassword: undefined,
    };
}

/** `kong-upgrade:upgrade`; undefined when absent (run X unchanged). */
function readUpgrade(problems: string[], raw: unknown, kong: KongSettings): { upgrade?: UpgradeSettings; checkPath: boolean } {
    const upObj = rootObject(problems, "upgrade", raw, false);
    if (!upObj) return { checkPath: false };
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
    let viaValid = true;
    if (viaRaw !== undefined && viaRaw !== null) {
        if (!Array.isArray(viaRaw)) {
            viaValid = false;
            problems.push(`upgrade.via must be a list of versions, e.g. ["3.5.0", "3.6.1"]`);
        } else viaRaw.forEach((v, i) => {
            try { via.push(exactVersion(v, `upgrade.via[${i}]`)); } catch (e) { viaValid = false; problems.push((e as Error).message); }
        });
    }
    const snapshot = u.string("snapshot");
    if (snapshot !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(snapshot)) {
        problems.push(`upgrade.snapshot "${snapshot}" is not a database name (lower-case letters, digits, _): set it to a name from the snapshot stack output, or remove it to restore the newest`);
    }
    const dumpDirectory = u.string("dumpDirectory", "./snapshots")!;
    if (dumpDirectory.includes(":")) {
        problems.push(`upgrade.dumpDirectory "${dumpDirectory}" contains ":", which docker's -v reads as the end of the host path: set it to a folder whose path has no ":"`);
    }
    const dumpImage = u.string("dumpImage", "postgres:15")!;
    const imageProblem = imageReferenceProblem("upgrade.dumpImage", dumpImage, "postgres:15");
    if (imageProblem) problems.push(imageProblem);
    const upgrade: UpgradeSettings = {
        to: to ?? kong.version, via, rollback, snapshot,
        snapshotStrategy: u.oneOf("snapshotStrategy", ["template", "dump"] as const, "template"),
        restoreStrategy: u.oneOf("restoreStrategy", ["rename", "copy"] as const, "rename"),
        terminateSessions: u.boolean("terminateSessions", false),
        onlineSnapshot: u.boolean("onlineSnapshot", false),
        dumpDirectory,
        dumpImage,
        declarativeExport: u.boolean("declarativeExport", false),
        canary: u.boolean("canary", true),
    };
    // The version path is checked only on a readable upgrade.to and upgrade.via.
    return { upgrade, checkPath: to !== undefined && viaValid };
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
        const addressProblem = hostAddressProblem(`${at}.address`, address);
        if (addressProblem) problems.push(addressProblem);
        const name = h.string("name", defaultHostName(endpoint))!;
        if (!HOST_NAME_PATTERN.test(name)) {
            problems.push(`${at}.name "${name}" must be lower-case letters, digits and "-", at most 31 characters (it is part of resource names): set ${at}.name to e.g. "${defaultHostName(endpoint)}"`);
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
        if (same < i) problems.push(`docker.hosts[${i}] repeats the endpoint of docker.hosts[${same}] (${h.endpoint}): remove one of them`);
    });
    return { hosts };
}

