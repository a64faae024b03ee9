// Entry point of every step program: `node build/step-programs/steps/main.js <step>`, this file
// transpiled (components/stepbuild.ts).
// Reads the spec from KONG_UPGRADE_SPEC, runs the step, prints its result as one JSON line.
// Exit 0 only when the step's postcondition holds; otherwise the reason on stderr and exit 1.
import { StepError, progress, result } from "./lib/log";
import { SPEC_ENV, StepSpec } from "./lib/spec";

// Each step's module is loaded only when that step runs: the pg driver alone costs a step that
// does not need it (stop, start) about as much as Node's own start-up. (`require`: this is CommonJS.)
export async function runStep(spec: StepSpec): Promise<object> {
    switch (spec.step) {
        case "bootstrap": return (require("./bootstrap") as typeof import("./bootstrap")).bootstrap(spec);
        case "preflight": return (require("./preflight") as typeof import("./preflight")).preflight(spec);
        case "stop": return (require("./cluster") as typeof import("./cluster")).stopCluster(spec);
        case "start": return (require("./cluster") as typeof import("./cluster")).startCluster(spec);
        case "snapshot": return (require("./snapshot") as typeof import("./snapshot")).snapshot(spec);
        case "migrations": return (require("./migrations") as typeof import("./migrations")).migrations(spec);
        case "restore": return (require("./restore") as typeof import("./restore")).restore(spec);
        case "verify": return (require("./verify") as typeof import("./verify")).verify(spec);
        case "cluster-cert": return (require("./hybrid") as typeof import("./hybrid")).clusterCert(spec);
        case "ready": return (require("./hybrid") as typeof import("./hybrid")).ready(spec);
        case "password": return (require("./password") as typeof import("./password")).password(spec);
        case "canary": return (require("./canary") as typeof import("./canary")).canary(spec);
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
