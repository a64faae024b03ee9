// Polling a Kong node's HTTP endpoint while it starts. A port Docker publishes is open before
// Kong listens behind it: docker-proxy accepts the connection and then holds it without an answer
// until the request's own timeout (seen: 5 s). One request at a time would notice readiness only
// when the held one times out; so a new request starts every `everyMs` while earlier ones are
// still held, and the first acceptable answer ends the wait.
import { StepError, sleep } from "./log";

export interface Answer {
    status: number;
    body: unknown;
}

export async function fetchAnswer(url: string, timeoutMs: number): Promise<Answer> {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await r.text();
    try {
        return { status: r.status, body: JSON.parse(text) as unknown };
    } catch {
        return { status: r.status, body: text };
    }
}

/**
 * Until `accept(answer)` returns undefined for an answer of `url`, starting a request every
 * `everyMs` (each may wait `attemptMs`); `accept` returns why an answer is not yet good enough.
 * `alive` runs once a second: it throws to end the wait early (the container exited).
 */
export async function untilAnswers(url: string, deadline: number, accept: (a: Answer) => string | undefined, timedOut: (last: string) => string,
    opts: { everyMs?: number; attemptMs?: number; alive?: () => Promise<void> } = {}): Promise<Answer> {
    const everyMs = opts.everyMs ?? 100;
    let last = "no answer yet";
    let done: Answer | undefined;
    let failure: Error | undefined;
    const inFlight = new Set<Promise<void>>();
    let lastAlive = Date.now();
    while (!done && !failure) {
        if (Date.now() > deadline) throw new StepError(timedOut(last));
        const attempt = fetchAnswer(url, opts.attemptMs ?? 3000).then((a) => {
            const why = accept(a);
            if (why === undefined) done ??= a; else last = why;
        }, (e: Error) => { last = `${e.message}${e.cause ? ` (${String((e.cause as Error).message ?? e.cause)})` : ""}`; });
        inFlight.add(attempt);
        void attempt.finally(() => inFlight.delete(attempt));
        if (opts.alive && Date.now() - lastAlive >= 1000) {
            lastAlive = Date.now();
            await opts.alive().catch((e: Error) => { failure = e; });
        }
        // The next request, or earlier if one in flight answers.
        await Promise.race([sleep(everyMs), attempt]);
    }
    if (failure) throw failure;
    return done!;
}
