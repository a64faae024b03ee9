// Polling a Kong node's HTTP endpoint while it starts. A port Docker publishes is open before
// Kong listens behind it: docker-proxy accepts the connection and then holds it without an answer
// until the request's own timeout (seen: 5 s). One request at a time would notice readiness only
// when the held one times out; so a new request starts every `everyMs`, on a fixed cadence,
// while earlier ones are still held, and the first acceptable answer ends the wait. When the wait
// ends, every request still in flight is aborted (a held fetch keeps the process alive).
import { StepError } from "./log";

/** A pause that does not hold the process once the wait is over (steps/main.ts holds it while a step runs). */
function pause(ms: number): Promise<void> {
    return new Promise((resolve) => { setTimeout(resolve, ms).unref(); });
}

export interface Answer {
    status: number;
    body: unknown;
}

async function fetchAnswer(url: string, signal: AbortSignal): Promise<Answer> {
    const r = await fetch(url, { signal });
    const text = await r.text();
    try {
        return { status: r.status, body: JSON.parse(text) as unknown };
    } catch {
        return { status: r.status, body: text };
    }
}

/**
 * A Kong node's /status answer is ready when it says its database is reachable (Kong answers 200
 * either way, kong-facts §3.4); otherwise why not, for `untilAnswers`.
 */
export function databaseReachable({ body }: Answer): string | undefined {
    const reachable = (body as { database?: { reachable?: boolean } } | undefined)?.database?.reachable;
    return reachable === true ? undefined : `database.reachable is ${String(reachable)}`;
}

/**
 * Until `accept(answer)` returns undefined for an answer of `url`, starting a request every
 * `everyMs` (each may wait `attemptMs`); `accept` says why an answer is not yet good enough.
 * `alive` runs about once a second beside the requests (never delaying one) and throws to end the
 * wait early (e.g. the container exited).
 * On timeout the message gives the latest answer's reason, or else the latest transport error.
 */
export async function untilAnswers(url: string, deadline: number, accept: (a: Answer) => string | undefined, timedOut: (last: string) => string,
    opts: { everyMs?: number; attemptMs?: number; alive?: () => Promise<void> } = {}): Promise<Answer> {
    const everyMs = opts.everyMs ?? 100;
    const stop = new AbortController();
    let lastAnswer: string | undefined;
    let lastError = "no answer yet";
    let done: Answer | undefined;
    let finished: () => void = () => undefined;
    const accepted = new Promise<void>((resolve) => { finished = resolve; });
    let dead: unknown;
    const watching = opts.alive && (async (alive: () => Promise<void>) => {
        while (!done && !stop.signal.aborted) {
            await Promise.race([pause(1000), accepted]);
            if (done || stop.signal.aborted) return;
            try { await alive(); } catch (e) { dead = e; finished(); return; }
        }
    })(opts.alive);
    try {
        while (!done) {
            if (dead !== undefined) throw dead;
            if (Date.now() > deadline) throw new StepError(timedOut(lastAnswer ?? lastError));
            // Aborted by its own timeout or when the wait ends (AbortSignal.any needs Node 20.3).
            const attempt = new AbortController();
            const timer = setTimeout(() => attempt.abort(), opts.attemptMs ?? 3000);
            const onStop = () => attempt.abort();
            stop.signal.addEventListener("abort", onStop, { once: true });
            void fetchAnswer(url, attempt.signal).finally(() => {
                clearTimeout(timer);
                stop.signal.removeEventListener("abort", onStop);
            }).then((a) => {
                const why = accept(a);
                if (why === undefined) { done ??= a; finished(); } else lastAnswer = why;
            }, (e: Error) => {
                if (!stop.signal.aborted) lastError = `${e.message}${e.cause ? ` (${String((e.cause as Error).message ?? e.cause)})` : ""}`;
            });
            // The next request on the cadence, or earlier when an answer was accepted or the node failed.
            await Promise.race([pause(everyMs), accepted]);
            if (dead !== undefined && !done) throw dead;
        }
        return done;
    } finally {
        // The watcher ends at its next wake; its docker call in flight, if any, is not waited for.
        stop.abort();
        finished();
        void watching;
    }
}
