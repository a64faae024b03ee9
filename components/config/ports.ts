// Port arithmetic: which host port each node and data plane publishes, and which collide.
import { KongPorts } from "./types";

type PortKind = Exclude<keyof KongPorts, "stride">;

/** One host port the stack publishes: which base port it comes from, for which node. */
export interface PublishedPort {
    port: number;
    kind: PortKind;
    index: number;
    /** Who publishes it, as messages name it: "node 0 admin", "data plane 1 dpProxy". */
    who: string;
}

const WHAT: Record<PortKind, string> = {
    proxy: "proxy", admin: "Admin API", status: "Status API", cluster: "cluster listener", dpProxy: "proxy", dpStatus: "Status API",
};

/**
 * Every host port the nodes publish: proxy, Admin and Status API of each node (a hybrid control
 * plane has no proxy), cluster listeners, and each data plane's proxy and Status API.
 */
export function publishedPorts(ports: KongPorts, nodes: number, dataPlanes = 0, clusterListeners = 0, hybrid = false): PublishedPort[] {
    const out: PublishedPort[] = [];
    const add = (index: number, kind: PortKind, who: string) => out.push({ port: ports[kind] + index * ports.stride, kind, index, who });
    for (let i = 0; i < nodes; i++) {
        for (const kind of ["proxy", "admin", "status"] as const) if (!(hybrid && kind === "proxy")) add(i, kind, `node ${i} ${kind}`);
    }
    for (let i = 0; i < clusterListeners; i++) add(i, "cluster", `control plane ${i} cluster listener`);
    for (let i = 0; i < dataPlanes; i++) for (const kind of ["dpProxy", "dpStatus"] as const) add(i, kind, `data plane ${i} ${kind}`);
    return out;
}

/** Every host port of every node (and data plane) must be distinct. */
export function portProblems(ports: KongPorts, nodes: number, dataPlanes = 0, clusterListeners = 0, hybrid = false): string[] {
    const seen = new Map<number, string>();
    const problems: string[] = [];
    for (const { port, kind, index: i, who } of publishedPorts(ports, nodes, dataPlanes, clusterListeners, hybrid)) {
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

/**
 * The embedded database publishes `port` on the same Docker host as every node: the problem when
 * a node publishes it too, naming which port of which node, or undefined.
 */
export function databasePortProblem(port: number, published: readonly PublishedPort[], hybrid: boolean): string | undefined {
    const clash = published.find((p) => p.port === port);
    if (!clash) return undefined;
    const owner = clash.kind.startsWith("dp") ? `data plane ${clash.index}` : `${hybrid ? "control plane" : "node"} ${clash.index}`;
    const free = [15432, 25432, 35432].find((c) => !published.some((p) => p.port === c));
    return `database.port ${port} is also the host port of ${owner}'s ${WHAT[clash.kind]} (kong.ports.${clash.kind} + ${clash.index} × kong.ports.stride): ` +
        `set database.port to a port no node publishes${free ? `, e.g. ${free}` : ""}, or move kong.ports.${clash.kind}`;
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
