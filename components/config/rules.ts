// Cross-field rules: what one part of the configuration requires of another.
import * as fs from "fs";
import * as path from "path";
import { KongVersion, VersionError, compareVersions, upgradeChain } from "../versions";
import { isHostName, isIpAddress, isLoopback } from "./endpoints";
import { DatabaseSettings, DockerSettings, KongSettings, SslMode, UpgradeSettings } from "./types";

/**
 * kong.version → upgrade.via… → upgrade.to: a newer target, hops strictly between the two, each
 * listed once and in the order Kong migrates through them, every link a direct upgrade.
 */
export function upgradePathProblems(version: KongVersion, upgrade: UpgradeSettings): string[] {
    const { to, via, rollback } = upgrade;
    const cmp = compareVersions(to, version);
    if (cmp === 0) return [`upgrade.to equals kong.version (${to.text}): nothing to upgrade; remove the upgrade block`];
    if (cmp < 0) {
        return [`upgrade.to ${to.text} is older than kong.version ${version.text}: Kong cannot migrate down; ` +
            `to undo an upgrade set kong.version to the old version, upgrade.to to the new one and upgrade.rollback: true`];
    }
    if (rollback && via.length === 0) return [];
    const problems: string[] = [];
    via.forEach((v, i) => {
        const first = via.findIndex((o) => compareVersions(o, v) === 0);
        if (compareVersions(v, version) <= 0 || compareVersions(v, to) >= 0) {
            problems.push(`upgrade.via[${i}] ${v.text} is not between kong.version ${version.text} and upgrade.to ${to.text}: remove it from upgrade.via`);
        } else if (first < i) {
            problems.push(`upgrade.via[${i}] repeats ${v.text} (upgrade.via[${first}]): remove one of them`);
        }
    });
    if (problems.length > 0) return problems;
    const sorted = [...via].sort(compareVersions);
    if (sorted.some((v, i) => v !== via[i])) {
        return [`upgrade.via lists its hops out of order (${via.map((v) => v.text).join(", ")}); Kong migrates through them oldest first: ` +
            `set upgrade.via to [${sorted.map((v) => `"${v.text}"`).join(", ")}]`];
    }
    try {
        upgradeChain(version, via, to);
    } catch (e) {
        if (!(e instanceof VersionError)) throw e;
        return [e.message];
    }
    return [];
}

/**
 * database.sslRootCert: the CA file verify-ca and verify-full check the server against. It is read
 * on the machine running Pulumi (the steps run there too), so its presence is checked at preview.
 */
export function sslRootCertProblems(sslmode: SslMode, file: string | undefined): string[] {
    const verify = sslmode === "verify-ca" || sslmode === "verify-full";
    if (verify && file === undefined) {
        return [`database.sslmode ${sslmode} checks the server's certificate against a CA: set database.sslRootCert to that CA's certificate file (PEM) ` +
            `on the machine running Pulumi, or set database.sslmode to "require" (encrypted, not verified)`];
    }
    if (file === undefined) return [];
    if (!verify) {
        return [`database.sslRootCert only applies to database.sslmode verify-ca or verify-full: set database.sslmode to "verify-full" (or "verify-ca"), or remove database.sslRootCert`];
    }
    if (file.includes(":")) {
        return [`database.sslRootCert "${file}" contains ":", which docker's -v reads as the end of the host path: move the file to a path without ":"`];
    }
    const resolved = path.resolve(file);
    let text: string;
    try {
        if (!fs.statSync(resolved).isFile()) return [`database.sslRootCert "${file}" is not a file (${resolved}): set it to the CA certificate file (PEM)`];
        text = fs.readFileSync(resolved, "utf8");
    } catch (e) {
        return [`database.sslRootCert "${file}" cannot be read (${resolved}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): ` +
            `set it to the CA certificate file (PEM) on the machine running Pulumi; a relative path starts at the project folder`];
    }
    if (!text.includes("-----BEGIN CERTIFICATE-----")) {
        return [`database.sslRootCert "${file}" holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line): set it to the CA's certificate in PEM form`];
    }
    return [];
}

/** What several Docker hosts, or a host other than this machine, require of the rest of the configuration. */
export function hostProblems(docker: DockerSettings, kong: KongSettings, database: DatabaseSettings, upgrade: UpgradeSettings | undefined): string[] {
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
    return problems;
}

/** kong.clusterControlPlane: host:port (an IPv6 address in brackets), as KONG_CLUSTER_CONTROL_PLANE. */
export function clusterControlPlaneProblems(value: string): string[] {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
    if (!m) return [`kong.clusterControlPlane must be host:port, e.g. "cp.internal:8005" or "[fd00::5]:8005", not "${value}"`];
    const host = m[1] ?? m[2];
    const port = Number(m[3]);
    const problems: string[] = [];
    if (m[1] !== undefined ? !isIpAddress(host) : !(isIpAddress(host) && !host.includes(":")) && !isHostName(host)) {
        problems.push(`kong.clusterControlPlane host "${host}" is neither an IP address nor a host name: write host:port with an IPv4 address ` +
            `(e.g. 10.0.0.5:8005), an IPv6 address in brackets (e.g. [fd00::5]:8005) or a host name (e.g. cp.internal:8005)`);
    }
    if (port < 1 || port > 65535) problems.push(`kong.clusterControlPlane port ${port} is not a port: set a port from 1 to 65535`);
    return problems;
}
