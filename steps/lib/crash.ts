// Test-only kill points (the crash test): with KONG_UPGRADE_CRASH_AFTER=N, the step program kills
// itself with SIGKILL right after its Nth SQL statement or file operation completes, as a power cut
// or `kill -9` would. With KONG_UPGRADE_CRASH_COUNT=<file>, it writes how many points it passed.
// Unset (always, outside tests), both cost one comparison per point.
import { writeFileSync } from "fs";

const after = Number(process.env.KONG_UPGRADE_CRASH_AFTER ?? 0);
const countFile = process.env.KONG_UPGRADE_CRASH_COUNT;
let passed = 0;

if (countFile) process.on("exit", () => writeFileSync(countFile, String(passed)));

/** One kill point: a statement was answered or a file operation is done. */
export function crashPoint(): void {
    passed += 1;
    if (after > 0 && passed === after) process.kill(process.pid, "SIGKILL");
}

/** Makes every statement a client sends a kill point (pg's Client.query, promise form). */
export function instrumentQueries(proto: { query: (...args: never[]) => unknown }): void {
    if (!(after > 0 || countFile)) return;
    const original = proto.query;
    proto.query = function (this: unknown, ...args: never[]) {
        const r = original.apply(this, args);
        if (r && typeof (r as Promise<unknown>).then === "function") {
            return (r as Promise<unknown>).then((v) => { crashPoint(); return v; });
        }
        return r;
    } as typeof proto.query;
}
