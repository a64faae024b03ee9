// Port arithmetic: which host port each node and data plane publishes, and which collide.
import { KongPorts } from "./types";

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
