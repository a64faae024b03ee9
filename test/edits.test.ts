// Day two: what each configuration edit does in each state of the stack's life, by the engine's
// and providers' rules (test/helpers/diff.ts) applied to the inputs and options the program
// registers under Pulumi's mocks. Old state = what an earlier run registered (for a failed run:
// what completed before the failure, beside what the run before it left); new = this run.
import { strict as assert } from "assert";
import { before, describe, it } from "node:test";
import { Registration } from "../bin/evaluate";
import { Change, planChanges, stateAfterFailure } from "./helpers/diff";
import { Graph, ProgramConfig, evaluate } from "./helpers/program";

const PASSWORD = "edits-test-password-9Kp";
const kong = { version: "3.4.3", nodes: 2 };
const database = { password: PASSWORD };
const UPGRADE = { to: "3.7.1", via: ["3.5.0", "3.6.1"] };

type Edit = { name: string; kong?: Record<string, unknown>; upgrade?: Record<string, unknown> };
const EDITS: Edit[] = [
    { name: "kong.lockTimeoutSeconds", kong: { lockTimeoutSeconds: 900 } },
    { name: "upgrade.terminateSessions", upgrade: { terminateSessions: true } },
    { name: "kong.drainSeconds", kong: { drainSeconds: 5 } },
    { name: "kong.env", kong: { env: { KONG_LOG_LEVEL: "debug" } } },
    { name: "kong.plugins", kong: { plugins: "bundled,my-plugin" } },
];

/** The four configurations of the stack's life, with an edit applied. */
function shapes(e?: Edit): Record<"steady" | "upgrade" | "promoted" | "rollback", ProgramConfig> {
    const k = { ...kong, ...e?.kong };
    return {
        steady: { kong: k, database },
        upgrade: { kong: k, database, upgrade: { ...UPGRADE, ...e?.upgrade } },
        promoted: { kong: { ...k, version: "3.7.1" }, database },
        rollback: { kong: k, database, upgrade: { ...UPGRADE, rollback: true, ...e?.upgrade } },
    };
}

const graphs = new Map<string, Graph>();
const key = (shape: string, edit?: Edit) => `${shape}|${edit?.name ?? ""}`;

before(async () => {
    const jobs: Array<[string, ProgramConfig]> = [];
    for (const e of [undefined, ...EDITS]) for (const [shape, config] of Object.entries(shapes(e))) jobs.push([key(shape, e), config]);
    // Secrets revealed: a changed password or certificate must count as a change.
    const evals = await Promise.all(jobs.map(([, config]) => evaluate(config, { revealSecrets: true })));
    jobs.forEach(([k], i) => graphs.set(k, Graph.of(evals[i])));
});

const g = (shape: string, edit?: Edit) => graphs.get(key(shape, edit))!;
const CONTAINER = "docker:index/container:Container";
const COMMAND = "command:local:Command";

/** The resources that are not "same", as "name: op". */
function changed(changes: Map<string, Change>, only: (name: string) => boolean = () => true): string[] {
    return [...changes].filter(([n, c]) => c.op !== "same" && only(n)).map(([n, c]) => `${n}: ${c.op}`).sort();
}

/** Upgrade steps in runbook order, each a possible point of failure. */
const UPGRADE_STEPS = ["preflight-3-4-3-to-3-7-1", "stop-kong-3-4-3", "snapshot-3-4-3-to-3-7-1", "migrations-up-3-5-0", "migrations-finish-3-5-0",
    "migrations-up-3-6-1", "migrations-finish-3-6-1", "migrations-up-3-7-1", "migrations-finish-3-7-1", "kong-3-7-1-node-0", "verify-kong-3-7-1"];

/** State after an upgrade run that failed at `step`: steady's resources, plus what the run completed before the failure. */
function failedAt(step: string): Registration[] {
    const run = g("upgrade");
    return stateAfterFailure(g("steady").registrations, run.registrations, (n) => n !== step && !run.waitsFor(n, step));
}

describe("a step runs again only when what it is changes", () => {
    for (const edit of EDITS.filter((e) => e.name !== "kong.plugins")) {
        it(`${edit.name}: after a failure at any step, no completed step runs again; the failed one and those after it run`, () => {
            for (const step of UPGRADE_STEPS) {
                const state = failedAt(step);
                const changes = planChanges(state, g("upgrade", edit).registrations);
                const inState = new Set(state.map((r) => r.name));
                for (const [name, c] of changes) {
                    const r = g("upgrade", edit).get(name);
                    if (!inState.has(name)) {
                        assert.equal(c.op, "create", `${name} after a failure at ${step}`);
                    } else if (r.type === COMMAND) {
                        assert.equal(c.op, "same", `${name} completed before a failure at ${step}; ${edit.name} must not re-run it (${c.keys.join(", ")})`);
                    } else if (r.type === CONTAINER && r.name.startsWith("kong-")) {
                        // Y's nodes exist only when the failure came at verify; their own settings still apply to them.
                        const expected = edit.name === "kong.env" ? "replace" : ["kong.drainSeconds", "kong.healthTimeoutSeconds"].includes(edit.name) ? "update" : "same";
                        assert.equal(c.op, expected, `${name} after a failure at ${step} with ${edit.name}`);
                    } else {
                        assert.equal(c.op, "same", `${name} after a failure at ${step}`);
                    }
                }
                assert.ok(changes.get(step)?.op === "create", `${step} failed, so it runs again`);
            }
        });
    }

    it("kong.plugins: mid-upgrade, the completed migrations run again (plugins bring migrations), nothing before them", () => {
        const edit = EDITS.find((e) => e.name === "kong.plugins")!;
        const changes = planChanges(failedAt("migrations-up-3-6-1"), g("upgrade", edit).registrations);
        assert.deepEqual(changed(changes, (n) => g("upgrade", edit).get(n).type === COMMAND && !/3-6-1$|3-7-1$/.test(n)),
            ["migrations-finish-3-5-0: replace", "migrations-up-3-5-0: replace"]);
        assert.equal(changes.get("snapshot-3-4-3-to-3-7-1")!.op, "same");
        assert.equal(changes.get("preflight-3-4-3-to-3-7-1")!.op, "same");
    });

    const settled: Array<[string, string]> = [["steady", "steady"], ["upgraded", "upgrade"], ["promoted", "promoted"], ["rolled back", "rollback"]];
    const expectations: Record<string, (shape: string) => string[]> = {
        "kong.lockTimeoutSeconds": () => [],
        "upgrade.terminateSessions": () => [],
        "kong.healthTimeoutSeconds": (shape) => nodesOf(shape).map((n) => `${n}: update`),
        "kong.drainSeconds": (shape) => nodesOf(shape).map((n) => `${n}: update`),
        // Node environment forces replacement; in steady state each node's /status wait runs again after it.
        "kong.env": (shape) => [...nodesOf(shape).map((n) => `${n}: replace`),
            ...(shape === "steady" || shape === "promoted" ? nodesOf(shape).map((n) => `status-${n}: replace`) : [])],
        "kong.plugins": (shape) => [...nodesOf(shape).map((n) => `${n}: replace`),
            ...(shape === "steady" || shape === "promoted" ? nodesOf(shape).map((n) => `status-${n}: replace`) : []),
            ...(shape === "upgrade" ? ["3-5-0", "3-6-1", "3-7-1"].flatMap((v) => [`migrations-finish-${v}: replace`, `migrations-up-${v}: replace`]) : [])],
    };
    const nodesOf = (shape: string) => g(shape).names((r) => r.type === CONTAINER && r.name.startsWith("kong-"));
    for (const [label, shape] of settled) {
        for (const edit of EDITS) {
            if (edit.upgrade && (shape === "steady" || shape === "promoted")) continue;
            it(`${label} × ${edit.name}: ${["kong.lockTimeoutSeconds", "upgrade.terminateSessions"].includes(edit.name) ? "nothing changes" : "only the nodes' own settings apply"}`, () => {
                const changes = planChanges(g(shape).registrations, g(shape, edit).registrations);
                assert.deepEqual(changed(changes), expectations[edit.name](shape).sort());
            });
        }
    }
});

describe("steady-state changes roll", () => {
    it("a node setting that forces replacement replaces node 0, waits for its /status, then node 1", () => {
        const edit = EDITS.find((e) => e.name === "kong.env")!;
        const after = g("steady", edit);
        const changes = planChanges(g("steady").registrations, after.registrations);
        assert.equal(changes.get("kong-3-4-3-node-1")!.op, "replace");
        // Docker replaces delete-first, and the engine registers node 1 only once status-…-node-0 is done:
        // node 1 goes down only when node 0 is back and answers /status.
        assert.ok(after.waitsFor("kong-3-4-3-node-1", "status-kong-3-4-3-node-0"));
        assert.ok(after.waitsFor("status-kong-3-4-3-node-0", "kong-3-4-3-node-0"));
        // Only property dependencies cascade a delete-before-replace (step_generator calculateDependentReplacements);
        // node 1 takes nothing from node 0 or its wait, so it is not deleted together with node 0.
        const node1 = JSON.stringify(after.get("kong-3-4-3-node-1").inputs);
        assert.ok(!node1.includes("kong-3-4-3-node-0-id") && !node1.includes("status-kong"), "node 1's inputs do not hold node 0");
    });
});

describe("readable diffs", () => {
    it("a non-secret setting's change shows as itself; only secret values are secret", async () => {
        const [a, b] = (await Promise.all([evaluate({ kong, database }), evaluate({ kong: { ...kong, env: { KONG_LOG_LEVEL: "debug" } }, database })])).map(Graph.of);
        const envs = (x: Graph) => x.get("kong-3-4-3-node-0").inputs.envs as unknown[];
        assert.ok(Array.isArray(envs(a)), "a list, not one secret");
        assert.deepEqual(envs(b).filter((e) => !envs(a).includes(e)), ["KONG_LOG_LEVEL=debug"]);
        assert.deepEqual(envs(a).filter((e) => e === "[secret]").length, 1, "the password, and only it");
        assert.ok(!JSON.stringify(envs(a)).includes(PASSWORD));
    });
});

describe("adopting docker.hosts for the host already in use", () => {
    it("changes nothing: same URNs, same provider, no input that forces replacement", async () => {
        const [before, after] = (await Promise.all([
            evaluate({ kong, database }, { revealSecrets: true }),
            evaluate({ kong, database, docker: { hosts: ["unix:///var/run/docker.sock"] } }, { revealSecrets: true }),
        ])).map(Graph.of);
        const changes = planChanges(before.registrations, after.registrations);
        assert.deepEqual(changed(changes), []);
        assert.deepEqual(after.registrations.filter((r) => r.custom).map((r) => r.urn).sort(), before.registrations.filter((r) => r.custom).map((r) => r.urn).sort());
    });
});
