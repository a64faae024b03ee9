import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { CONTROL_PLANE_ALIAS, KongCluster, KongDataPlanes, NodeContract, NodeHost, nodeContract, nodeRef, urlHost } from "./cluster";
import { ConfigError, DockerHost, Settings, nodePorts } from "./config";
import { SharedDatabase } from "./database";
import { hostSuffix, isDefaultDockerHost, placement, toolsHost } from "./placement";
import { NodeKind, PlannedStep, Runbook, clusterNodeKind, dataPlaneOrderProblems, imagesNeeded, names, planRunbook } from "./plan";
import { StepIdentity, stepCommand } from "./step";
import { KongVersion, upgradeChain } from "./versions";
import { canaryCommand, describeForecast } from "./canary";
import { kongEnv } from "../steps/lib/kong";
import { parseStepResult } from "../steps/lib/log";
import * as path from "path";
import { ClusterRef, DbTarget, DockerEndpoint, KongRun, PG_CA_MOUNT, SECRET_ENV } from "../steps/lib/spec";

/** One Docker host's share of the stack: its provider, the stack's network there, the images pulled there. */
interface HostResources {
    /** Undefined: the default host (no docker.hosts). */
    host?: DockerHost;
    provider?: docker.Provider;
    network: docker.Network;
    images: Map<string, docker.RemoteImage>;
}

function endpoint(h: DockerHost): DockerEndpoint {
    return { host: h.endpoint, certPath: h.certPath };
}

export interface KongDeploymentArgs {
    /** Validated settings (config.ts): what runs now, what to upgrade to, where the database is. */
    settings: Settings;
    /** Kong's database password, a secret Output. */
    password: pulumi.Output<string>;
    /** Embedded database superuser password, a secret Output, when configured; default: generated. */
    adminPassword?: pulumi.Output<string>;
    /** kong.secretEnv's values, each a secret Output; the names are plain. Default none. */
    secretEnv?: Record<string, pulumi.Output<string>>;
    /** Enterprise license, a secret Output, when configured. */
    license?: pulumi.Output<string>;
}

/** The cluster-cert step's result; a run without one must not start nodes with an empty certificate. */
function certificate(stdout: string | undefined): { cert: string; key: string } {
    const r = parseStepResult<{ cert?: string; key?: string }>(stdout);
    if (!r?.cert || !r.key) throw new Error("the cluster-cert step printed no certificate and key");
    return { cert: r.cert, key: r.key };
}

/**
 * Kong on a shared PostgreSQL database, in one of three shapes (plan.ts):
 * steady (cluster X), upgrade (X → Y in place; X not declared, so deleted last) or rollback
 * (Y → X through the snapshot; Y not declared). Every step waits for the one before it through
 * declared dependencies, so the engine cannot run them out of order and stops at the first failure.
 */
export class KongDeployment extends pulumi.ComponentResource {
    public readonly runbook: Runbook;
    /** The cluster serving when the run completes. */
    public readonly serving: KongCluster;
    /** Result of the snapshot step (upgrade) or restore step (rollback), as JSON. */
    public readonly snapshot?: pulumi.Output<string>;
    /** Upgrade with upgrade.canary: the canary's forecast of the downtime window (stack output `forecast`). */
    public readonly forecast?: pulumi.Output<ReturnType<typeof describeForecast>>;
    /** With docker.hosts: container name → host name of every node the run ends with; else undefined. */
    public readonly placement?: Record<string, string>;

    private readonly s: Settings;
    private readonly args: KongDeploymentArgs;
    private readonly done = new Map<string, pulumi.Resource[]>();
    private readonly hosts: HostResources[] = [];
    /** placement.ts's answer for each kind of node, worked out once. */
    private readonly placed: Record<NodeKind, DockerHost[]>;
    private readonly dataPlanes = new Map<string, KongDataPlanes>();
    /** Hybrid: the cluster certificate and key, secret. */
    private clusterCert?: pulumi.Output<{ cert: string; key: string }>;

    constructor(name: string, args: KongDeploymentArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kong-upgrade:index:KongDeployment", name, {}, opts);
        this.s = args.settings;
        this.args = args;
        this.placed = { node: placement(this.s, "node"), cp: placement(this.s, "cp"), dp: placement(this.s, "dp") };
        this.runbook = planRunbook(this.s);
        if (this.s.kong.role === "hybrid") {
            const running = !this.s.upgrade ? undefined : this.s.upgrade.rollback ? this.s.upgrade.to : this.s.kong.version;
            const problems = dataPlaneOrderProblems(this.runbook, running);
            if (problems.length > 0) throw new ConfigError(problems);
            if (this.s.kong.clusterCert !== undefined) {
                this.clusterCert = pulumi.secret({ cert: this.s.kong.clusterCert, key: this.s.kong.clusterCertKey ?? "" });
            }
        }
        // One provider per listed host; none listed: the default provider, as a single-host stack always had.
        // The host the default provider already reaches keeps it, and its resources keep their
        // names, so adopting docker.hosts for it replaces nothing (placement.ts isDefaultDockerHost).
        for (const host of this.s.docker.hosts.length > 0 ? this.s.docker.hosts : [undefined]) {
            const provider = host && !isDefaultDockerHost(host)
                ? new docker.Provider(names.dockerProvider(host.name), { host: host.endpoint, certPath: host.certPath }, { parent: this })
                : undefined;
            const network = new docker.Network(names.network(hostSuffix(host)), {
                name: this.s.network, labels: [{ label: "kong-upgrade.stack", value: this.s.stack }],
            }, { parent: this, provider });
            this.hosts.push({ host, provider, network, images: new Map() });
        }
        // Embedded only on a single host (validated): that host's network and provider.
        const database = new SharedDatabase(names.database, {
            settings: this.s.database, password: args.password, adminPassword: args.adminPassword,
            networkName: this.hosts[0].network.name, stack: this.s.stack, provider: this.hosts[0].provider,
        }, { parent: this });

        let serving: KongCluster | undefined;
        let snapshot: pulumi.Output<string> | undefined;
        let forecast: pulumi.Output<ReturnType<typeof describeForecast>> | undefined;
        /** The snapshot step's record, from state in a rollback: which snapshot, whose, its checksum. */
        let record: pulumi.Output<string> | undefined;
        for (const step of this.runbook.steps) {
            const after = this.after(step);
            switch (step.kind) {
                case "database":
                    this.done.set(step.resources[0], [...this.hosts.map((h) => h.network), ...database.ready]);
                    break;
                case "images":
                    // Kept locally when no longer declared: a rollback may need the image again.
                    for (const h of this.hosts) {
                        for (const v of imagesNeeded(this.s)) {
                            const name = names.image(v, hostSuffix(h.host));
                            const image = new docker.RemoteImage(name, { name: this.imageRef(v), keepLocally: true }, { parent: this, provider: h.provider });
                            h.images.set(v.text, image);
                            this.done.set(name, [image]);
                        }
                    }
                    break;
                case "nodes": {
                    const v = step.version!;
                    const kind = clusterNodeKind(this.s);
                    // Steady state: a node setting that forces replacement rolls one node at a time.
                    // Upgrade and rollback start a fresh cluster inside the downtime window: all at once.
                    const rolling = !this.s.upgrade;
                    serving = new KongCluster(names.cluster(v), {
                        version: v, kong: this.s.kong, env: this.nodeEnv(kind), files: this.caFiles(), hostOf: (i) => this.nodeHost(v, kind, i),
                        contractOf: (i) => this.contract(v, kind, i), stack: this.s.stack, after,
                        rollingGate: rolling ? (i, node) => this.statusGate(v, kind, i, node) : undefined,
                        // Inside the window, verify notices each node's readiness itself.
                        readinessPolled: !rolling,
                    }, { parent: this });
                    serving.nodes.forEach((node, i) => this.done.set(names.node(v, i, kind), [node]));
                    serving.gates.forEach((gate, i) => this.done.set(names.status(names.node(v, i, kind)), [gate]));
                    break;
                }
                case "data-plane": {
                    const v = step.version!;
                    let planes = this.dataPlanes.get(v.text);
                    if (!planes) {
                        planes = new KongDataPlanes(names.dataPlanes(v), {
                            version: v, kong: this.s.kong, env: this.nodeEnv("dp"), hostOf: (i) => this.nodeHost(v, "dp", i), stack: this.s.stack,
                            contractOf: (i) => this.contract(v, "dp", i),
                        }, { parent: this });
                        this.dataPlanes.set(v.text, planes);
                    }
                    this.done.set(step.resources[0], [planes.add(step.index!, after)]);
                    break;
                }
                default: {
                    const cmd = this.stepResource(step, after, step.kind === "verify" ? snapshot : record);
                    // verify compares the entity counts with what the snapshot recorded (upgrade)
                    // or the restore restored (rollback); preflight and restore of a rollback
                    // get the snapshot's record from state.
                    if (step.kind === "snapshot") record = cmd.stdout;
                    if (step.kind === "snapshot" || step.kind === "restore") snapshot = cmd.stdout;
                    // The forecast holds only figures: the step's stdout never holds a secret.
                    if (step.kind === "canary") forecast = pulumi.unsecret(cmd.stdout).apply(describeForecast);
                    if (step.kind === "cluster-cert") {
                        this.clusterCert = pulumi.secret(cmd.stdout.apply((out) => certificate(out)));
                    }
                    this.done.set(step.resources[0], [cmd]);
                }
            }
        }
        this.serving = serving!;
        this.snapshot = snapshot;
        this.forecast = forecast;
        this.placement = this.describePlacement();
        this.registerOutputs({});
    }

    private after(step: PlannedStep): pulumi.Resource[] {
        return step.after.flatMap((r) => {
            const got = this.done.get(r);
            if (!got) throw new Error(`internal: step ${step.resources[0]} planned after ${r}, which was not built`);
            return got;
        });
    }

    private describePlacement(): Record<string, string> | undefined {
        if (this.s.docker.hosts.length === 0) return undefined;
        const u = this.s.upgrade;
        const v = u && !u.rollback ? u.to : this.s.kong.version;
        const out: Record<string, string> = {};
        const kinds: NodeKind[] = this.s.kong.role === "hybrid" ? ["cp", "dp"] : ["node"];
        for (const kind of kinds) {
            this.placed[kind].forEach((h, i) => { out[names.container(this.s.stack, v, i, kind)] = h.name; });
        }
        return out;
    }

    /** The host resources of node `i` of `kind`, as placement.ts places it. */
    private hostResources(kind: NodeKind, i: number): HostResources {
        const placed = this.placed[kind][i];
        return placed ? this.hosts.find((h) => h.host?.name === placed.name)! : this.hosts[0];
    }

    private nodeHost(v: KongVersion, kind: NodeKind, i: number): NodeHost {
        const h = this.hostResources(kind, i);
        return { provider: h.provider, networkName: h.network.name, imageId: h.images.get(v.text)!.imageId };
    }

    /** Node i's whole contract (container name, ports, listeners, URLs, host): one source for the container and the steps. */
    private contract(v: KongVersion, kind: NodeKind, i: number): NodeContract {
        const host = this.hostResources(kind, i).host;
        return nodeContract(this.s.kong, this.s.stack, v, kind, i, {
            address: host?.address, docker: host ? endpoint(host) : undefined,
            publishClusterPort: kind === "cp" && this.s.docker.hosts.length > 1,
        });
    }

    /**
     * Steady state, rolling: waits until node i answers /status, before node i+1 may go down.
     * Its identity holds the node's container id, so a replaced node is waited on again.
     */
    private statusGate(v: KongVersion, kind: NodeKind, i: number, node: docker.Container): command.local.Command {
        const c = this.contract(v, kind, i);
        return stepCommand(names.status(names.node(v, i, kind)), {
            spec: { step: "ready", path: "/status", cluster: { stack: this.s.stack, version: v.text, nodes: [nodeRef(c)] }, timeoutSeconds: this.s.kong.healthTimeoutSeconds },
            identity: { container: c.container }, identityInputs: [node.id], secrets: {},
        }, { parent: this, dependsOn: [node] });
    }

    private imageRef(v: KongVersion): string {
        return `${this.s.kong.image}:${v.text}`;
    }

    private dbTarget(): DbTarget {
        const d = this.s.database;
        return { host: d.host, port: d.port, database: d.name, user: d.user, sslmode: d.sslmode, sslRootCert: this.caFile(), schema: d.schema };
    }

    /** database.sslRootCert as an absolute path (docker mounts need one), when verifying. */
    private caFile(): string | undefined {
        const f = this.s.database.sslRootCert;
        return f === undefined ? undefined : path.resolve(f);
    }

    /** The CA file mounted read-only into every node that connects to the database. */
    private caFiles(): { host: string; container: string }[] {
        const f = this.caFile();
        return f ? [{ host: f, container: PG_CA_MOUNT }] : [];
    }

    private kongRun(v: KongVersion): KongRun {
        const d = this.s.database;
        return {
            image: this.imageRef(v), version: v.text, network: this.s.network, plugins: this.s.kong.plugins,
            env: this.s.kong.env,
            ...(Object.keys(this.s.kong.secretEnv).length > 0 ? { secretEnv: Object.keys(this.s.kong.secretEnv) } : {}),
            pg: {
                host: d.containerHost, port: d.containerPort, database: d.name, user: d.user, ssl: d.sslmode !== "disable",
                sslRootCert: this.caFile(), schema: d.schema,
            },
            lockTimeoutSeconds: this.s.kong.lockTimeoutSeconds,
            license: this.args.license !== undefined,
            docker: this.toolsEndpoint(),
        };
    }

    /** The Docker host one-off containers run on; undefined: the default one. */
    private toolsEndpoint(): DockerEndpoint | undefined {
        const tools = toolsHost(this.s);
        return tools ? endpoint(tools) : undefined;
    }

    /** The nodes of version `v` (control planes in hybrid mode), or one data plane when `dataPlane` is given. */
    private clusterRef(v: KongVersion, dataPlane?: number): ClusterRef {
        const kind = clusterNodeKind(this.s);
        const listed = this.s.docker.hosts;
        const common = { stack: this.s.stack, version: v.text, ...(listed.length > 0 ? { hosts: listed.map(endpoint) } : {}) };
        if (dataPlane !== undefined) return { ...common, nodes: [nodeRef(this.contract(v, "dp", dataPlane))] };
        return { ...common, nodes: Array.from({ length: this.s.kong.nodes }, (_, i) => nodeRef(this.contract(v, kind, i))) };
    }

    /** Identity of a step acting on a cluster (or one data plane): its version and which containers, on which hosts. */
    private clusterIdentity(v: KongVersion, dataPlane?: number): StepIdentity {
        const kind = dataPlane === undefined ? clusterNodeKind(this.s) : "dp";
        const indexes = dataPlane === undefined ? Array.from({ length: this.s.kong.nodes }, (_, i) => i) : [dataPlane];
        // The host by name, and none for the default host: adopting docker.hosts for it changes no identity.
        return {
            version: v.text, nodes: indexes.map((i) => {
                const on = hostSuffix(this.hostResources(kind, i).host);
                return `${names.container(this.s.stack, v, i, kind)}${on ? `@${on}` : ""}`;
            }),
        };
    }

    /** Identity of this upgrade (or rollback): which stack and database go from X to Y along which hops. */
    private upgradeIdentity(): StepIdentity {
        const s = this.s;
        const u = s.upgrade!;
        return {
            stack: s.stack, database: `${s.database.host}:${s.database.port}/${s.database.name}`, schema: s.database.schema ?? null,
            from: s.kong.version.text, to: u.to.text, hops: u.rollback ? [] : upgradeChain(s.kong.version, u.via, u.to).map((v) => v.text),
        };
    }

    /**
     * Environment of every node: the listeners the published ports expect, then exactly the
     * settings migrations run with (kongEnv: database, KONG_PLUGINS, the operator's extras).
     */
    private nodeEnv(kind: NodeKind): pulumi.Input<string>[] {
        if (kind === "dp") return this.dataPlaneEnv();
        const env = {
            // The same for every node: listeners inside the container, behind its published ports.
            ...this.contract(this.s.kong.version, kind, 0).listenEnv,
            KONG_PROXY_ACCESS_LOG: "/dev/stdout",
            KONG_ADMIN_ACCESS_LOG: "/dev/stdout",
            KONG_PROXY_ERROR_LOG: "/dev/stderr",
            KONG_ADMIN_ERROR_LOG: "/dev/stderr",
            ...kongEnv(this.kongRun(this.s.kong.version)),
        };
        const plain = Object.entries(env).map(([k, v]) => `${k}=${v}`);
        const secret: pulumi.Input<string>[] = [pulumi.interpolate`KONG_PG_PASSWORD=${this.args.password}`, ...this.secretEnvElements()];
        if (this.args.license) secret.push(pulumi.interpolate`KONG_LICENSE_DATA=${this.args.license}`);
        if (kind === "cp") {
            plain.push("KONG_ROLE=control_plane", "KONG_CLUSTER_LISTEN=0.0.0.0:8005", "KONG_PROXY_LISTEN=off");
            secret.push(...this.certEnv());
        }
        // Only the secret values are secret: a non-secret setting's change shows as itself in a diff.
        return [...plain, ...secret.map((x) => pulumi.secret(x))];
    }

    /** Hybrid data planes: no database; configuration from whichever control plane carries the alias. */
    private dataPlaneEnv(): pulumi.Input<string>[] {
        const env: Record<string, string> = {
            KONG_ROLE: "data_plane",
            KONG_DATABASE: "off",
            KONG_CLUSTER_CONTROL_PLANE: this.controlPlaneAddress(),
            ...this.contract(this.s.kong.version, "dp", 0).listenEnv,
            KONG_PROXY_ACCESS_LOG: "/dev/stdout",
            KONG_PROXY_ERROR_LOG: "/dev/stderr",
            KONG_PLUGINS: this.s.kong.plugins,
            ...this.s.kong.env,
        };
        const secret = [...this.certEnv(), ...this.secretEnvElements()];
        if (this.args.license) secret.push(pulumi.interpolate`KONG_LICENSE_DATA=${this.args.license}`);
        return [...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...secret.map((x) => pulumi.secret(x))];
    }

    /**
     * Where data planes find the control plane: the operator's address if given; on one host the
     * alias every control plane carries; over several hosts, control plane 0's published cluster
     * port (node 0 of every version lands on the same host with the same port, so the address
     * stays right through the upgrade).
     */
    private controlPlaneAddress(): string {
        const k = this.s.kong;
        if (k.clusterControlPlane) return k.clusterControlPlane;
        if (this.s.docker.hosts.length < 2) return `${CONTROL_PLANE_ALIAS}:8005`;
        return `${urlHost(this.hostResources("cp", 0).host!.address)}:${nodePorts(k.ports, 0).cluster}`;
    }

    private certEnv(): pulumi.Output<string>[] {
        const c = this.clusterCert;
        if (!c) throw new Error("internal: hybrid nodes planned before the cluster certificate");
        return [c.apply((x) => `KONG_CLUSTER_CERT=${x.cert}`), c.apply((x) => `KONG_CLUSTER_CERT_KEY=${x.key}`)];
    }

    /** kong.secretEnv as `NAME=value` environment elements, each a secret. */
    private secretEnvElements(): pulumi.Output<string>[] {
        return Object.entries(this.args.secretEnv ?? {}).map(([k, v]) => pulumi.secret(pulumi.interpolate`${k}=${v}`));
    }

    private secrets(): Record<string, pulumi.Input<string>> {
        const out: Record<string, pulumi.Input<string>> = { [SECRET_ENV.password]: this.args.password };
        if (this.args.license) out[SECRET_ENV.license] = this.args.license;
        // Named in the spec (KongRun.secretEnv), valued only here; steps pass them on with `-e NAME`.
        for (const [k, v] of Object.entries(this.args.secretEnv ?? {})) out[k] = pulumi.secret(v);
        return out;
    }

    private stepResource(step: PlannedStep, after: pulumi.Resource[], snapshot?: pulumi.Output<string>): command.local.Command {
        const s = this.s;
        const u = s.upgrade;
        const x = s.kong.version;
        const opts: pulumi.CustomResourceOptions = { parent: this, dependsOn: after };
        const name = step.resources[0];
        const secrets = this.secrets();
        const dump = u && u.snapshotStrategy === "dump"
            ? { image: u.dumpImage, network: s.network, directory: u.dumpDirectory, host: s.database.containerHost, port: s.database.containerPort,
                // Absent means disable: a stack without TLS keeps the spec it had.
                ...(s.database.sslmode !== "disable" ? { sslmode: s.database.sslmode } : {}),
                ...(this.caFile() ? { sslRootCert: this.caFile() } : {}), docker: this.toolsEndpoint() }
            : undefined;
        switch (step.kind) {
            case "bootstrap":
                // Bootstrap matters once in a database's life; a later version change must not
                // make it an update that runs again, so its inputs are frozen after creation.
                return stepCommand(name, {
                    spec: { step: "bootstrap", db: this.dbTarget(), kong: this.kongRun(x) }, secrets,
                    identity: { database: s.database.name, schema: s.database.schema ?? null },
                }, opts);
            case "preflight":
                if (u!.rollback) {
                    return stepCommand(name, {
                        spec: {
                            step: "preflight", mode: "rollback", db: this.dbTarget(), cluster: this.clusterRef(u!.to), from: x.text,
                            snapshotPrefix: names.snapshotPrefix(s.stack, s.database.name, x, u!.to), snapshot: u!.snapshot,
                            dumpDirectory: dump?.directory, stack: s.stack,
                        }, secrets, expect: snapshot, identity: { mode: "rollback", ...this.upgradeIdentity(), snapshot: u!.snapshot ?? "recorded" },
                    }, opts);
                }
                return stepCommand(name, {
                    spec: {
                        step: "preflight", mode: "upgrade", db: this.dbTarget(), kong: this.kongRun(this.firstHop()),
                        cluster: this.clusterRef(x), to: u!.to.text, snapshotPrefix: names.snapshotPrefix(s.stack, s.database.name, x, u!.to),
                        hops: upgradeChain(x, u!.via, u!.to).map((v) => v.text), dumpDirectory: dump?.directory,
                        hopRuns: upgradeChain(x, u!.via, u!.to).map((v) => this.kongRun(v)),
                    }, secrets, identity: { mode: "upgrade", ...this.upgradeIdentity() },
                }, opts);
            case "stop": {
                const liftFreeze = u && !u.rollback && u.onlineSnapshot ? this.dbTarget() : undefined;
                return stepCommand(name, {
                    spec: { step: "stop", cluster: this.clusterRef(step.version!), drainSeconds: s.kong.drainSeconds, liftFreeze },
                    secrets: liftFreeze ? secrets : {}, identity: this.clusterIdentity(step.version!),
                }, opts);
            }
            case "start":
                return stepCommand(name, {
                    spec: { step: "start", cluster: this.clusterRef(step.version!), timeoutSeconds: s.kong.healthTimeoutSeconds }, secrets: {},
                    identity: this.clusterIdentity(step.version!),
                }, opts);
            case "cluster-cert":
                return stepCommand(name, { spec: { step: "cluster-cert", days: 1095 }, secrets: {}, identity: {} }, opts);
            case "stop-data-plane":
                return stepCommand(name, {
                    spec: { step: "stop", cluster: this.clusterRef(step.version!, step.index), drainSeconds: s.kong.drainSeconds }, secrets: {},
                    identity: this.clusterIdentity(step.version!, step.index),
                }, opts);
            case "start-data-plane":
                return stepCommand(name, {
                    spec: { step: "start", cluster: this.clusterRef(step.version!, step.index), timeoutSeconds: s.kong.healthTimeoutSeconds }, secrets: {},
                    identity: this.clusterIdentity(step.version!, step.index),
                }, opts);
            case "ready":
                return stepCommand(name, {
                    spec: { step: "ready", cluster: this.clusterRef(step.version!, step.index), timeoutSeconds: s.kong.healthTimeoutSeconds }, secrets: {},
                    identity: this.clusterIdentity(step.version!, step.index),
                }, opts);
            case "snapshot": {
                // Never deleted by the program: it has no delete command, and leaving the
                // program's declarations only forgets it (retainOnDelete). A rollback declares it
                // with exactly the upgrade's inputs, so it stays unchanged and its record flows on.
                // A rollback block without `via` still declares it; its inputs then differ from the
                // upgrade's, so it runs and refuses (the database is not at X), naming upgrade.snapshot.
                const chain = u!.rollback ? [...u!.via, u!.to] : upgradeChain(x, u!.via, u!.to);
                // Fresh after a rollback: the upgrade's preflight leaves the state during a
                // rollback and runs again on a retry, so its new result makes the snapshot run
                // again (X served in between; the old snapshot would lose those writes). A rerun
                // after a failure keeps the preflight, hence the snapshot. The rollback itself
                // ignores this input, so the snapshot stays unchanged there.
                const preflight = this.done.get(names.preflight(x, u!.to))?.[0] as command.local.Command | undefined;
                return stepCommand(name, {
                    spec: {
                        step: "snapshot", db: this.dbTarget(), strategy: u!.snapshotStrategy,
                        prefix: names.snapshotPrefix(s.stack, s.database.name, x, u!.to), from: x.text, to: u!.to.text,
                        stack: s.stack, hops: chain.map((v) => v.text), firstHop: this.kongRun(chain[0]),
                        terminateSessions: u!.terminateSessions, dump, online: u!.onlineSnapshot || undefined,
                        declarativeExport: u!.declarativeExport ? { kong: this.kongRun(x), directory: u!.dumpDirectory } : undefined,
                    }, secrets, identity: { ...this.upgradeIdentity(), strategy: u!.snapshotStrategy },
                    identityInputs: u!.rollback ? [] : [preflight!.stdout],
                    // Whether the database is at X, without a Kong container in the window.
                    catalogs: this.learntCatalogs(),
                }, { ...opts, retainOnDelete: true, ...(u!.rollback ? { ignoreChanges: ["triggers"] } : {}) });
            }
            case "migrations-up":
            case "migrations-finish":
                return stepCommand(name, {
                    spec: { step: "migrations", phase: step.kind === "migrations-up" ? "up" : "finish", db: this.dbTarget(), kong: this.kongRun(step.version!) },
                    secrets, catalogs: this.learntCatalogs(),
                    identity: { version: step.version!.text, phase: step.kind === "migrations-up" ? "up" : "finish", image: this.imageRef(step.version!), plugins: s.kong.plugins },
                }, opts);
            case "canary":
                return canaryCommand(name, {
                    settings: s, db: this.dbTarget(), kongRun: (v) => this.kongRun(v), docker: this.toolsEndpoint(), secrets,
                    clusterCert: s.kong.role === "hybrid" ? this.clusterCert : undefined,
                    // The upgrade only: an image or plugins edit re-runs the migrations, but a canary
                    // run again after X stopped would clone a half-migrated database.
                    identity: this.upgradeIdentity(), catalogs: this.learntCatalogs(),
                }, opts);
            case "restore":
                return stepCommand(name, {
                    spec: {
                        step: "restore", db: this.dbTarget(), strategy: u!.restoreStrategy,
                        prefix: names.snapshotPrefix(s.stack, s.database.name, x, u!.to), snapshot: u!.snapshot, dump, stack: s.stack,
                    }, secrets, expect: snapshot,
                    identity: { ...this.upgradeIdentity(), snapshot: u!.snapshot ?? "recorded", strategy: u!.restoreStrategy },
                }, opts);
            case "verify":
                return stepCommand(name, {
                    spec: {
                        step: "verify", db: this.dbTarget(), kong: this.kongRun(step.version!), cluster: this.clusterRef(step.version!),
                        // Control planes do not proxy: the smoke request is for traditional nodes.
                        timeoutSeconds: s.kong.healthTimeoutSeconds, smokePath: s.kong.role === "hybrid" ? undefined : s.kong.smokePath,
                    },
                    secrets, expect: snapshot, identity: this.clusterIdentity(step.version!),
                    // An upgrade's verify checks Y's migration state against Y's catalog.
                    catalogs: u && !u.rollback ? this.learntCatalogs() : undefined,
                }, opts);
            default:
                throw new Error(`internal: no resource for step kind ${step.kind}`);
        }
    }

    /** The upgrade preflight's stdout (secret): the catalogs it learnt. Undefined outside an upgrade. */
    private learntCatalogs(): pulumi.Output<string> | undefined {
        const u = this.s.upgrade;
        if (!u || u.rollback) return undefined;
        const preflight = this.done.get(names.preflight(this.s.kong.version, u.to))?.[0] as command.local.Command | undefined;
        return preflight?.stdout;
    }

    private firstHop(): KongVersion {
        const first = this.runbook.steps.find((st) => st.kind === "migrations-up");
        return first!.version!;
    }
}
