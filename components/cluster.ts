import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { KongSettings, nodePorts } from "./config";
import { names } from "./plan";
import { KongVersion } from "./versions";

export interface KongClusterArgs {
    /** The version every node runs; its image tag. */
    version: KongVersion;
    /** Image id of `<kong.image>:<version>`, so the image is present before the nodes. */
    imageId: pulumi.Input<string>;
    /** Validated Kong settings: nodes, ports, plugins, drain time (see config.ts for defaults). */
    kong: KongSettings;
    /** KONG_* environment shared by every node and migration run (secrets as secret Outputs). */
    env: pulumi.Input<pulumi.Input<string>[]>;
    /** Docker network shared with the database. */
    networkName: pulumi.Input<string>;
    stack: string;
    /** Steps every node waits for (a component's dependsOn does not reach its children's creation). */
    after: pulumi.Resource[];
}

/**
 * One Kong cluster: `kong.nodes` containers of one version, each waited on until Docker
 * reports it healthy. A node's inputs depend only on the version and the settings, never on
 * whether the cluster is X or Y, so promoting Y replaces nothing.
 */
export class KongCluster extends pulumi.ComponentResource {
    public readonly nodes: docker.Container[];

    constructor(name: string, args: KongClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kong-upgrade:index:KongCluster", name, {}, opts);
        const k = args.kong;
        this.nodes = [];
        for (let i = 0; i < k.nodes; i++) {
            const ports = nodePorts(k.ports, i);
            this.nodes.push(new docker.Container(names.node(args.version, i), {
                name: names.container(args.stack, args.version, i),
                hostname: names.node(args.version, i),
                image: args.imageId,
                envs: args.env,
                networksAdvanced: [{ name: args.networkName }],
                ports: [
                    { internal: 8000, external: ports.proxy, ip: k.proxyAddress },
                    { internal: 8001, external: ports.admin, ip: k.adminAddress },
                    { internal: 8100, external: ports.status, ip: k.adminAddress },
                ],
                // `kong health` is the official image's own check; verify goes deeper (/status).
                healthcheck: { tests: ["CMD", "kong", "health"], interval: "2s", timeout: "10s", retries: 60, startPeriod: "2s" },
                wait: true,
                waitTimeout: k.healthTimeoutSeconds,
                restart: "unless-stopped",
                // Kong's image stops gracefully on SIGQUIT; give in-flight requests time to drain.
                stopSignal: "SIGQUIT",
                destroyGraceSeconds: k.drainSeconds,
                labels: [
                    { label: "kong-upgrade.stack", value: args.stack },
                    { label: "kong-upgrade.version", value: args.version.text },
                    { label: "kong-upgrade.role", value: "node" },
                ],
            }, { parent: this, dependsOn: args.after }));
        }
        this.registerOutputs({});
    }
}
