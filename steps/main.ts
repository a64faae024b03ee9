// Entry point of every step program: `node --require sucrase/register/ts steps/main.ts <step>`.
// Reads the spec from KONG_UPGRADE_SPEC, runs the step, prints its result as one JSON line.
// Exit 0 only when the step's postcondition holds; otherwise the reason on stderr and exit 1.
import { StepError, progress, result } from "./lib/log";
import { SPEC_ENV, StepSpec } from "./lib/spec";
import { bootstrap } from "./bootstrap";
import { migrations } from "./migrations";
import { preflight } from "./preflight";
import { restore } from "./restore";
import { snapshot } from "./snapshot";
import { startCluster, stopCluster } from "./cluster";
import { verify } from "./verify";
import { canary } from "./canary";
import { clusterCert, ready } from "./hybrid";

export async function runStep(spec: StepSpec): Promise<object> {
    switch (spec.step) {
        case "bootstrap": return bootstrap(spec);
        case "preflight": return preflight(spec);
        case "stop": return stopCluster(spec);
        case "start": return startCluster(spec);
        case "snapshot": return snapshot(spec);
        case "migrations": return migrations(spec);
        case "restore": return restore(spec);
        case "verify": return verify(spec);
        case "cluster-cert": return clusterCert(spec);
        case "ready": return ready(spec);
        case "canary": return canary(spec);
    }
}

async function main(): Promise<void> {
    const raw = process.env[SPEC_ENV];
    if (!raw) throw new StepError(`${SPEC_ENV} is not set; step programs are run by the Pulumi program`);
    const spec = JSON.parse(raw) as StepSpec;
    const expected = process.argv[2];
    if (expected && expected !== spec.step) throw new StepError(`asked to run ${expected}, but the spec is for ${spec.step}`);
    const started = Date.now();
    const out = await runStep(spec);
    progress(`${spec.step} done in ${((Date.now() - started) / 1000).toFixed(2)}s`);
    result({ step: spec.step, startedAt: new Date(started).toISOString(), seconds: (Date.now() - started) / 1000, ...out });
}

if (require.main === module) {
    main().catch((e: unknown) => {
        const message = e instanceof StepError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
        process.stderr.write(`error: ${message}\n`);
        process.exit(1);
    });
}
