import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { KongSettings, dataPlanePorts, isWildcard, nodePorts } from "./config";
import { NodeKind, names } from "./plan";
import { KongVersion } from "./versions";
import { DockerEndpoint, NodeRef } from "../steps/lib/spec";

/** Network alias every control plane carries: data planes of any version reach the one serving. */
export const CONTROL_PLANE_ALIAS = "kong-control-plane";

/** Where a node runs: its Docker host's provider, the stack's network there, the version's image there. */
export interface NodeHost {
    /** Undefined: the default Docker provider (no docker.hosts configured). */
    provider?: docker.Provider;
    /** The stack's network on that host (shared with the embedded database on a single host). */
    networkName: pulumi.Input<string>;
    /** Image id of `<kong.image>:<version>` on that host, so the image is present before the node. */
    imageId: pulumi.Input<string>;
}

export type Port = { internal: number; external: number; ip: string };

/** An address as the host part of a URL or host:port (IPv6 in brackets). */
export function urlHost(address: string): string {
    return address.includes(":") ? `[${address}]` : address;
}

/**
 * Everything about one node that the container and the step programs must agree on: its Docker
 * name, the ports it publishes, the listeners inside that those ports expect, the URLs the step
 * programs reach it at, and its Docker host. One function, so a port or listener cannot be
 * changed in one place and not the other.
 */
export interface NodeContract {
    container: string;
    /** Published ports (host side on `ip`, Kong's listener inside on `internal`). */
    ports: Port[];
    /** KONG_*_LISTEN settings matching `ports`, in the order the node's environment lists them. */
    listenEnv: Record<string, string>;
    statusUrl: string;
    /** "" for a data plane (no Admin API). */
    adminUrl: string;
    /** "" for a control plane (no proxy). */
    proxyUrl: string;
    /** The Docker host it runs on; undefined: the default one. */
    docker?: DockerEndpoint;
}

export interface NodeWhere {
    /** Where this machine reaches ports published on a wildcard address of the node's host. Default 127.0.0.1. */
    address?: string;
    /** The node's Docker host, for the step programs' docker CLI; undefined: the default. */
    docker?: DockerEndpoint;
    /** Hybrid over several hosts: control planes publish their cluster listener (8005). */
    publishClusterPort?: boolean;
}

/** Node `i` of `kind` and version `v`: see NodeContract. */
export function nodeContract(k: KongSettings, stack: string, v: KongVersion, kind: NodeKind, i: number, where: NodeWhere = {}): NodeContract {
    const reach = (address: string) => urlHost(isWildcard(address) ? (where.address ?? "127.0.0.1") : address);
    const container = names.container(stack, v, i, kind);
    const on = where.docker ? { docker: where.docker } : {};
    if (kind === "dp") {
        const p = dataPlanePorts(k.ports, i);
        return {
            container, ...on,
            ports: [{ internal: 8000, external: p.proxy, ip: k.proxyAddress }, { internal: 8100, external: p.status, ip: k.adminAddress }],
            listenEnv: { KONG_PROXY_LISTEN: "0.0.0.0:8000", KONG_STATUS_LISTEN: "0.0.0.0:8100" },
            statusUrl: `http://${reach(k.adminAddress)}:${p.status}`, adminUrl: "", proxyUrl: `http://${reach(k.proxyAddress)}:${p.proxy}`,
        };
    }
    const p = nodePorts(k.ports, i);
    const cp = kind === "cp";
    return {
        container, ...on,
        ports: [
            // A control plane does not proxy.
            ...(cp ? [] : [{ internal: 8000, external: p.proxy, ip: k.proxyAddress }]),
            { internal: 8001, external: p.admin, ip: k.adminAddress },
            { internal: 8100, external: p.status, ip: k.adminAddress },
            ...(where.publishClusterPort ? [{ internal: 8005, external: p.cluster, ip: k.proxyAddress }] : []),
        ],
        // A control plane's proxy is turned off after these (its environment says KONG_PROXY_LISTEN=off last).
        listenEnv: { KONG_PROXY_LISTEN: "0.0.0.0:8000", KONG_ADMIN_LISTEN: "0.0.0.0:8001", KONG_STATUS_LISTEN: "0.0.0.0:8100" },
        statusUrl: `http://${reach(k.adminAddress)}:${p.status}`,
        adminUrl: `http://${reach(k.adminAddress)}:${p.admin}`,
        proxyUrl: cp ? "" : `http://${reach(k.proxyAddress)}:${p.proxy}`,
    };
}

/** The part of a contract the step programs get. */
export function nodeRef(c: NodeContract): NodeRef {
    return { container: c.container, statusUrl: c.statusUrl, adminUrl: c.adminUrl, proxyUrl: c.proxyUrl, ...(c.docker ? { docker: c.docker } : {}) };
}

export interface KongClusterArgs {
    /** The version every node runs; its image tag. */
    version: KongVersion;
    /** Validated Kong settings: nodes, ports, plugins, drain time (see config.ts for defaults). */
    kong: KongSettings;
    /** KONG_* environment of every node; only the secret values are secret Outputs (readable diffs). */
    env: pulumi.Input<string>[];
    /** Host files mounted read-only into every node (the database's CA for verify-ca/verify-full). Default none. */
    files?: { host: string; container: string }[];
    /** Where node `index` runs (placement.ts decides; the same for every version). */
    hostOf: (index: number) => NodeHost;
    /** Node `index`'s contract (ports, listeners, URLs). */
    contractOf: (index: number) => NodeContract;
    stack: string;
    /** Steps every node waits for (a component's dependsOn does not reach its children's creation). */
    after: pulumi.Resource[];
    /**
     * Rolling: node i+1 waits for what this returns for node i (a step that waits until node i
     * answers /status). Docker replaces a container delete-first, and the engine registers node
     * i+1 only when everything it depends on is done, so a change that forces replacement takes
     * down one node at a time, the next only once the one before serves again. Default: none,
     * the nodes start together (a fresh cluster inside the downtime window).
     */
    rollingGate?: (index: number, node: docker.Container) => pulumi.Resource;
    /**
     * A step polls each node's /status right after its creation (an upgrade's or rollback's
     * verify, every 100 ms): creating a node then does not wait for Docker's health check, whose
     * interval would add up to one interval to the downtime window. Default false: creation waits
     * until Docker reports the node healthy.
     */
    readinessPolled?: boolean;
}

/** One Kong node container; its inputs depend only on version, kind and settings. */
export function kongNode(parent: pulumi.Resource, args: Omit<KongClusterArgs, "after" | "contractOf">, i: number, kind: NodeKind,
    contract: NodeContract, after: pulumi.Resource[], aliases: string[] = []): docker.Container {
    const k = args.kong;
    const host = args.hostOf(i);
    return new docker.Container(names.node(args.version, i, kind), {
        name: contract.container,
        hostname: names.node(args.version, i, kind),
        image: host.imageId,
        envs: args.env,
        ...(args.files && args.files.length > 0
            ? { volumes: args.files.map((f) => ({ hostPath: f.host, containerPath: f.container, readOnly: true })) } : {}),
        networksAdvanced: [aliases.length > 0 ? { name: host.networkName, aliases } : { name: host.networkName }],
        ports: contract.ports,
        // `kong health` is the official image's own check; verify and ready go deeper. Docker runs
        // the first check one interval after the start, and the node counts as started (`wait`)
        // only then: 1s keeps that under a second of the downtime window, at one `kong health`
        // per node per second (the image's own default is 10s). 120 failures in a row (2 min)
        // before unhealthy, as before; the start period forgives the failures of Kong's start.
        healthcheck: { tests: ["CMD", "kong", "health"], interval: "1s", timeout: "10s", retries: 120, startPeriod: "5s" },
        wait: !args.readinessPolled,
        waitTimeout: k.healthTimeoutSeconds,
        restart: "unless-stopped",
        // Kong's image stops gracefully on SIGQUIT; give in-flight requests time to drain.
        stopSignal: "SIGQUIT",
        destroyGraceSeconds: k.drainSeconds,
        labels: [
            { label: "kong-upgrade.stack", value: args.stack },
            { label: "kong-upgrade.version", value: args.version.text },
            { label: "kong-upgrade.role", value: kind === "dp" ? "data-plane" : "node" },
        ],
    // `wait` matters only when a node is created (pulumi-facts §3.3): a node created with it
    // stays as it is when it serves on as X, so its declaration never shows a diff for it.
    }, { parent, dependsOn: after, provider: host.provider, ignoreChanges: ["wait"] });
}

/**
 * One Kong cluster: `kong.nodes` containers of one version (control planes in hybrid mode), each
 * waited on until Docker reports it healthy. A node's inputs depend only on the version and the
 * settings, never on whether the cluster is X or Y, so promoting Y replaces nothing.
 */
export class KongCluster extends pulumi.ComponentResource {
    public readonly nodes: docker.Container[] = [];
    /** Rolling: the gate after each node (see rollingGate). */
    public readonly gates: pulumi.Resource[] = [];

    constructor(name: string, args: KongClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kong-upgrade:index:KongCluster", name, {}, opts);
        const hybrid = args.kong.role === "hybrid";
        for (let i = 0; i < args.kong.nodes; i++) {
            const after = i > 0 && args.rollingGate ? [...args.after, this.gates[i - 1]] : args.after;
            const node = kongNode(this, args, i, hybrid ? "cp" : "node", args.contractOf(i), after, hybrid ? [CONTROL_PLANE_ALIAS] : []);
            this.nodes.push(node);
            if (args.rollingGate) this.gates.push(args.rollingGate(i, node));
        }
        this.registerOutputs({});
    }
}

export type DataPlanesArgs = Omit<KongClusterArgs, "after">;

/** The data planes of one version (hybrid mode); each is added with its own dependencies. */
export class KongDataPlanes extends pulumi.ComponentResource {
    public readonly nodes: docker.Container[] = [];

    constructor(name: string, private readonly args: DataPlanesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kong-upgrade:index:KongDataPlanes", name, {}, opts);
        this.registerOutputs({});
    }

    add(i: number, after: pulumi.Resource[]): docker.Container {
        const node = kongNode(this, this.args, i, "dp", this.args.contractOf(i), after);
        this.nodes.push(node);
        return node;
    }
}
