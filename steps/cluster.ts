// stop and start: a cluster's node containers, through the docker CLI.
import { docker, inspectContainer, onHost } from "./lib/docker";
import { StepError, pollUntil, progress } from "./lib/log";
import { databasePassword } from "./lib/secrets";
import { DockerEndpoint, NodeRef, StepSpec } from "./lib/spec";

type Stop = Extract<StepSpec, { step: "stop" }>;
type Start = Extract<StepSpec, { step: "start" }>;

/** Stops every node gracefully and, after an online snapshot, lifts the database's read-only freeze. */
export async function stopCluster(spec: Stop): Promise<object> {
    if (!spec.liftFreeze) return stopNodes(spec);
    // Loaded only here: a plain stop starts without the pg driver.
    const { liftReadOnly, withServer } = require("./lib/db") as typeof import("./lib/db");
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

/** The nodes of a cluster grouped by the Docker host they run on, in order of first appearance. */
function byHost(nodes: NodeRef[]): Array<{ endpoint?: DockerEndpoint; nodes: NodeRef[] }> {
    const groups = new Map<string, { endpoint?: DockerEndpoint; nodes: NodeRef[] }>();
    for (const node of nodes) {
        const key = node.docker?.host ?? "";
        if (!groups.has(key)) groups.set(key, { endpoint: node.docker, nodes: [] });
        groups.get(key)!.nodes.push(node);
    }
    return [...groups.values()];
}

/** Stops every node gracefully (SIGQUIT, `drainSeconds` to drain), host by host, and confirms each is down. */
async function stopNodes(spec: Stop): Promise<object> {
    // Hosts drain in parallel: the downtime is one drain period, not one per host.
    let stopSeconds = 0; // `docker stop` itself, Kong's graceful exit (the bench's "Kong's own")
    let stoppingAt: number | undefined; // when the first `docker stop` was issued: X stops serving, the window opens
    const perHost = await Promise.all(byHost(spec.cluster.nodes).map(async ({ endpoint, nodes }) => {
        const here: string[] = [];
        const gone: string[] = [];
        for (const node of nodes) ((await inspectContainer(node.container, endpoint)) ? here : gone).push(node.container);
        if (here.length === 0) return { here, gone };
        progress(`stopping ${spec.cluster.version}${onHost(endpoint)}: ${here.join(", ")} (${spec.drainSeconds}s to drain)`);
        const t = Date.now();
        stoppingAt = Math.min(stoppingAt ?? t, t);
        const r = await docker(["stop", "--time", String(spec.drainSeconds), ...here], {}, spec.drainSeconds + 60, endpoint);
        if (r.code !== 0) throw new StepError(`docker stop${onHost(endpoint)} failed: ${r.stderr.trim()}`);
        stopSeconds = Math.max(stopSeconds, (Date.now() - t) / 1000);
        const after = await Promise.all(here.map((name) => inspectContainer(name, endpoint)));
        const running = after.filter((s) => s?.running).map((s) => s!.name);
        if (running.length > 0) throw new StepError(`${running.join(", ")} ${running.length > 1 ? "are" : "is"} still running${onHost(endpoint)} after docker stop`);
        return { here, gone };
    }));
    const present = perHost.flatMap((h) => h.here);
    const absent = perHost.flatMap((h) => h.gone);
    if (absent.length > 0) progress(`not present, nothing to stop: ${absent.join(", ")}`);
    progress(`cluster ${spec.cluster.version} is down`);
    return { stopped: present, absent, stopSeconds, ...(stoppingAt !== undefined ? { stoppingAt } : {}) };
}

/** Starts every node (running ones are left alone) and waits until Docker reports each healthy. */
export async function startCluster(spec: Start): Promise<object> {
    const groups = byHost(spec.cluster.nodes);
    for (const { endpoint, nodes } of groups) {
        for (const node of nodes) {
            if (!(await inspectContainer(node.container, endpoint))) {
                throw new StepError(`${node.container} does not exist${onHost(endpoint)}; it should have been declared before this step`);
            }
        }
        const r = await docker(["start", ...nodes.map((n) => n.container)], {}, 0, endpoint);
        if (r.code !== 0) throw new StepError(`docker start${onHost(endpoint)} failed: ${r.stderr.trim()}`);
    }
    const deadline = Date.now() + spec.timeoutSeconds * 1000;
    for (const { endpoint, nodes } of groups) {
        for (const { container: name } of nodes) {
            await pollUntil(deadline, async () => {
                const s = await inspectContainer(name, endpoint);
                return s?.running && (s.health === "healthy" || s.health === "") ? undefined : `running: ${s?.running}, health: ${s?.health}`;
            }, (last) => `${name} is not healthy after ${spec.timeoutSeconds}s (${last}); see docker logs ${name}${onHost(endpoint)}`);
        }
    }
    const names = spec.cluster.nodes.map((n) => n.container);
    progress(`cluster ${spec.cluster.version} is running and healthy: ${names.join(", ")}`);
    return { started: names };
}
