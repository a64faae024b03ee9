// kong-upgrade: Kong Gateway's in-place upgrade as a Pulumi program.
// Read the configuration, validate it (nothing is created when it is wrong), compose, export.
import * as pulumi from "@pulumi/pulumi";
import { ROOT_KEYS, readSettings } from "./components/config";
import { KongDeployment } from "./components/deployment";
import { formatRunbook } from "./components/plan";
import { parseStepResult } from "./steps/lib/log";

const project = pulumi.getProject();
const config = new pulumi.Config();
const known: readonly string[] = ROOT_KEYS;
const otherKeys = Object.keys(pulumi.runtime.allConfig())
    .filter((k) => k.startsWith(`${project}:`))
    .map((k) => k.slice(project.length + 1))
    .filter((k) => !known.includes(k));

const settings = readSettings({
    kong: config.getObject<unknown>("kong"),
    upgrade: config.getObject<unknown>("upgrade"),
    database: config.getObject<unknown>("database"),
    docker: config.getObject<unknown>("docker"),
    otherKeys,
}, pulumi.getStack());

const kong = new KongDeployment("kong", {
    settings,
    password: pulumi.secret(settings.database.password),
    adminPassword: settings.database.adminPassword !== undefined ? pulumi.secret(settings.database.adminPassword) : undefined,
    // Each value a secret of its own; the names stay readable in specs and diffs.
    secretEnv: Object.fromEntries(Object.entries(settings.kong.secretEnv).map(([k, v]) => [k, pulumi.secret(v)])),
    license: settings.kong.license !== undefined ? pulumi.secret(settings.kong.license) : undefined,
});

/** The numbered runbook this run carries out, as `npm run plan` prints it. */
export const runbook = formatRunbook(kong.runbook);
export const mode = kong.runbook.mode;
export const servingVersion = settings.upgrade && !settings.upgrade.rollback ? settings.upgrade.to.text : settings.kong.version.text;
/** Docker container names of the serving cluster's nodes. */
export const nodes = pulumi.all(kong.serving.nodes.map((n) => n.name));
/** With docker.hosts: the Docker host of each node of the serving version (and of each data plane). */
export const placement = kong.placement;
/** The snapshot this run took (upgrade) or restored (rollback): name (for upgrade.snapshot), whose, size, time, versions. */
export const snapshot = kong.snapshot ? pulumi.unsecret(kong.snapshot).apply(describeSnapshot) : undefined;
/** With upgrade.canary: the downtime window the canary forecast, and its parts (seconds). */
export const forecast = kong.forecast;

function describeSnapshot(stdout: string | undefined): Record<string, unknown> | undefined {
    const r = parseStepResult(stdout);
    if (!r) return undefined;
    // Only identity and figures; the step's stdout never holds a secret, but say so explicitly.
    const { snapshot: name, strategy, stack, source, upgradeId, location, sha256, sizeBytes, takenAt, from, to, hops, schemaMeta, entityCounts, restoredAs, setAside } = r;
    return { name, strategy, stack, source, upgradeId, location, sha256, sizeBytes, takenAt, from, to, hops, schemaMeta, entityCounts, restoredAs, setAside };
}
