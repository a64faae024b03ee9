// migrations: `kong migrations up` or `finish` with one version's image, run once, gated on the
// state `kong migrations list` reports before and after: exit 0 alone proves nothing, e.g. when
// another runner held the lock Kong prints "aborted: …" and exits 0 (kong-facts §1.3, §9).
import { MigrationState, migrationsList, migrationsStatus, runKong } from "./lib/kong";
import { StepError, progress } from "./lib/log";
import { KongRun, StepSpec } from "./lib/spec";

type Migrations = Extract<StepSpec, { step: "migrations" }>;

async function kong(run: KongRun, phase: "up" | "finish"): Promise<string> {
    progress(`kong migrations ${phase} with ${run.image}`);
    const r = await runKong(run, ["migrations", phase, "--lock-timeout", String(run.lockTimeoutSeconds)], run.lockTimeoutSeconds + 300);
    const output = (r.stdout + r.stderr).trim();
    if (output) process.stderr.write(`${output}\n`);
    if (r.code !== 0) throw new StepError(`kong migrations ${phase} (${run.image}) failed with exit ${r.code}:\n${output}`);
    return output;
}

function refuse(state: MigrationState, version: string, output: string): never {
    if (state === "needs-bootstrap") {
        throw new StepError(`not a bootstrapped Kong database: kong migrations list (${version}) exits 3. ` +
            `Check database.name and database.schema:\n${output}`);
    }
    throw new StepError(`unexpected migration state ${state} for Kong ${version}:\n${output}`);
}

export async function migrations(spec: Migrations): Promise<object> {
    const run = spec.kong;
    const before = await migrationsList(run);
    progress(`before ${spec.phase}: ${before.state}`);
    const ran: string[] = [];
    if (spec.phase === "up") {
        switch (before.state) {
            case "up-to-date":
                progress(`nothing new for ${run.version}: up already ran`);
                break;
            case "new":
                ran.push(await kong(run, "up"));
                break;
            case "pending": {
                // Preflight refused pending migrations before X stopped, so pending ones here come
                // from this step's own interrupted run. Kong's `up` refuses to run over them; its
                // way forward is to finish them first, then run `up` for the rest.
                const status = await migrationsStatus(run);
                if (status.new_migrations && status.new_migrations.length > 0) {
                    progress(`an interrupted up left migrations pending and others new: finishing the pending ones, then up`);
                    ran.push(await kong(run, "finish"));
                    ran.push(await kong(run, "up"));
                } else {
                    progress(`up already ran for ${run.version}; its migrations await finish`);
                }
                break;
            }
            default:
                refuse(before.state, run.version, before.output);
        }
    } else {
        switch (before.state) {
            case "up-to-date":
                progress(`nothing pending for ${run.version}: finish already ran`);
                break;
            case "pending":
                ran.push(await kong(run, "finish"));
                break;
            case "new":
                throw new StepError(`kong migrations up has not completed for ${run.version}: list reports new migrations:\n${before.output}`);
            default:
                refuse(before.state, run.version, before.output);
        }
    }
    const after = await migrationsList(run);
    progress(`after ${spec.phase}: ${after.state}`);
    const ok = spec.phase === "up" ? after.state === "pending" || after.state === "up-to-date" : after.state === "up-to-date";
    if (!ok) {
        const aborted = ran.some((o) => o.includes("aborted: another node is performing database changes"));
        throw new StepError(`kong migrations ${spec.phase} (${run.version}) exited 0 but list now reports ${after.state}` +
            (aborted ? `: Kong aborted because another node held the migrations lock; nothing was migrated. Run pulumi up again once it is free` : "") +
            `:\n${after.output}`);
    }
    return { version: run.version, phase: spec.phase, before: before.state, after: after.state, ran: ran.length };
}
