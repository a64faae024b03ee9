import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { CATALOG_ENV, EXPECT_ENV, SPEC_ENV, StepSpec } from "../steps/lib/spec";
import * as fs from "fs";
import * as path from "path";
import { STEP_PROGRAMS_MAIN, STEP_RUNNER_CLIENT, ensureStepPrograms } from "./stepbuild";

/**
 * What a step *is*: the values whose change makes it a different step that must run again.
 * Everything else a step is given (timeouts, drain time, terminateSessions, lock timeout, the
 * password, kong.env, the command line itself) is tuning: editing it never re-runs a completed
 * step, and a step that has not completed yet (failed, so not in state) runs with current values.
 *
 * | step | identity | why |
 * |---|---|---|
 * | bootstrap | database (name, schema) | once in a database's life |
 * | preflight (upgrade) | stack, database, X, Y, hops | checks before this upgrade stops X |
 * | canary | stack, database, X, Y, hops | the whole path proven on a clone before X stops; never again once X stopped |
 * | preflight (rollback) | stack, database, X, Y, snapshot asked for | checks before this rollback stops Y |
 * | stop | version, containers (and their hosts) | which nodes it stops |
 * | snapshot | stack, database, X, Y, hops, strategy | one snapshot per upgrade and strategy |
 * | migrations up/finish | version, phase, image, plugins | what Kong migrates; plugins bring their own migrations |
 * | start | version, containers (and their hosts) | which nodes it starts |
 * | restore | stack, database, X, Y, snapshot asked for, strategy | what is restored, and how |
 * | verify | version, containers | which cluster it checks |
 * | node status (steady rolling) | container and its id | a replaced node is waited on again |
 * | cluster-cert | (constant) | generated once |
 * | stop/start data plane, ready | version, data plane index, container | which data plane |
 *
 * Mechanism (pulumi-facts §2.2): `triggers: [identity]` — the Command SDK replaces on any change
 * of `triggers`, and a Command's replacement runs the new `create` in place (no delete command is
 * set, so the old half does nothing); the replacement runs with the program's current inputs,
 * not the ignored old ones (the engine re-checks goal properties for a replacement).
 * `ignoreChanges` on every other input we set, so a tuning edit is neither an update (which
 * would re-run `create`) nor a diff at all.
 */
export type StepIdentity = Record<string, unknown>;

/** Inputs of a step Command other than `triggers`: a change to them never re-runs the step. */
export const STEP_TUNING_INPUTS = ["create", "environment", "logging", "addPreviousOutputInEnv"];

export interface StepCommandArgs {
    /** What the step program does; serialised into KONG_UPGRADE_SPEC. Never holds a secret. */
    spec: StepSpec;
    /** What the step is (see the table above); a change re-runs it. Never holds a secret. */
    identity: StepIdentity;
    /** Secret environment (KONG_PG_PASSWORD, KONG_LICENSE_DATA); values must be secret Outputs. */
    secrets: Record<string, pulumi.Input<string>>;
    /** Result of an earlier step that this one checks against (verify ← snapshot/restore). */
    expect?: pulumi.Input<string>;
    /** The upgrade preflight's result: the migration catalogs it learnt (steps/lib/migrationstate.ts). */
    catalogs?: pulumi.Input<string>;
    /** Also part of the identity, known only at deployment (a node's container id). */
    identityInputs?: pulumi.Input<string>[];
}

/** The identity as one stable string: keys sorted, so the same identity is the same text. */
export function identityText(step: string, identity: StepIdentity): string {
    const sorted = (v: unknown): unknown => Array.isArray(v) ? v.map(sorted)
        : v && typeof v === "object" ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])]))
            : v;
    return JSON.stringify({ step, ...(sorted(identity) as object) });
}

/**
 * The argv of a step program after the build: plain JavaScript that TypeScript's transpiler made
 * from steps/ (components/stepbuild.ts), run by Node with no loader. Every step's start-up falls
 * inside the downtime window: this starts in Node's own time, where a TypeScript loader (sucrase)
 * added about as much again and ts-node three times as much (bench/startup.ts).
 */
export function stepArgv(step: string): string[] {
    ensureStepPrograms();
    return ["node", STEP_PROGRAMS_MAIN, step];
}

/**
 * The command line every step Command runs: the project's own step program, by name, through the
 * step runner's client (steps/run-step.sh), which starts it in a worker that is already loaded
 * (steps/runner.ts) or, with no runner, as `node …/main.js <step>`. Without bash (Windows) the
 * step program directly.
 */
export function stepCommandLine(step: string, hasBash = bashOnPath()): string {
    if (!hasBash) return stepArgv(step).join(" ");
    ensureStepPrograms();
    // No startup file of the user's (BASH_ENV) runs, and bash is not in POSIX mode (where a failed
    // connection to the runner would end the client instead of running the step directly).
    return `exec env -u BASH_ENV -u POSIXLY_CORRECT bash ${STEP_RUNNER_CLIENT} ${step}`;
}

function bashOnPath(): boolean {
    if (process.platform === "win32") return false;
    return (process.env.PATH ?? "").split(path.delimiter).some((d) => d !== "" && fs.existsSync(path.join(d, "bash")));
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
    if (args.catalogs !== undefined) environment[CATALOG_ENV] = args.catalogs;
    return new command.local.Command(name, {
        create: stepCommandLine(args.spec.step),
        environment,
        logging: "stderr",
        addPreviousOutputInEnv: false,
        triggers: [identityText(args.spec.step, args.identity), ...(args.identityInputs ?? [])],
    }, {
        ...opts, additionalSecretOutputs: ["stdout", "stderr"],
        ignoreChanges: [...new Set([...(opts.ignoreChanges ?? []), ...STEP_TUNING_INPUTS])],
    });
}
