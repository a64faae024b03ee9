// migrations: `kong migrations up` or `finish` with one version's image, run once, gated on
// Kong's migration state before and after: exit 0 alone proves nothing, e.g. when another runner
// held the lock Kong prints "aborted: …" and exits 0 (kong-facts §1.3, §9).
// The state comes from schema_meta, classified against the catalog preflight learnt for this
// image and these settings (lib/migrationstate.ts: exactly Kong's own classification), so the
// downtime window holds one Kong container per step: the command's. Without a catalog (Kong
// before 3.0 has no `status`, or the settings changed since preflight) the list before, the
// command and the list after run in one container (runKongSequence).
import { KongCallResult, MigrationState, listState, migrationsList, migrationsStatus, runKong, runKongSequence } from "./lib/kong";
import { StepError, progress } from "./lib/log";
import { CATALOG_ENV, KongRun, StepSpec } from "./lib/spec";
import { LearntCatalog, classify, describeState, learntCatalogFor, learntCatalogs, readMigrationRows, usableCatalog } from "./lib/migrationstate";
import { Client } from "pg";
import { connect, endWithoutWaiting } from "./lib/db";
import { databasePassword } from "./lib/secrets";

type Migrations = Extract<StepSpec, { step: "migrations" }>;

const LIST = ["migrations", "list"];
const command = (run: KongRun, phase: "up" | "finish") => ["migrations", phase, "--lock-timeout", String(run.lockTimeoutSeconds)];

/** Kong's own text when a command failed: the step fails with it. */
function failed(run: KongRun, phase: string, r: { code: number; output: string }): never {
    throw new StepError(`kong migrations ${phase} (${run.image}) failed with exit ${r.code}:\n${r.output}`);
}

/** A list's exit code as a state, or the step's failure with Kong's text (a connection error exits 1). */
function state(run: KongRun, r: KongCallResult): MigrationState {
    const s = listState(r.code);
    if (!s) throw new StepError(`kong migrations list (${run.image}) failed with exit ${r.code}:\n${r.output}`);
    return s;
}

/** `phase` in its own container, for the rare resume path (separate containers are fine there). */
async function kong(run: KongRun, phase: "up" | "finish"): Promise<string> {
    progress(`kong migrations ${phase} with ${run.image}`);
    const r = await runKong(run, command(run, phase), run.lockTimeoutSeconds + 300);
    const output = (r.stdout + r.stderr).trim();
    if (output) process.stderr.write(`${output}\n`);
    if (r.code !== 0) failed(run, phase, { code: r.code, output });
    return output;
}

function refuse(state: MigrationState, version: string, output: string): never {
    if (state === "needs-bootstrap") {
        throw new StepError(`not a bootstrapped Kong database: kong migrations list (${version}) exits 3. ` +
            `Check database.name and database.schema:\n${output}`);
    }
    throw new StepError(`unexpected migration state ${state} for Kong ${version}:\n${output}`);
}

/** What a migration step does in a state: both gates (schema_meta, list) decide through this one table. */
export type Decision =
    | { action: "run"; commands: Array<"up" | "finish">; note?: string }
    | { action: "done"; note: string }
    /** `up` over pending migrations: whether others are new decides (the list gate asks `status`). */
    | { action: "ask-new" }
    | { action: "up-first" }
    | { action: "refuse" };

/**
 * up: new → up; up-to-date → done; pending → done when nothing else is new, else finish the
 * pending ones and then up (preflight refused pending migrations before X stopped, so pending
 * ones come from this step's own interrupted run; Kong's `up` refuses to run over them).
 * finish: pending → finish; up-to-date → done; new → up has not completed.
 */
export function decide(phase: "up" | "finish", before: MigrationState, hasNew: boolean | undefined, version: string): Decision {
    if (before === "needs-bootstrap") return { action: "refuse" };
    if (phase === "up") {
        if (before === "new") return { action: "run", commands: ["up"] };
        if (before === "up-to-date") return { action: "done", note: `nothing new for ${version}: up already ran` };
        if (hasNew === undefined) return { action: "ask-new" };
        return hasNew
            ? { action: "run", commands: ["finish", "up"], note: `an interrupted up left migrations pending and others new: finishing the pending ones, then up` }
            : { action: "done", note: `up already ran for ${version}; its migrations await finish` };
    }
    if (before === "pending") return { action: "run", commands: ["finish"] };
    if (before === "up-to-date") return { action: "done", note: `nothing pending for ${version}: finish already ran` };
    return { action: "up-first" };
}

/** The state a command leaves when it did its work: up leaves pending (or nothing, without teardowns), finish nothing. */
function reached(phase: "up" | "finish", after: MigrationState): boolean {
    return phase === "up" ? after === "pending" || after === "up-to-date" : after === "up-to-date";
}

/** Exit 0 and the state not reached: Kong's `aborted` (another runner held the lock) said so, or not. */
function notReached(phase: "up" | "finish", version: string, after: MigrationState, outputs: string[], how: string, details: string): StepError {
    const aborted = outputs.some((o) => o.includes("aborted: another node is performing database changes"));
    return new StepError(`kong migrations ${phase} (${version}) exited 0 but ${how} ${after}` +
        (aborted ? `: Kong aborted because another node held the migrations lock; nothing was migrated. Run pulumi up again once it is free` : "") +
        `:\n${details}`);
}

/** `learnt`: the catalogs preflight learnt; by default from KONG_UPGRADE_CATALOGS. */
export async function migrations(spec: Migrations, learnt = learntCatalogs(process.env[CATALOG_ENV])): Promise<object> {
    const reads = new SchemaMetaReads(spec);
    try {
        // The state before is read while the image's id is checked (both in the window); it is used
        // only if the catalog turns out usable.
        const early = learntCatalogFor(learnt, spec.kong) ? reads.read() : undefined;
        early?.catch(() => undefined);
        const catalog = await usableCatalog(learnt, spec.kong);
        if (catalog) return await migrationsByCatalog(spec, catalog, reads, early);
        progress(`no catalog of ${spec.kong.image} with these settings from preflight: asking kong migrations list`);
        return await migrationsByList(spec);
    } finally {
        reads.close();
    }
}

/** How long the read after the command waits for an answer on the connection held since the read before. */
export const HELD_ANSWER_MS = 2000;

type Rows = Awaited<ReturnType<typeof readMigrationRows>>;

/**
 * schema_meta's rows, before and after the command, timed for the bench (`seconds`). The read
 * before keeps its connection for the read after: a connect costs a server process and an
 * authentication (16 ms on a quiet local server, several times that through a proxy), inside
 * the window. A connection held across a long `up` can be ended by the server or dropped on the
 * way: then the read after gets an error, or no answer within HELD_ANSWER_MS, and reads on a new
 * connection, as every read once did. Nothing is ever written on either.
 */
export class SchemaMetaReads {
    seconds = 0;
    private held: Client | undefined;
    private heldFailed = false;
    constructor(private readonly spec: Migrations, private readonly answerMs = HELD_ANSWER_MS) {}

    async read(): Promise<Rows> {
        const t = Date.now();
        try {
            if (this.held && !this.heldFailed) {
                const rows = await answerWithin(readMigrationRows(this.held), this.answerMs).catch((e: Error) => {
                    progress(`the connection kept since the read before did not answer (${e.message}); reading on a new one`);
                    return undefined;
                });
                if (rows) return rows.value;
            }
            this.close();
            const c = await connect(this.spec.db, databasePassword());
            c.on("error", () => { this.heldFailed = true; });
            this.held = c;
            this.heldFailed = false;
            return await readMigrationRows(c);
        } finally {
            this.seconds += (Date.now() - t) / 1000;
        }
    }

    /** Ends the held connection without waiting on it: one that hangs must not hold the step. */
    close(): void {
        const c = this.held;
        this.held = undefined;
        if (c) endWithoutWaiting(c);
    }
}

/** The answer wrapped (rows may be undefined: no schema_meta), or a rejection after `ms`. */
function answerWithin<T>(p: Promise<T>, ms: number): Promise<{ value: T }> {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
        p.then((value) => { clearTimeout(timer); resolve({ value }); }, (e: Error) => { clearTimeout(timer); reject(e); });
    });
}

/**
 * The state before from schema_meta; the command, when due, in the step's only Kong container;
 * the state after from schema_meta. The same decisions as migrationsByList, on the same states.
 */
async function migrationsByCatalog(spec: Migrations, catalog: LearntCatalog, reads: SchemaMetaReads, early?: Promise<Rows>): Promise<object> {
    const run = spec.kong;
    const read = async (rows = reads.read()) => classify(await rows, catalog.subsystems);
    const before = await read(early);
    progress(`before ${spec.phase}: ${before.state} (schema_meta against ${run.image}'s catalog)`);
    const ran: Array<{ phase: "up" | "finish"; call: KongCallResult; containerSeconds: number }> = [];
    const exec = async (phase: "up" | "finish") => {
        progress(`kong migrations ${phase} with ${run.image}`);
        const seq = await runKongSequence(run, [{ args: command(run, phase) }], run.lockTimeoutSeconds + 300);
        const call = seq.results[0];
        if (call.output) process.stderr.write(`${call.output}\n`);
        if (call.code !== 0) failed(run, phase, call);
        ran.push({ phase, call, containerSeconds: seq.containerSeconds });
    };
    const decision = decide(spec.phase, before.state, Object.keys(before.new).length > 0, run.version);
    switch (decision.action) {
        case "run":
            if (decision.note) progress(decision.note);
            for (const phase of decision.commands) await exec(phase);
            break;
        case "done":
            progress(decision.note);
            break;
        case "up-first":
            throw new StepError(`kong migrations up has not completed for ${run.version}: new migrations:\n${describeState(before)}`);
        default:
            refuse(before.state, run.version, describeState(before));
    }
    const after = ran.length > 0 ? await read() : before;
    progress(`after ${spec.phase}: ${after.state}`);
    if (!reached(spec.phase, after.state)) {
        throw notReached(spec.phase, run.version, after.state, ran.map((r) => r.call.output), "the database is now", describeState(after));
    }
    // For the bench: the command and its container are Kong's own; reading the state is ours.
    const own = ran.find((r) => r.phase === spec.phase);
    return {
        version: run.version, phase: spec.phase, before: before.state, after: after.state, ran: ran.length, gate: "schema_meta",
        kongContainers: ran.length, kongSeconds: own ? own.call.seconds : 0, listSeconds: 0, stateSeconds: reads.seconds,
        containerSeconds: ran.reduce((a, r) => a + r.containerSeconds, 0),
    };
}

/** The gate through `kong migrations list`, in the command's container (no catalog for this run). */
async function migrationsByList(spec: Migrations): Promise<object> {
    const run = spec.kong;
    // The command runs only when the list before says it has work (up: new, 5; finish: pending,
    // 4), and the list after only when the command exited 0.
    progress(`kong migrations list, ${spec.phase} if due, list again, in one container of ${run.image}`);
    const seq = await runKongSequence(run, [
        { args: LIST },
        { args: command(run, spec.phase), when: [spec.phase === "up" ? 5 : 4] },
        { args: LIST, when: [0] },
    ], run.lockTimeoutSeconds + 300);
    const [listBefore, cmd, listAfter] = seq.results;
    const before = { state: state(run, listBefore), output: listBefore.output };
    progress(`before ${spec.phase}: ${before.state}`);
    let containers = 1;
    const ran: string[] = [];
    if (cmd) {
        if (cmd.output) process.stderr.write(`${cmd.output}\n`);
        if (cmd.code !== 0) failed(run, spec.phase, cmd);
        ran.push(cmd.output);
    }
    // The list before decided in the container whether the command ran (up: new; finish: pending).
    let decision = decide(spec.phase, before.state, undefined, run.version);
    if (decision.action === "ask-new") {
        const status = await migrationsStatus(run);
        containers++;
        decision = decide(spec.phase, before.state, (status.new_migrations?.length ?? 0) > 0, run.version);
    }
    switch (decision.action) {
        case "run":
            // Run already in the container, unless this is the resume path (finish, then up).
            if (decision.note) progress(decision.note);
            if (!cmd) {
                for (const phase of decision.commands) ran.push(await kong(run, phase));
                containers += decision.commands.length;
            }
            break;
        case "done":
            progress(decision.note);
            break;
        case "up-first":
            throw new StepError(`kong migrations up has not completed for ${run.version}: list reports new migrations:\n${before.output}`);
        default:
            refuse(before.state, run.version, before.output);
    }
    // Nothing ran: the state is the one just read. A command ran in this container: the list after
    // it. The resume path ran its commands in containers of their own: list once more.
    let after = before;
    if (ran.length > (cmd ? 1 : 0)) {
        after = await migrationsList(run);
        containers++;
    } else if (cmd) {
        if (!listAfter) throw new StepError(`kong migrations list after ${spec.phase} (${run.image}) did not run`);
        after = { state: state(run, listAfter), output: listAfter.output };
    }
    progress(`after ${spec.phase}: ${after.state}`);
    if (!reached(spec.phase, after.state)) throw notReached(spec.phase, run.version, after.state, ran, "list now reports", after.output);
    // Timings for the bench: Kong's own (the command alone, plus the container it needs) against ours
    // (the lists that gate it, and any further container).
    const lists = seq.results.filter((r) => r.args === LIST).reduce((a, r) => a + r.seconds, 0);
    return {
        version: run.version, phase: spec.phase, before: before.state, after: after.state, ran: ran.length, gate: "list",
        kongContainers: containers, kongSeconds: cmd ? cmd.seconds : 0, listSeconds: lists, containerSeconds: seq.containerSeconds,
    };
}
