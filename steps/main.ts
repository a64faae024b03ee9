// Entry point of every step program: `node build/step-programs/steps/main.js <step>`, this file
// transpiled (components/stepbuild.ts), or the same through a step runner's warm worker
// (`bash build/step-programs/steps/run-step.sh <step>`, steps/runner.ts).
// Reads the spec from KONG_UPGRADE_SPEC, runs the step, prints its result as one JSON line.
// Exit 0 only when the step's postcondition holds; otherwise the reason on stderr and exit 1.
import { armCrashPoints } from "./lib/crash";
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

/**
 * Runs the step named by argv (checked against the spec in KONG_UPGRADE_SPEC) and prints its
 * result; resolves to the exit status. Called once per process: by this file's entry below, or
 * by a step runner's worker given one step (steps/runner.ts).
 */
export async function runStepProgram(expected: string | undefined): Promise<number> {
    try {
        armCrashPoints();
        const raw = process.env[SPEC_ENV];
        if (!raw) throw new StepError(`${SPEC_ENV} is not set; step programs are run by the Pulumi program`);
        const spec = JSON.parse(raw) as StepSpec;
        if (expected && expected !== spec.step) throw new StepError(`asked to run ${expected}, but the spec is for ${spec.step}`);
        const started = Date.now();
        // A step ends with its result or its error, never by the event loop running dry: Node exits
        // with 0 when nothing holds the loop, and a fetch held open by docker-proxy (or an
        // AbortSignal.timeout, which is unref'd) does not hold it. A Command would record a success.
        const holding = setInterval(() => undefined, 60_000);
        const out = await runStep(spec).finally(() => clearInterval(holding));
        progress(`${spec.step} done in ${((Date.now() - started) / 1000).toFixed(2)}s`);
        result({ step: spec.step, startedAt: new Date(started).toISOString(), seconds: (Date.now() - started) / 1000, ...out });
        return 0;
    } catch (e) {
        const message = e instanceof StepError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
        process.stderr.write(`error: ${message}\n`);
        return 1;
    }
}

if (require.main === module) {
    let settled = false;
    // Belt and braces for the above: exiting 0 without a result is a failure.
    process.on("exit", (code) => {
        if (!settled && code === 0) {
            process.stderr.write("error: the step ended without a result (nothing was left running); treat it as failed and run again\n");
            process.exitCode = 1;
        }
    });
    void runStepProgram(process.argv[2]).then((code) => {
        settled = true;
        if (code !== 0) process.exit(code);
    });
}
