// Cross-field rules: what one part of the configuration requires of another.
import { isLoopback } from "./endpoints";
import { DatabaseSettings, DockerSettings, KongSettings, UpgradeSettings } from "./types";

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
