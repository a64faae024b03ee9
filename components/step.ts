import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { EXPECT_ENV, SPEC_ENV, StepSpec } from "../steps/lib/spec";

export interface StepCommandArgs {
    /** What the step program does; serialised into KONG_UPGRADE_SPEC. Never holds a secret. */
    spec: StepSpec;
    /** Secret environment (KONG_PG_PASSWORD, KONG_LICENSE_DATA); values must be secret Outputs. */
    secrets: Record<string, pulumi.Input<string>>;
    /** Result of an earlier step that this one checks against (verify ← snapshot/restore). */
    expect?: pulumi.Input<string>;
    /** @pulumi/command `triggers`: a change in any of these makes the step run again (replacement). */
    triggers?: pulumi.Input<unknown>[];
}

/**
 * Node's options for a step program: TypeScript run through sucrase's loader, which only strips
 * types (the code is type-checked by `tsc` in the test suite). It starts in about a third of
 * ts-node's time, and every step's start-up falls inside the downtime window.
 */
export const STEP_NODE_OPTIONS = ["--require", "sucrase/register/ts"];

/** The command line every step runs: the project's own step program, by name. */
export function stepCommandLine(step: string): string {
    return ["node", ...STEP_NODE_OPTIONS, "steps/main.ts", step].join(" ");
}

/**
 * One step of the runbook as a `command.local.Command` that runs a step program of this
 * project (steps/). The command line carries no secret; secrets come through environment
 * variables marked secret, and stdout/stderr are marked secret too. Output streamed to Pulumi's
 * log is the step's stderr progress, which never prints a secret (tested).
 */
export function stepCommand(name: string, args: StepCommandArgs, opts: pulumi.CustomResourceOptions): command.local.Command {
    const environment: Record<string, pulumi.Input<string>> = {
        [SPEC_ENV]: JSON.stringify(args.spec),
        ...args.secrets,
    };
    if (args.expect !== undefined) environment[EXPECT_ENV] = args.expect;
    return new command.local.Command(name, {
        create: stepCommandLine(args.spec.step),
        environment,
        logging: "stderr",
        addPreviousOutputInEnv: false,
        ...(args.triggers ? { triggers: args.triggers } : {}),
    }, { ...opts, additionalSecretOutputs: ["stdout", "stderr"] });
}
