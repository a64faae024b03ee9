// Test-only kill points (the crash test): with KONG_UPGRADE_CRASH_AFTER=N, the step program kills
// itself with SIGKILL right after its Nth SQL statement or file operation completes, as a power cut
// or `kill -9` would. With KONG_UPGRADE_CRASH_COUNT=<file>, it writes how many points it passed.
// Unset (always, outside tests), both cost one comparison per point.
// Read when the step starts (armCrashPoints), not when this module loads: the step runner's
// workers load every module before they are given a step and its environment (steps/runner.ts).
import { writeFileSync } from "fs";

let after = 0;
let passed = 0;
let countFile: string | undefined;

/** Reads the kill-point settings of the step about to run. */
export function armCrashPoints(env: NodeJS.ProcessEnv = process.env): void {
    after = Number(env.KONG_UPGRADE_CRASH_AFTER ?? 0);
    passed = 0;
    countFile = env.KONG_UPGRADE_CRASH_COUNT;
    if (countFile) process.on("exit", flushCrashCount);
}

/** Writes how many points the step passed (at its exit; a runner's worker before it reports its status). */
export function flushCrashCount(): void {
    if (countFile) writeFileSync(countFile, String(passed));
}

/** One kill point: a statement was answered or a file operation is done. */
export function crashPoint(): void {
    passed += 1;
    if (after > 0 && passed === after) process.kill(process.pid, "SIGKILL");
}

let uncounted: ((this: unknown, ...args: never[]) => unknown) | undefined;

/** A statement that is not a kill point: a step runner's work between steps (a prepared connection), not the step's. */
export function uncountedQuery(client: object, text: string): Promise<unknown> {
    const q = uncounted ?? (client as { query: (t: string) => Promise<unknown> }).query;
    return (q as (this: unknown, t: string) => Promise<unknown>).call(client, text);
}

/** Makes every statement a client sends a kill point (pg's Client.query, promise form). */
export function instrumentQueries(proto: { query: (...args: never[]) => unknown }): void {
    const original = proto.query;
    uncounted = original;
    proto.query = function (this: unknown, ...args: never[]) {
        const r = original.apply(this, args);
        if (r && typeof (r as Promise<unknown>).then === "function") {
            return (r as Promise<unknown>).then((v) => { crashPoint(); return v; });
        }
        return r;
    } as typeof proto.query;
}
