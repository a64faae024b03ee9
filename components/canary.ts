// The canary step's resource: a Command between preflight and stop that rehearses the upgrade on a
// clone of the live database (steps/canary.ts) and whose result forecasts the downtime window.
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "./config";
import { names } from "./plan";
import { StepIdentity, stepCommand } from "./step";
import { KongVersion, upgradeChain } from "./versions";
import type { Forecast } from "../steps/canary";
import { parseStepResult } from "../steps/lib/log";
import { CANARY_SECRET_ENV, CanarySpec, DbTarget, DockerEndpoint, KongRun } from "../steps/lib/spec";

export interface CanaryCommandArgs {
    /** Validated settings with an upgrade (not a rollback) and upgrade.canary on. */
    settings: Settings;
    db: DbTarget;
    /** The KongRun each real migrations step of `v` gets: the canary runs each hop with exactly it. */
    kongRun: (v: KongVersion) => KongRun;
    /** Where one-off containers (pg_dump/pg_restore, the canary node) run; undefined: the default host. */
    docker?: DockerEndpoint;
    /** KONG_PG_PASSWORD and, for Enterprise, KONG_LICENSE_DATA: secret Outputs. */
    secrets: Record<string, pulumi.Input<string>>;
    /** Hybrid: the cluster certificate the canary control plane starts with (secret). */
    clusterCert?: pulumi.Output<{ cert: string; key: string }>;
    /** What the canary is (step.ts): this upgrade and what its migrations run with; a change re-runs it. */
    identity: StepIdentity;
    /** The upgrade preflight's result: the catalogs its migrations and verify gate with, as the real steps do. */
    catalogs?: pulumi.Input<string>;
}

/** The canary's spec: every hop of the real run, one node of Y, the snapshot strategy to measure. */
export function canarySpec(a: CanaryCommandArgs): CanarySpec {
    const s = a.settings;
    const u = s.upgrade!;
    const x = s.kong.version;
    return {
        step: "canary", db: a.db, clone: names.canaryClone(s.stack, s.database.name, x, u.to), stack: s.stack, from: x.text, to: u.to.text,
        hops: upgradeChain(x, u.via, u.to).map(a.kongRun),
        node: { container: names.canaryContainer(s.stack, u.to), role: s.kong.role === "hybrid" ? "control_plane" : "traditional", drainSeconds: s.kong.drainSeconds },
        copy: { image: u.dumpImage, network: s.network, host: s.database.containerHost, port: s.database.containerPort, docker: a.docker },
        timeoutSeconds: s.kong.healthTimeoutSeconds,
        smokePath: s.kong.smokePath,
        // An online snapshot happens before X stops: outside the window the canary forecasts.
        snapshot: u.onlineSnapshot ? undefined : u.snapshotStrategy,
        declarativeExport: u.declarativeExport && !u.onlineSnapshot ? a.kongRun(x) : undefined,
    };
}

export function canaryCommand(name: string, a: CanaryCommandArgs, opts: pulumi.CustomResourceOptions): command.local.Command {
    const secrets = { ...a.secrets };
    if (a.clusterCert) {
        secrets[CANARY_SECRET_ENV.clusterCert] = pulumi.secret(a.clusterCert.apply((c) => c.cert));
        secrets[CANARY_SECRET_ENV.clusterCertKey] = pulumi.secret(a.clusterCert.apply((c) => c.key));
    }
    return stepCommand(name, { spec: canarySpec(a), secrets, identity: a.identity, catalogs: a.catalogs }, opts);
}

/** The `forecast` stack output: the expected downtime window and its parts, from the canary's result. */
export function describeForecast(stdout: string | undefined): (Forecast & { canarySeconds?: number; cloneSeconds?: number }) | undefined {
    const r = parseStepResult<{ forecast?: Forecast; canarySeconds?: number; cloneSeconds?: number }>(stdout);
    if (!r?.forecast) return undefined;
    return { ...r.forecast, canarySeconds: r.canarySeconds, cloneSeconds: r.cloneSeconds };
}
