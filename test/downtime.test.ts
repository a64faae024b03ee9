// The bench's account of the downtime window: Kong's own time against ours, from a timeline.
import { strict as assert } from "assert";
import { describe, it } from "node:test";
import { breakdown } from "../bench/downtime";
import type { TimelineEntry } from "../test/rehearsal/engine";

const T0 = 1_000_000;
const step = (name: string, start: number, end: number, stepSeconds: number, result: Record<string, unknown> = {}): TimelineEntry =>
    ({ name, type: "command:local:Command", op: "create", start: T0 + start, end: T0 + end, ok: true, stepSeconds, result: { seconds: stepSeconds, ...result } });
const node = (name: string, start: number, end: number, statusAt: number): TimelineEntry =>
    ({ name, type: "docker:index/container:Container", op: "create", start: T0 + start, end: T0 + end, ok: true, statusAt: T0 + statusAt });

describe("downtime breakdown", () => {
    const tl: TimelineEntry[] = [
        step("preflight-3-4-3-to-3-5-0", -500, -100, 0.3), // before the window
        step("stop-kong-3-4-3", 0, 1000, 0.9, { stopSeconds: 0.6 }),
        step("snapshot-3-4-3-to-3-5-0", 1000, 1500, 0.4),
        step("migrations-up-3-5-0", 1500, 3500, 1.9, { kongContainers: 1, kongSeconds: 1.0, listSeconds: 0.5, containerSeconds: 0.3 }),
        // nothing due: no command ran, so none of it is Kong's
        step("migrations-finish-3-5-0", 3500, 4500, 0.9, { kongContainers: 1, kongSeconds: 0, listSeconds: 0.4, containerSeconds: 0.4 }),
        node("kong-3-5-0-node-0", 4500, 6200, 5700),
        node("kong-3-5-0-node-1", 4510, 6000, 5900),
        step("verify-kong-3-5-0", 6300, 7000, 0.6, { kongContainers: 1 }),
        { name: "kong-3-4-3-node-0", type: "docker:index/container:Container", op: "delete", start: T0 + 7100, end: T0 + 7200, ok: true },
    ];

    it("counts Kong's own time: docker stop, snapshot, a command that ran with its container, Y until /status answers", () => {
        const b = breakdown(tl);
        assert.ok(typeof b !== "string");
        assert.equal(b.window, 7);
        assert.equal(b.containers, 3);
        assert.deepEqual(b.kong, { stop: 0.6, snapshot: 0.4, migrations: 1.3, yStart: 1.4, total: 0.6 + 0.4 + 1.3 + 1.4 });
        assert.ok(Math.abs(b.ours - (7 - 3.7)) < 1e-9);
        assert.ok(Math.abs(b.gaps - 0.1) < 1e-9, "verify started 100 ms after the last node was healthy");
        // start-up: each step's wall time less its own work
        assert.ok(Math.abs(b.startup - (0.1 + 0.1 + 0.1 + 0.1 + 0.1)) < 1e-9);
    });

    it("opens the window when X's docker stop is issued, and tells the gates apart", () => {
        const gated = tl.map((e) => e.name === "stop-kong-3-4-3" ? { ...e, result: { ...e.result, stoppingAt: T0 + 250 } }
            : e.name === "migrations-up-3-5-0" ? { ...e, result: { ...e.result, gate: "schema_meta", stateSeconds: 0.05, listSeconds: 0 } } : e);
        const b = breakdown(gated);
        assert.ok(typeof b !== "string");
        assert.equal(b.window, 6.75);
        assert.equal(b.beforeStop, 0.25);
        assert.ok(Math.abs(b.ours - (6.75 - 3.7)) < 1e-9);
        assert.deepEqual([b.gates.schemaMeta, b.gates.list], [1, 1]);
        assert.ok(Math.abs(b.gates.seconds - 0.45) < 1e-9);
    });

    it("without an upgrade in the timeline says so", () => {
        assert.equal(typeof breakdown(tl.filter((e) => !e.name.startsWith("verify-"))), "string");
    });
});
