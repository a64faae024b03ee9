// Progress goes to stderr (Pulumi streams it); the step's result is one JSON line on stdout.
import * as net from "net";

/** A failure the operator can act on: its message is printed as is, without a stack. */
export class StepError extends Error {}

export function progress(message: string): void {
    process.stderr.write(`[${new Date().toISOString()}] ${message}\n`);
}

export function result(value: object): void {
    process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** What `result` printed: the last line of a step's stdout, parsed; undefined when it is not JSON. */
export function parseStepResult<T = Record<string, unknown>>(stdout: string | undefined): T | undefined {
    try {
        return JSON.parse(stdout?.trim().split("\n").pop() ?? "") as T;
    } catch {
        return undefined;
    }
}

/** UTC timestamp usable in a database name: 20261127130745. */
export function stamp(d = new Date()): string {
    return d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

export function sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
}

/**
 * Asks `check` every `everyMs` (100 ms: a node's readiness is seen within a tenth of a second,
 * inside the downtime window) until it answers undefined (done); its other answers say what it
 * saw. Past `deadline` (ms since the epoch), fails with `timedOut(last answer)`.
 */
export async function pollUntil(deadline: number, check: () => Promise<string | undefined>, timedOut: (last: string) => string, everyMs = 100): Promise<void> {
    for (;;) {
        const seen = await check();
        if (seen === undefined) return;
        if (Date.now() > deadline) throw new StepError(timedOut(seen));
        await sleep(everyMs);
    }
}

/** A TCP port nothing listens on now, on 127.0.0.1 (the canary's node, test servers). */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.listen(0, "127.0.0.1", () => {
            const port = (s.address() as net.AddressInfo).port;
            s.close(() => resolve(port));
        });
        s.on("error", reject);
    });
}
