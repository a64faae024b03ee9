import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { KongSettings, dataPlanePorts, nodePorts } from "./config";
import { NodeKind, names } from "./plan";
import { KongVersion } from "./versions";

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

export interface KongClusterArgs {
    /** The version every node runs; its image tag. */
    version: KongVersion;
    /** Validated Kong settings: nodes, ports, plugins, drain time (see config.ts for defaults). */
    kong: KongSettings;
    /** KONG_* environment of every node (secrets as secret Outputs). */
    env: pulumi.Input<pulumi.Input<string>[]>;
    /** Host files mounted read-only into every node (the database's CA for verify-ca/verify-full). Default none. */
    files?: { host: string; container: string }[];
    /** Where node `index` runs (placement.ts decides; the same for every version). */
    hostOf: (index: number) => NodeHost;
    /**
     * Hybrid on several hosts: control planes publish their cluster listener (8005) for data
     * planes on other hosts. Default false: data planes reach them on the shared network.
     */
    publishClusterPort?: boolean;
    stack: string;
    /** Steps every node waits for (a component's dependsOn does not reach its children's creation). */
    after: pulumi.Resource[];
}

type Port = { internal: number; external: number; ip: string };

/** One Kong node container; its inputs depend only on version, kind and settings. */
export function kongNode(parent: pulumi.Resource, args: Omit<KongClusterArgs, "after">, i: number, kind: NodeKind,
    ports: Port[], after: pulumi.Resource[], aliases: string[] = []): docker.Container {
    const k = args.kong;
    const host = args.hostOf(i);
    return new docker.Container(names.node(args.version, i, kind), {
        name: names.container(args.stack, args.version, i, kind),
        hostname: names.node(args.version, i, kind),
        image: host.imageId,
        envs: args.env,
        ...(args.files && args.files.length > 0
            ? { volumes: args.files.map((f) => ({ hostPath: f.host, containerPath: f.container, readOnly: true })) } : {}),
        networksAdvanced: [aliases.length > 0 ? { name: host.networkName, aliases } : { name: host.networkName }],
        ports,
        // `kong health` is the official image's own check; verify and ready go deeper. Docker runs
        // the first check one interval after the start, and the node counts as started (`wait`)
        // only then: 1s keeps that under a second of the downtime window, at one `kong health`
        // per node per second (the image's own default is 10s). 120 failures in a row (2 min)
        // before unhealthy, as before; the start period forgives the failures of Kong's start.
        healthcheck: { tests: ["CMD", "kong", "health"], interval: "1s", timeout: "10s", retries: 120, startPeriod: "5s" },
        wait: true,
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
    }, { parent, dependsOn: after, provider: host.provider });
}

/**
 * One Kong cluster: `kong.nodes` containers of one version (control planes in hybrid mode), each
 * waited on until Docker reports it healthy. A node's inputs depend only on the version and the
 * settings, never on whether the cluster is X or Y, so promoting Y replaces nothing.
 */
export class KongCluster extends pulumi.ComponentResource {
    public readonly nodes: docker.Container[];

    constructor(name: string, args: KongClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kong-upgrade:index:KongCluster", name, {}, opts);
        const k = args.kong;
        const hybrid = k.role === "hybrid";
        this.nodes = Array.from({ length: k.nodes }, (_, i) => {
            const p = nodePorts(k.ports, i);
            const ports: Port[] = [
                // A control plane does not proxy.
                ...(hybrid ? [] : [{ internal: 8000, external: p.proxy, ip: k.proxyAddress }]),
                { internal: 8001, external: p.admin, ip: k.adminAddress },
                { internal: 8100, external: p.status, ip: k.adminAddress },
                ...(args.publishClusterPort ? [{ internal: 8005, external: p.cluster, ip: k.proxyAddress }] : []),
            ];
            return kongNode(this, args, i, hybrid ? "cp" : "node", ports, args.after, hybrid ? [CONTROL_PLANE_ALIAS] : []);
        });
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
        const k = this.args.kong;
        const p = dataPlanePorts(k.ports, i);
        const node = kongNode(this, this.args, i, "dp", [
            { internal: 8000, external: p.proxy, ip: k.proxyAddress },
            { internal: 8100, external: p.status, ip: k.adminAddress },
        ], after);
        this.nodes.push(node);
        return node;
    }
}
