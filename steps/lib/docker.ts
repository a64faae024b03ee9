// The docker CLI, as the step programs use it. KONG_UPGRADE_DOCKER names another binary
// (a test double); DOCKER_HOST and friends are honoured as docker itself honours them.
import { exec, ExecResult } from "./exec";
import { StepError, progress } from "./log";
import { DockerEndpoint } from "./spec";

export function dockerBinary(): string {
    return process.env.KONG_UPGRADE_DOCKER || "docker";
}

/** The environment that points the docker CLI at `endpoint`; empty for the CLI's own default. */
export function dockerEnv(endpoint: DockerEndpoint | undefined): Record<string, string> {
    if (!endpoint) return {};
    // Empty values switch off TLS settings this process may have inherited for another host.
    return { DOCKER_HOST: endpoint.host, DOCKER_TLS_VERIFY: endpoint.certPath ? "1" : "", DOCKER_CERT_PATH: endpoint.certPath ?? "" };
}

/** Where a message says a container is: on a named host, or nothing for the default one. */
export function onHost(endpoint: DockerEndpoint | undefined): string {
    return endpoint ? ` on ${endpoint.host}` : "";
}

export async function docker(args: string[], env: Record<string, string> = {}, timeoutSeconds = 0, endpoint?: DockerEndpoint): Promise<ExecResult> {
    try {
        return await exec([dockerBinary(), ...args], { ...env, ...dockerEnv(endpoint) }, timeoutSeconds);
    } catch (e) {
        throw new StepError(`cannot run ${dockerBinary()}: ${(e as Error).message}; is the Docker CLI installed?`);
    }
}

export interface ContainerState {
    name: string;
    running: boolean;
    /** Docker health status: healthy, unhealthy, starting, or "" without a health check. */
    health: string;
    labels: Record<string, string>;
    /** Between a crash and the restart its restart policy makes. */
    restarting: boolean;
    /** The exit code of its latest run (0 while it has never exited). */
    exitCode: number;
    /** How often its restart policy restarted it: Kong exiting at start-up shows here. */
    restartCount: number;
}

/** State of a container, or undefined when it does not exist. `timeoutSeconds`: 0 waits as long as docker does. */
export async function inspectContainer(name: string, endpoint?: DockerEndpoint, timeoutSeconds = 0): Promise<ContainerState | undefined> {
    // One field a line: JSON has no raw newline, while a health check's output may hold any other separator.
    const r = await docker(["container", "inspect", "--format", "{{json .State}}\n{{json .Config.Labels}}\n{{.RestartCount}}", name], {}, timeoutSeconds, endpoint);
    if (r.code !== 0) {
        if (/no such (container|object)/i.test(r.stderr)) return undefined;
        throw new StepError(`docker container inspect ${name}${onHost(endpoint)} failed: ${r.stderr.trim()}`);
    }
    const [state, labels, restarts] = r.stdout.trim().split("\n");
    const s = JSON.parse(state) as { Running: boolean; Restarting?: boolean; ExitCode?: number; Health?: { Status: string } };
    return {
        name, running: s.Running, health: s.Health?.Status ?? "", labels: (JSON.parse(labels) as Record<string, string> | null) ?? {},
        restarting: s.Restarting ?? false, exitCode: s.ExitCode ?? 0, restartCount: Number(restarts) || 0,
    };
}

/** Running containers carrying every label given. */
export async function runningWithLabels(labels: Record<string, string>, endpoint?: DockerEndpoint): Promise<ContainerState[]> {
    const filters = Object.entries(labels).flatMap(([k, v]) => ["--filter", `label=${k}=${v}`]);
    const r = await docker(["ps", "--format", "{{.Names}}", ...filters], {}, 0, endpoint);
    if (r.code !== 0) throw new StepError(`docker ps${onHost(endpoint)} failed: ${r.stderr.trim()}`);
    const names = r.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    const states = await Promise.all(names.map((n) => inspectContainer(n, endpoint)));
    return states.filter((s): s is ContainerState => s !== undefined && s.running);
}

/**
 * A check, to run about once a second while a node starts, that throws when the node has failed:
 * it is gone, it exited for good, or it keeps failing (Kong exits at start-up on a bad setting,
 * and `unless-stopped` brings it back to fail again). Restarts count from the first check (a
 * container keeps its restart count across its life, and a rollback starts X's old ones again),
 * and one is waited out: a node that failed once, say on a database hiccup, may still come up.
 * The message carries Kong's last lines, so nobody waits out a timeout to learn what `docker
 * logs` says. Docker not answering is not the node failing: it is noted and the wait goes on.
 */
export function startingWatch(container: string, endpoint?: DockerEndpoint): () => Promise<void> {
    let baseline: number | undefined;
    return async () => {
        let s: ContainerState | undefined;
        try {
            s = await inspectContainer(container, endpoint, 10);
        } catch (e) {
            progress(`${(e as Error).message.split("\n")[0]}; still waiting for ${container}'s /status`);
            return;
        }
        baseline ??= s?.restartCount;
        const restarts = s ? s.restartCount - (baseline ?? 0) : 0;
        const exited = s && s.exitCode !== 0 ? `exited (exit code ${s.exitCode})` : "exited";
        const failed = !s ? "does not exist"
            : restarts >= 2 ? `${exited} and was restarted ${restarts} times`
                : !s.running && !s.restarting ? exited : undefined;
        if (!failed) return;
        const logs = s ? await docker(["logs", "--tail", "30", container], {}, 30, endpoint).catch(() => undefined) : undefined;
        const output = logs ? `${logs.stdout}${logs.stderr}`.trim() : "";
        throw new StepError(`${container}${onHost(endpoint)} ${failed} instead of starting` + (output ? `. Kong's output (docker logs --tail 30):\n${output}` : ""));
    };
}
