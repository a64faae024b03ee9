// The resource graph of each configuration, from Pulumi's mocks: what is declared, in which
// order (declared dependencies, transitively), and what is left undeclared so that the engine
// deletes it last.
import { strict as assert } from "assert";
import { before, describe, it } from "node:test";
import { Evaluation } from "../bin/evaluate";
import { Graph, evaluate, itRefuses } from "./helpers/program";
import { planChanges } from "./helpers/diff";

const PASSWORD = "graph-test-password-7Hq";
const base = { kong: { version: "3.4.3", nodes: 2 }, database: { password: PASSWORD } };
const upgrade = (u: Record<string, unknown>) => ({ ...base, upgrade: u });

const CONTAINER = "docker:index/container:Container";
const COMMAND = "command:local:Command";

let steady: Graph;
let direct: Graph;
let path3: Graph;
let rollback: Graph;
let promoted: Graph;
let steadyUpdate: Evaluation;

before(async () => {
    const [a, b, c, d, e, f] = await Promise.all([
        evaluate(base),
        evaluate(upgrade({ to: "3.5.0" })),
        evaluate(upgrade({ to: "3.7.1", via: ["3.5.0", "3.6.1"] })),
        evaluate(upgrade({ to: "3.7.1", rollback: true })),
        evaluate({ ...base, kong: { version: "3.7.1", nodes: 2 } }),
        evaluate(base, { preview: false }),
    ]);
    [steady, direct, path3, rollback, promoted] = [a, b, c, d, e].map(Graph.of);
    steadyUpdate = f;
});

function assertChain(g: Graph, chain: string[]): void {
    for (let i = 1; i < chain.length; i++) {
        assert.ok(g.waitsFor(chain[i], chain[i - 1]), `${chain[i]} must wait for ${chain[i - 1]}`);
        assert.ok(!g.waitsFor(chain[i - 1], chain[i]), `${chain[i - 1]} must not wait for ${chain[i]}`);
    }
}

const nodesOf = (g: Graph, version: string) => g.names((r) => r.type === CONTAINER && r.name.startsWith(`kong-${version}-node-`));

describe("steady (no upgrade block)", () => {
    it("declares database → bootstrap → nodes (healthy) → verify", () => {
        assert.deepEqual(nodesOf(steady, "3-4-3"), ["kong-3-4-3-node-0", "kong-3-4-3-node-1"]);
        for (const node of nodesOf(steady, "3-4-3")) {
            assertChain(steady, ["database-kong", "bootstrap", node, "verify-kong-3-4-3"]);
            const inputs = steady.get(node).inputs;
            assert.equal(inputs.wait, true);
            assert.deepEqual((inputs.healthcheck as { tests: string[] }).tests, ["CMD", "kong", "health"]);
        }
        assert.deepEqual(steady.names((r) => r.type === COMMAND), ["database-superuser", "bootstrap", "status-kong-3-4-3-node-0", "status-kong-3-4-3-node-1", "verify-kong-3-4-3"]);
    });

    it("publishes the Admin and Status APIs on loopback and gives each node its own ports", () => {
        const ports = nodesOf(steady, "3-4-3").map((n) => steady.get(n).inputs.ports as Array<{ internal: number; external: number; ip: string }>);
        assert.deepEqual(ports[0].map((p) => [p.internal, p.external, p.ip]), [[8000, 8000, "0.0.0.0"], [8001, 8001, "127.0.0.1"], [8100, 8100, "127.0.0.1"]]);
        assert.deepEqual(ports[1].map((p) => p.external), [8010, 8011, 8110]);
        const db = steady.get("database-server").inputs.ports as Array<{ internal: number; external: number; ip: string }>;
        assert.deepEqual(db.map((p) => [p.internal, p.external, p.ip]), [[5432, 15432, "127.0.0.1"]]);
    });

    it("bootstrap runs once in the database's life: later changes to it are ignored", () => {
        assert.deepEqual(steady.get("bootstrap").ignoreChanges.sort(), ["addPreviousOutputInEnv", "create", "environment", "logging"]);
        assert.deepEqual(steady.get("bootstrap").inputs.triggers, [JSON.stringify({ step: "bootstrap", database: "kong", schema: null })]);
    });

    it("rolls: node 1 waits until node 0 answers /status, so a replacement takes down one node at a time", () => {
        assertChain(steady, ["kong-3-4-3-node-0", "status-kong-3-4-3-node-0", "kong-3-4-3-node-1", "status-kong-3-4-3-node-1", "verify-kong-3-4-3"]);
        const gate = steady.spec("status-kong-3-4-3-node-0") as { step: string; path: string; cluster: { nodes: Array<{ container: string; statusUrl: string }> } };
        assert.deepEqual([gate.step, gate.path, gate.cluster.nodes.map((n) => [n.container, n.statusUrl])],
            ["ready", "/status", [["test-kong-3-4-3-node-0", "http://127.0.0.1:8100"]]]);
        // A replaced node has a new container id: its wait runs again.
        assert.equal((steady.get("status-kong-3-4-3-node-0").inputs.triggers as string[]).length, 2);
    });

    it("exports the runbook and the serving cluster in update mode", () => {
        assert.ok(steadyUpdate.ok);
        if (!steadyUpdate.ok) return;
        assert.equal(steadyUpdate.outputs.mode, "steady");
        assert.equal(steadyUpdate.outputs.servingVersion, "3.4.3");
        assert.deepEqual(steadyUpdate.outputs.nodes, ["test-kong-3-4-3-node-0", "test-kong-3-4-3-node-1"]);
    });
});

describe("upgrade (direct path 3.4.3 → 3.5.0)", () => {
    it("runs preflight → canary → stop X → snapshot → migrations up → finish → Y nodes → verify, each after the one before", () => {
        for (const node of nodesOf(direct, "3-5-0")) {
            assertChain(direct, ["bootstrap", "preflight-3-4-3-to-3-5-0", "canary-3-4-3-to-3-5-0", "stop-kong-3-4-3", "snapshot-3-4-3-to-3-5-0",
                "migrations-up-3-5-0", "migrations-finish-3-5-0", node, "verify-kong-3-5-0"]);
        }
    });

    it("does not declare X's nodes, so the engine deletes them last, after every step succeeded", () => {
        assert.deepEqual(nodesOf(direct, "3-4-3"), []);
        assert.equal(nodesOf(direct, "3-5-0").length, 2);
    });

    it("pulls every image it needs before stopping X", () => {
        assert.ok(direct.waitsFor("stop-kong-3-4-3", "image-kong-3-5-0"));
    });

    it("keeps the snapshot: retained on delete, and no delete command that could drop it", () => {
        const snap = direct.get("snapshot-3-4-3-to-3-5-0");
        assert.equal(snap.retainOnDelete, true);
        assert.equal(snap.inputs.delete, undefined);
        for (const name of direct.names((r) => r.type === COMMAND)) assert.equal(direct.get(name).inputs.delete, undefined, name);
    });

    it("runs migrations with Y's image, plugins and database settings, as Y's nodes use them", () => {
        const up = direct.spec("migrations-up-3-5-0") as { kong: { image: string; plugins: string; pg: { host: string; database: string; user: string } } };
        assert.equal(up.kong.image, "kong:3.5.0");
        const env = direct.get("kong-3-5-0-node-0").inputs.envs as string[];
        assert.ok(env.includes("KONG_PLUGINS=bundled") && env.includes("KONG_PG_DATABASE=kong"), "non-secret settings are plain, so a diff shows them");
        assert.deepEqual(env.filter((e) => e === "[secret]").length, 1, "only the password's element is secret");
        assert.equal(up.kong.plugins, "bundled");
        assert.deepEqual([up.kong.pg.host, up.kong.pg.database, up.kong.pg.user], ["kong-database", "kong", "kong"]);
        assert.equal((direct.spec("preflight-3-4-3-to-3-5-0") as { kong: { image: string } }).kong.image, "kong:3.5.0");
    });
});

describe("canary (upgrade.canary, default on)", () => {
    type Canary = {
        clone: string; hops: Array<Record<string, unknown>>; node: { role: string; container: string }; copy: { image: string; network: string };
        snapshot?: string; smokePath?: string; declarativeExport?: unknown;
    };
    it("rehearses every hop with exactly the settings of the real migrations steps, on a clone named for this upgrade", () => {
        const c = path3.spec("canary-3-4-3-to-3-7-1") as Canary;
        assert.match(c.clone, /^kong_[0-9a-f]{8}_canary_3_4_3_to_3_7_1$/);
        assert.deepEqual(c.hops, ["3-5-0", "3-6-1", "3-7-1"].map((v) => (path3.spec(`migrations-up-${v}`) as { kong: unknown }).kong));
        assert.deepEqual(c.node, { container: "test-kong-canary-3-7-1", role: "traditional", drainSeconds: 30 });
        assert.deepEqual([c.copy.image, c.copy.network, c.snapshot], ["postgres:15", "kong-upgrade-test", "template"]);
        assert.ok(path3.waitsFor("canary-3-4-3-to-3-7-1", "image-kong-3-7-1"), "every image is there before the canary");
    });

    it("upgrade.canary: false declares no canary, and the plan says so", async () => {
        const ev = await evaluate(upgrade({ to: "3.5.0", canary: false }), { preview: false });
        assert.ok(ev.ok);
        if (!ev.ok) return;
        const g = Graph.of(ev);
        assert.deepEqual(g.names((r) => r.name.startsWith("canary-")), []);
        assertChain(g, ["preflight-3-4-3-to-3-5-0", "stop-kong-3-4-3"]);
        assert.match((ev.outputs.runbook as string[])[0], /no canary \(upgrade\.canary: false\)/);
    });

    it("forecasts nothing it did not measure: with an online snapshot the snapshot is outside the window", async () => {
        const g = Graph.of(await evaluate(upgrade({ to: "3.5.0", onlineSnapshot: true, snapshotStrategy: "dump", dumpImage: "pg:15" })));
        const c = g.spec("canary-3-4-3-to-3-5-0") as Canary;
        assert.equal(c.snapshot, undefined);
        assert.equal(c.copy.image, "pg:15");
        const d = Graph.of(await evaluate(upgrade({ to: "3.5.0", snapshotStrategy: "dump" })));
        assert.equal((d.spec("canary-3-4-3-to-3-5-0") as Canary).snapshot, "dump");
        assert.equal((d.spec("canary-3-4-3-to-3-5-0") as Canary).declarativeExport, undefined);
    });

    it("times the snapshot's declarative export on the clone with X's image when it falls inside the window", async () => {
        const e = Graph.of(await evaluate(upgrade({ to: "3.5.0", declarativeExport: true })));
        assert.deepEqual((e.spec("canary-3-4-3-to-3-5-0") as Canary).declarativeExport,
            (e.spec("snapshot-3-4-3-to-3-5-0") as { declarativeExport: { kong: unknown } }).declarativeExport.kong);
        const online = Graph.of(await evaluate(upgrade({ to: "3.5.0", declarativeExport: true, onlineSnapshot: true })));
        assert.equal((online.spec("canary-3-4-3-to-3-5-0") as Canary).declarativeExport, undefined);
    });

    it("is not part of a rollback", () => {
        assert.deepEqual(rollback.names((r) => r.name.startsWith("canary-")), []);
    });
});

describe("Kong Gateway Enterprise (kong/kong-gateway, four-part versions, license)", () => {
    it("uses the Enterprise image and passes the license as a secret to nodes and migrations", async () => {
        const g = Graph.of(await evaluate({
            kong: { version: "3.7.1.2", image: "kong/kong-gateway", nodes: 1, license: "LICENSE-JSON-abc" },
            database: { password: PASSWORD }, upgrade: { to: "3.8.0.0" },
        }));
        assert.equal(g.get("image-kong-3-8-0-0").inputs.name, "kong/kong-gateway:3.8.0.0");
        assertChain(g, ["stop-kong-3-7-1-2", "snapshot-3-7-1-2-to-3-8-0-0", "migrations-up-3-8-0-0", "migrations-finish-3-8-0-0", "kong-3-8-0-0-node-0"]);
        const up = g.get("migrations-up-3-8-0-0");
        assert.equal((up.inputs.environment as Record<string, string>).KONG_LICENSE_DATA, "[secret]");
        assert.equal((g.spec("migrations-up-3-8-0-0") as { kong: { license: boolean; image: string } }).kong.license, true);
        for (const r of g.registrations) assert.ok(!JSON.stringify(r.inputs).includes("LICENSE-JSON-abc"), `${r.name} holds the license in plain`);
    });
});

describe("upgrade with an online snapshot", () => {
    it("takes the snapshot while X runs, then stops X and lifts the freeze, then migrates", async () => {
        const g = Graph.of(await evaluate(upgrade({ to: "3.5.0", onlineSnapshot: true })));
        assertChain(g, ["preflight-3-4-3-to-3-5-0", "canary-3-4-3-to-3-5-0", "snapshot-3-4-3-to-3-5-0", "stop-kong-3-4-3", "migrations-up-3-5-0", "migrations-finish-3-5-0", "kong-3-5-0-node-0"]);
        assert.equal((g.spec("snapshot-3-4-3-to-3-5-0") as { online?: boolean }).online, true);
        assert.equal((g.spec("stop-kong-3-4-3") as { liftFreeze?: { database: string } }).liftFreeze?.database, "kong");
        assert.equal((direct.spec("stop-kong-3-4-3") as { liftFreeze?: unknown }).liftFreeze, undefined);
    });
});

describe("upgrade along a longer path (3.4.3 → 3.7.1 via 3.5.0, 3.6.1)", () => {
    it("takes one snapshot, then each hop's up and finish with that hop's image, in order, then Y", () => {
        assert.equal(path3.names((r) => r.name.startsWith("snapshot-")).length, 1);
        const chain = ["preflight-3-4-3-to-3-7-1", "canary-3-4-3-to-3-7-1", "stop-kong-3-4-3", "snapshot-3-4-3-to-3-7-1",
            "migrations-up-3-5-0", "migrations-finish-3-5-0", "migrations-up-3-6-1", "migrations-finish-3-6-1",
            "migrations-up-3-7-1", "migrations-finish-3-7-1", "kong-3-7-1-node-0", "verify-kong-3-7-1"];
        assertChain(path3, chain);
        for (const hop of ["3.5.0", "3.6.1", "3.7.1"]) {
            const slug = hop.replace(/\./g, "-");
            assert.equal((path3.spec(`migrations-up-${slug}`) as { kong: { image: string } }).kong.image, `kong:${hop}`);
            assert.equal((path3.spec(`migrations-finish-${slug}`) as { kong: { image: string } }).kong.image, `kong:${hop}`);
        }
        assert.deepEqual(nodesOf(path3, "3-5-0").concat(nodesOf(path3, "3-6-1")), [], "hops start no nodes");
    });
});

describe("rollback (upgrade.rollback: true)", () => {
    it("runs preflight → stop Y → restore → X nodes → start X → verify", () => {
        for (const node of nodesOf(rollback, "3-4-3")) {
            assertChain(rollback, ["preflight-rollback-3-7-1-to-3-4-3", "stop-kong-3-7-1", "restore-3-4-3-from-3-7-1", node,
                "start-kong-3-4-3", "verify-kong-3-4-3"]);
        }
    });

    it("declares neither Y's nodes nor migrations; the upgrade's snapshot resource is declared with exactly the upgrade's inputs", async () => {
        assert.deepEqual(nodesOf(rollback, "3-7-1"), []);
        assert.deepEqual(rollback.names((r) => /^migrations-/.test(r.name)), []);
        // Same URN and inputs as in the upgrade: Pulumi sees it unchanged, runs nothing, and its
        // stored record (which snapshot, whose, its checksum) flows into preflight and restore.
        const back = Graph.of(await evaluate(upgrade({ to: "3.7.1", via: ["3.5.0", "3.6.1"], rollback: true })));
        const snap = "snapshot-3-4-3-to-3-7-1";
        assert.equal(back.get(snap).urn, path3.get(snap).urn);
        const { triggers: upgradeTriggers, environment: upgradeEnv, ...upgradeInputs } = path3.get(snap).inputs;
        const { triggers: _ignored, environment: rollbackEnv, ...rollbackInputs } = back.get(snap).inputs;
        assert.deepEqual(rollbackInputs, upgradeInputs);
        // The environment differs only by the upgrade preflight's catalogs (not declared in a
        // rollback), and it is tuning (ignored): Pulumi sees the snapshot unchanged.
        const { KONG_UPGRADE_CATALOGS: catalogs, ...upgradeRest } = upgradeEnv as Record<string, unknown>;
        assert.ok(catalogs !== undefined);
        assert.deepEqual(rollbackEnv, upgradeRest);
        assert.deepEqual(planChanges(path3.registrations, back.registrations).get(snap), { op: "same", keys: [] });
        // The upgrade re-takes it whenever its preflight ran again (a retry after a rollback: X
        // served in between); the rollback ignores that input, so nothing runs there.
        // Its identity (step.ts), then the preflight's result.
        assert.equal((upgradeTriggers as unknown[]).length, 2);
        assert.ok(path3.waitsFor(snap, "preflight-3-4-3-to-3-7-1"));
        assert.ok(back.get(snap).ignoreChanges.includes("triggers"));
        assert.ok(!path3.get(snap).ignoreChanges.includes("triggers"));
        assert.ok(_ignored !== undefined);
        assert.ok(back.waitsFor("preflight-rollback-3-7-1-to-3-4-3", snap));
        for (const step of ["preflight-rollback-3-7-1-to-3-4-3", "restore-3-4-3-from-3-7-1"]) {
            assert.ok(back.waitsFor(step, snap), `${step} takes the snapshot's record`);
        }
    });

    it("restores the snapshot this upgrade recorded, of this stack; a named snapshot replaces it (and no snapshot resource is declared)", async () => {
        const spec = rollback.spec("restore-3-4-3-from-3-7-1") as { prefix: string; snapshot?: string; strategy: string; stack: string };
        assert.match(spec.prefix, /^kong_[0-9a-f]{8}_snap_3_4_3_to_3_7_1_$/);
        assert.equal(spec.stack, "test");
        assert.equal(spec.snapshot, undefined);
        assert.equal(spec.strategy, "rename");
        const named = Graph.of(await evaluate(upgrade({ to: "3.7.1", rollback: true, snapshot: "kong_0a1b2c3d_snap_3_4_3_to_3_7_1_20261127120000" })));
        assert.equal((named.spec("restore-3-4-3-from-3-7-1") as { snapshot: string }).snapshot, "kong_0a1b2c3d_snap_3_4_3_to_3_7_1_20261127120000");
        assert.deepEqual(named.names((r) => /^snapshot-/.test(r.name)), []);
    });

    it("X's nodes are declared exactly as in the steady graph, so a stopped X is restarted, not replaced", () => {
        // `wait` differs (verify polls Y's readiness in the window) but is ignored: no diff at all.
        const changes = planChanges(steady.registrations, rollback.registrations);
        for (const node of nodesOf(steady, "3-4-3")) {
            assert.equal(rollback.get(node).urn, steady.get(node).urn);
            assert.deepEqual(changes.get(node), { op: "same", keys: [] }, node);
        }
    });
});

describe("promote (kong.version set to Y, upgrade block removed)", () => {
    it("Y's nodes keep their URN and every input, so nothing is replaced", () => {
        const changes = planChanges(path3.registrations, promoted.registrations);
        for (const node of nodesOf(path3, "3-7-1")) {
            assert.equal(promoted.get(node).urn, path3.get(node).urn);
            assert.deepEqual(changes.get(node), { op: "same", keys: [] }, node);
            // Created inside the window without Docker's wait; declared with it once promoted.
            assert.deepEqual([path3.get(node).inputs.wait, promoted.get(node).inputs.wait], [false, true]);
        }
    });

    it("the shared database resources are identical in every shape", () => {
        for (const g of [direct, path3, rollback, promoted]) {
            for (const name of ["database-server", "database-role", "database-kong", "network", "bootstrap"]) {
                assert.equal(g.get(name).urn, steady.get(name).urn);
                if (name !== "bootstrap") assert.deepEqual(g.get(name).inputs, steady.get(name).inputs, name);
            }
        }
    });
});

describe("secrets", () => {
    it("the password is never a plain input, command line or stack output", async () => {
        for (const g of [steady, direct, path3, rollback]) {
            for (const r of g.registrations) {
                assert.ok(!JSON.stringify(r.inputs).includes(PASSWORD), `${r.name} holds the password in plain`);
            }
            for (const name of g.names((r) => r.type === COMMAND)) {
                const c = g.get(name);
                const env = c.inputs.environment as Record<string, string>;
                if (!/^(stop|start|status)-|^database-superuser$/.test(name)) assert.equal(env.KONG_PG_PASSWORD, "[secret]", `${name}: the password travels as a secret`);
                else assert.equal(env.KONG_PG_PASSWORD, undefined, `${name} needs no password`);
                assert.deepEqual(c.additionalSecretOutputs.sort(), ["stderr", "stdout"], `${name}: outputs secret`);
                assert.match(String(c.inputs.create), /^exec env -u BASH_ENV -u POSIXLY_CORRECT bash build\/step-programs\/steps\/run-step\.sh [a-z-]+$/);
            }
        }
        assert.ok(steadyUpdate.ok && !JSON.stringify(steadyUpdate.outputs).includes(PASSWORD));
        assert.ok(steady.get("database-role").secretInputs.includes("password"));
    });
});

describe("invalid configuration fails before any resource exists, saying what to change", () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
        ["malformed version", { ...base, kong: { version: "3.4" } }, /kong\.version is "3\.4", which is not an exact Kong version/],
        ["2.7 to 3.x", { ...base, kong: { version: "2.7.0" }, upgrade: { to: "3.4.3" } }, /Kong 2\.7 cannot be upgraded to 3\.4 directly; upgrade to 2\.8 first/],
        ["downgrade", upgrade({ to: "3.3.2" }), /Kong cannot migrate down; .*upgrade\.rollback: true/],
        ["rollback without upgrade.to", { ...base, upgrade: { rollback: true } }, /upgrade\.rollback needs upgrade\.to/],
        ["longer path without via", upgrade({ to: "3.7.1" }), /Kong routes it through 3\.5 and 3\.6\. Add .* upgrade\.via/],
        ["nodes < 1", { ...base, kong: { version: "3.4.3", nodes: 0 } }, /kong\.nodes must be a whole number from 1 to 64, not 0/],
        ["external without host", { ...base, database: { mode: "external", password: "x" } }, /database\.host is required when database\.mode is external/],
        ["port out of range", { ...base, kong: { version: "3.4.3", ports: { proxy: 70000 } } }, /kong\.ports\.proxy must be a whole number from 1 to 65535, not 70000/],
        ["unknown key", { ...base, kong: { version: "3.4.3", nodez: 3 } }, /unknown key kong\.nodez \(did you mean kong\.nodes\?\)/],
        ["unknown top-level key", { ...base, upgarde: { to: "3.5.0" } }, /unknown key kong-upgrade:upgarde \(did you mean kong-upgrade:upgrade\?\)/],
        ["missing password", { kong: { version: "3.4.3" } }, /database\.password is required: pulumi config set --secret --path database\.password/],
        ["canary on a first Docker host that is not this machine", {
            kong: { version: "3.4.3", adminAddress: "0.0.0.0" }, database: { mode: "external", host: "10.0.0.2", password: "x" },
            docker: { hosts: ["ssh://ops@edge-b"] }, upgrade: { to: "3.5.0" },
        }, /upgrade\.canary publishes its Y node on 127\.0\.0\.1 of docker\.hosts\[0\].*ssh:\/\/ops@edge-b is not this machine.*upgrade\.canary: false/],
    ];
    itRefuses(cases);
});
