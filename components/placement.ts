// Which Docker host runs which node. Pure: a function of the configuration only, the same for
// cluster X and cluster Y, so node i of every version lands on the same host and publishes the
// same ports there (a load balancer's targets stay valid across an upgrade).
import { DockerHost, Settings } from "./config";
import type { NodeKind } from "./names";

/**
 * Hosts for nodes 0…count-1, in index order: each node goes to the least-loaded host among those
 * that take its index (`first` ≤ index), ties to the host listed first. Node i's host depends only
 * on the hosts and on nodes 0…i-1, so:
 *  - removing the highest nodes, or adding nodes, never moves an existing node;
 *  - a host added with `first` at or above the current count never moves an existing node, and
 *    takes the new ones until the hosts are even.
 * Nodes spread round-robin over hosts that were all there from the start.
 */
export function placeNodes(hosts: ReadonlyArray<{ name: string; first: number }>, count: number): string[] {
    const load = new Map(hosts.map((h) => [h.name, 0]));
    const placed: string[] = [];
    for (let i = 0; i < count; i++) {
        let best: string | undefined;
        for (const h of hosts) {
            if (h.first > i) continue;
            if (best === undefined || load.get(h.name)! < load.get(best)!) best = h.name;
        }
        if (best === undefined) throw new Error(`no Docker host takes node ${i}: one host needs first index 0`);
        placed.push(best);
        load.set(best, load.get(best)! + 1);
    }
    return placed;
}

/** The host of every node of one kind; empty when docker.hosts is not set (one default host). */
export function placement(s: Settings, kind: NodeKind): DockerHost[] {
    const hosts = s.docker.hosts;
    if (hosts.length === 0) return [];
    const dataPlane = kind === "dp";
    const names = placeNodes(hosts.map((h) => ({ name: h.name, first: dataPlane ? h.firstDataPlane : h.firstNode })),
        dataPlane ? s.kong.dataPlanes : s.kong.nodes);
    return names.map((n) => hosts.find((h) => h.name === n)!);
}

/** The host that runs one-off containers (migrations, dumps, exports): the first one listed. */
export function toolsHost(s: Settings): DockerHost | undefined {
    return s.docker.hosts[0];
}

/** The endpoint Docker's CLI and Pulumi's default Docker provider use when nothing else is set. */
export const DEFAULT_DOCKER_ENDPOINT = "unix:///var/run/docker.sock";

/**
 * Whether a listed host is the one the default Docker provider already reaches: the local socket
 * without TLS, and DOCKER_HOST unset or the same. Such a host keeps the default provider and the
 * unsuffixed resource names (`network`, `image-kong-<v>`), because Pulumi replaces every resource
 * whose provider changes between the default and an explicit one (step_generator providerChanged:
 * "if one or both of these providers are not default providers … replace everything"), and no
 * alias can carry a resource over that change. So adopting `docker.hosts` for the host already
 * in use, or adding a second host beside it, replaces nothing there.
 */
export function isDefaultDockerHost(h: DockerHost, env: NodeJS.ProcessEnv = process.env): boolean {
    const current = env.DOCKER_HOST;
    return h.endpoint === DEFAULT_DOCKER_ENDPOINT && h.certPath === undefined && (!current || current === DEFAULT_DOCKER_ENDPOINT);
}

/** The host part of a host's resource names: none for the default host (see isDefaultDockerHost). */
export function hostSuffix(h: DockerHost | undefined): string | undefined {
    return h && !isDefaultDockerHost(h) ? h.name : undefined;
}
