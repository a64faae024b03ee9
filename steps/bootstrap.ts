// bootstrap: `kong migrations bootstrap`, only when `kong migrations list` says the database
// needs it (exit 3). Never `--force`, never `reset`: those destroy data (kong-facts §1.3).
import { migrationsList, runKong } from "./lib/kong";
import { StepError, progress } from "./lib/log";
import { StepSpec } from "./lib/spec";

type Bootstrap = Extract<StepSpec, { step: "bootstrap" }>;

export async function bootstrap(spec: Bootstrap): Promise<object> {
    const before = await migrationsList(spec.kong);
    switch (before.state) {
        case "up-to-date":
            progress(`database already bootstrapped and up to date for Kong ${spec.kong.version}`);
            return { bootstrapped: false };
        case "pending":
            throw new StepError(`the database has pending migrations from an earlier upgrade; finish it with the version that ran ` +
                `\`kong migrations up\`, or restore a backup, before using it for Kong ${spec.kong.version}:\n${before.output}`);
        case "new":
            throw new StepError(`the database holds an older Kong schema than ${spec.kong.version}: set kong.version to the version ` +
                `that uses it now, then upgrade with upgrade.to:\n${before.output}`);
        case "needs-bootstrap":
            break;
    }
    progress(`bootstrapping the database with Kong ${spec.kong.version}`);
    const r = await runKong(spec.kong, ["migrations", "bootstrap"], spec.kong.lockTimeoutSeconds + 120);
    process.stderr.write(r.stdout + r.stderr);
    if (r.code !== 0) throw new StepError(`kong migrations bootstrap failed (exit ${r.code}):\n${(r.stdout + r.stderr).trim()}`);
    const after = await migrationsList(spec.kong);
    if (after.state !== "up-to-date") throw new StepError(`after bootstrap, kong migrations list says ${after.state}:\n${after.output}`);
    return { bootstrapped: true };
}
