// Polling a Kong node's HTTP endpoint while it starts. A port Docker publishes is open before
// Kong listens behind it: docker-proxy accepts the connection and then holds it without an answer
// until the request's own timeout (seen: 5 s). One request at a time would notice readiness only
// when the held one times out; so a new request starts every `everyMs`, on a fixed cadence,
// while earlier ones are still held, and the first acceptable answer ends the wait. When the wait
// ends, every request still in flight is aborted (a held fetch keeps the process alive).
import { StepError, sleep } from "./log";

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
 * Until `accept(answer)` returns undefined for an answer of `url`, starting a request every
 * `everyMs` (each may wait `attemptMs`); `accept` says why an answer is not yet good enough.
 * `alive` runs about once a second and throws to end the wait early (e.g. the container exited).
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
    let nextAlive = Date.now() + 1000;
    try {
        while (!done) {
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
            if (opts.alive && Date.now() >= nextAlive) {
                nextAlive = Date.now() + 1000;
                await opts.alive();
            }
            // The next request on the cadence, or earlier only when an answer was accepted.
            await Promise.race([sleep(everyMs), accepted]);
        }
        return done;
    } finally {
        stop.abort();
    }
}
