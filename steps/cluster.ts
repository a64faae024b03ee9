// stop and start: a cluster's node containers, through the docker CLI.
import { liftReadOnly, withServer } from "./lib/db";
import { docker, inspectContainer } from "./lib/docker";
import { StepError, progress, sleep } from "./lib/log";
import { databasePassword } from "./lib/secrets";
import { StepSpec } from "./lib/spec";

type Stop = Extract<StepSpec, { step: "stop" }>;
type Start = Extract<StepSpec, { step: "start" }>;

/** Stops every node gracefully and, after an online snapshot, lifts the database's read-only freeze. */
export async function stopCluster(spec: Stop): Promise<object> {
    if (!spec.liftFreeze) return stopNodes(spec);
    const db = spec.liftFreeze;
    const lift = () => withServer(db, databasePassword(), (c) => liftReadOnly(c, db.database));
    try {
        const out = await stopNodes(spec);
        await lift();
        progress(`read-only freeze on ${db.database} lifted`);
        return out;
    } catch (e) {
        // X may still be serving: give it its writes back before reporting the failure.
        await lift().catch(() => undefined);
        throw e;
    }
}

/** Stops every node gracefully (SIGQUIT, `drainSeconds` to drain) and confirms each is down. */
async function stopNodes(spec: Stop): Promise<object> {
    const present: string[] = [];
    const absent: string[] = [];
    for (const node of spec.cluster.nodes) {
        ((await inspectContainer(node.container)) ? present : absent).push(node.container);
    }
    if (absent.length > 0) progress(`not present, nothing to stop: ${absent.join(", ")}`);
    if (present.length > 0) {
        progress(`stopping ${spec.cluster.version}: ${present.join(", ")} (${spec.drainSeconds}s to drain)`);
        const r = await docker(["stop", "--time", String(spec.drainSeconds), ...present], {}, spec.drainSeconds + 60);
        if (r.code !== 0) throw new StepError(`docker stop failed: ${r.stderr.trim()}`);
    }
    for (const name of present) {
        const s = await inspectContainer(name);
        if (s?.running) throw new StepError(`${name} is still running after docker stop`);
    }
    progress(`cluster ${spec.cluster.version} is down`);
    return { stopped: present, absent };
}

/** Starts every node (running ones are left alone) and waits until Docker reports each healthy. */
export async function startCluster(spec: Start): Promise<object> {
    const names = spec.cluster.nodes.map((n) => n.container);
    for (const name of names) {
        if (!(await inspectContainer(name))) throw new StepError(`${name} does not exist; it should have been declared before this step`);
    }
    const r = await docker(["start", ...names]);
    if (r.code !== 0) throw new StepError(`docker start failed: ${r.stderr.trim()}`);
    const deadline = Date.now() + spec.timeoutSeconds * 1000;
    for (const name of names) {
        for (;;) {
            const s = await inspectContainer(name);
            if (s?.running && (s.health === "healthy" || s.health === "")) break;
            if (Date.now() > deadline) {
                throw new StepError(`${name} is not healthy after ${spec.timeoutSeconds}s (running: ${s?.running}, health: ${s?.health}); ` +
                    `see docker logs ${name}`);
            }
            await sleep(500);
        }
    }
    progress(`cluster ${spec.cluster.version} is running and healthy: ${names.join(", ")}`);
    return { started: names };
}
