// The downtime window of one rehearsed upgrade (X stopped → Y verified) from the rehearsal's
// timeline, split into Kong's own time and ours. Kong's own ("the floor"): X's `docker stop`
// (its graceful exit), the snapshot's work, each `kong migrations up`/`finish` inside its
// container plus that container's start and removal (one container per command is Kong's
// minimum), and Y's nodes from creation until /status first answers. Ours: everything else —
// step-program start-up, reading the migration state that gates each command (schema_meta, or
// `kong migrations list` where no catalog was learnt), extra containers, the waits' lag,
// verify's checks, gaps between steps. The window opens when X's `docker stop` is issued.
import type { TimelineEntry } from "../test/rehearsal/engine";

export interface Breakdown {
    window: number;
    /** Per kind of step: its span in the window, its step programs' own work, their start-up. */
    kinds: Array<{ label: string; span: number; own?: number; startup?: number; steps: number }>;
    gaps: number;
    startup: number;
    /** Kong CLI containers (`docker run … kong`) in the window. */
    containers: number;
    kong: { stop: number; snapshot: number; migrations: number; yStart: number; total: number };
    ours: number;
    /** How the migration steps read the state that gates them, and what reading it took. */
    gates: { schemaMeta: number; list: number; seconds: number };
    /** From the stop step's start until X's `docker stop`: X still served. */
    beforeStop: number;
}

const num = (v: unknown) => (typeof v === "number" ? v : 0);

export function breakdown(tl: TimelineEntry[]): Breakdown | string {
    const start = tl.find((e) => e.name.startsWith("stop-kong-") && e.op !== "same");
    const end = tl.find((e) => e.name.startsWith("verify-kong-") && e.op !== "same");
    if (!start || !end) return "the rehearsal timeline has no upgrade in it";
    const inWindow = tl.filter((e) => e.start >= start.start && e.end <= end.end && e.op !== "same").sort((a, b) => a.start - b.start);
    const kinds: Array<[string, RegExp]> = [["stop", /^stop-/], ["snapshot", /^snapshot-/], ["migrations", /^migrations-/], ["Y start", /-node-\d+$/], ["verify", /^verify-/]];
    let startup = 0;
    const out: Breakdown["kinds"] = [];
    for (const [label, re] of kinds) {
        const es = inWindow.filter((e) => re.test(e.name));
        // Y's nodes start in parallel: their share of the window is the span, not the sum.
        const span = es.length ? (Math.max(...es.map((e) => e.end)) - Math.min(...es.map((e) => e.start))) / 1000 : 0;
        const steps = es.filter((e) => e.stepSeconds !== undefined);
        const own = steps.reduce((a, e) => a + (e.stepSeconds ?? 0), 0);
        const overhead = steps.reduce((a, e) => a + (e.end - e.start) / 1000 - (e.stepSeconds ?? 0), 0);
        startup += overhead;
        out.push(steps.length ? { label, span, own, startup: overhead, steps: es.length } : { label, span, steps: es.length });
    }
    let gaps = 0;
    for (let i = 1; i < inWindow.length; i++) gaps += Math.max(0, inWindow[i].start - Math.max(...inWindow.slice(0, i).map((e) => e.end))) / 1000;
    const results = inWindow.map((e) => e.result ?? {});
    const stop = inWindow.filter((e) => /^stop-/.test(e.name)).reduce((a, e) => a + num(e.result?.stopSeconds), 0);
    const snapshot = inWindow.filter((e) => /^snapshot-/.test(e.name)).reduce((a, e) => a + (e.stepSeconds ?? 0), 0);
    // A step that ran its command: the command and its container are Kong's; the lists are ours.
    const migrations = inWindow.filter((e) => /^migrations-/.test(e.name))
        .reduce((a, e) => a + (num(e.result?.kongSeconds) > 0 ? num(e.result?.kongSeconds) + num(e.result?.containerSeconds) : 0), 0);
    const nodes = inWindow.filter((e) => /-node-\d+$/.test(e.name));
    const yStart = nodes.length && nodes.every((e) => e.statusAt !== undefined)
        ? (Math.max(...nodes.map((e) => e.statusAt!)) - Math.min(...nodes.map((e) => e.start))) / 1000 : 0;
    const total = stop + snapshot + migrations + yStart;
    // X stops serving when its `docker stop` is issued (SIGQUIT): the stop step's own start-up
    // before that is X still serving, so the window opens there.
    const opened = num(start.result?.stoppingAt) || start.start;
    const window = (end.end - opened) / 1000;
    const steps = inWindow.filter((e) => /^migrations-/.test(e.name)).map((e) => e.result ?? {});
    const gates = {
        schemaMeta: steps.filter((r) => r.gate === "schema_meta").length, list: steps.filter((r) => r.gate !== "schema_meta").length,
        seconds: steps.reduce((a, r) => a + num(r.stateSeconds) + num(r.listSeconds), 0),
    };
    return {
        window, kinds: out, gaps, startup, containers: results.reduce((a, r) => a + num(r.kongContainers), 0),
        kong: { stop, snapshot, migrations, yStart, total }, ours: window - total, gates, beforeStop: (opened - start.start) / 1000,
    };
}

export function downtimeSection(tl: TimelineEntry[] | undefined, label: string, file: string): { lines: string[]; ours?: number } {
    if (!tl) return { lines: [`${label}: no rehearsal timeline (.rehearsal/${file}); run \`npm run rehearse\` first`] };
    const b = breakdown(tl);
    if (typeof b === "string") return { lines: [`${label}: ${b}`] };
    const start = tl.find((e) => e.name.startsWith("stop-kong-") && e.op !== "same")!;
    const lines = [`${label}, rehearsed ${new Date(start.start).toISOString()}: downtime window ${b.window.toFixed(2)}s`];
    for (const k of b.kinds) {
        lines.push(`  ${k.label.padEnd(11)} ${k.span.toFixed(2).padStart(6)}s` + (k.own !== undefined
            ? `  (step programs' own work ${k.own.toFixed(2)}s, their process start-up ${k.startup!.toFixed(2)}s, ${k.steps} step(s))` : ""));
    }
    lines.push(`  the window opens at X's docker stop, ${b.beforeStop.toFixed(2)}s after the stop step started (X served until then)`);
    lines.push(`  gaps between steps ${b.gaps.toFixed(2)}s, step-program start-up ${b.startup.toFixed(2)}s; Kong CLI containers in the window: ${b.containers}`);
    lines.push(`  migration state read from schema_meta by ${b.gates.schemaMeta} step(s), by kong migrations list by ${b.gates.list}: ${b.gates.seconds.toFixed(2)}s`);
    lines.push(`  Kong's own ${b.kong.total.toFixed(2)}s = X's docker stop ${b.kong.stop.toFixed(2)}s + snapshot ${b.kong.snapshot.toFixed(2)}s` +
        ` + up/finish in their containers ${b.kong.migrations.toFixed(2)}s + Y until /status answers ${b.kong.yStart.toFixed(2)}s`);
    lines.push(`  ours ${b.ours.toFixed(2)}s (the window less Kong's own)`);
    return { lines, ours: b.ours };
}
