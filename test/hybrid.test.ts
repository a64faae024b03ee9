// Hybrid mode's graphs under Pulumi's mocks: control planes go through the in-place flow, data
// planes move to Y one at a time after Y's control planes verified, and back first on rollback.
import { strict as assert } from "assert";
import { before, describe, it } from "node:test";
import { readSettings } from "../components/config";
import { Runbook, dataPlaneOrderProblems, planRunbook } from "../components/plan";
import { parseVersion } from "../components/versions";
import { Graph, evaluate } from "./helpers/program";
import { planChanges } from "./helpers/diff";

const base = { kong: { version: "3.4.3", role: "hybrid", nodes: 1, dataPlanes: 2 }, database: { password: "hybrid-pw-1" } };
let steady: Graph;
let upgrade: Graph;
let rollback: Graph;
let promoted: Graph;

before(async () => {
    [steady, upgrade, rollback, promoted] = (await Promise.all([
        evaluate(base),
        evaluate({ ...base, upgrade: { to: "3.5.0" } }),
        evaluate({ ...base, upgrade: { to: "3.5.0", rollback: true } }),
        evaluate({ ...base, kong: { ...base.kong, version: "3.5.0" } }),
    ])).map(Graph.of);
});

function chain(g: Graph, names: string[]): void {
    for (let i = 1; i < names.length; i++) assert.ok(g.waitsFor(names[i], names[i - 1]), `${names[i]} must wait for ${names[i - 1]}`);
}

describe("hybrid mode", () => {
    it("steady: certificate, control plane, verify, then each data plane until ready", () => {
        chain(steady, ["cluster-cert", "kong-3-4-3-cp-0", "verify-kong-3-4-3", "kong-3-4-3-dp-0", "ready-kong-3-4-3-dp-0"]);
        chain(steady, ["verify-kong-3-4-3", "kong-3-4-3-dp-1", "ready-kong-3-4-3-dp-1"]);
        const cpPorts = (steady.get("kong-3-4-3-cp-0").inputs.ports as Array<{ internal: number }>).map((p) => p.internal);
        assert.deepEqual(cpPorts, [8001, 8100], "a control plane publishes no proxy");
        const dpPorts = (steady.get("kong-3-4-3-dp-1").inputs.ports as Array<{ internal: number; external: number }>).map((p) => [p.internal, p.external]);
        assert.deepEqual(dpPorts, [[8000, 9010], [8100, 9110]]);
        assert.deepEqual(steady.get("cluster-cert").additionalSecretOutputs.sort(), ["stderr", "stdout"], "the generated key stays secret");
    });

    it("upgrade: control planes in place, then data planes one at a time, never ahead of the control plane", () => {
        chain(upgrade, ["preflight-3-4-3-to-3-5-0", "canary-3-4-3-to-3-5-0", "stop-kong-3-4-3", "snapshot-3-4-3-to-3-5-0", "migrations-up-3-5-0", "migrations-finish-3-5-0",
            "kong-3-5-0-cp-0", "verify-kong-3-5-0",
            "stop-kong-3-4-3-dp-0", "kong-3-5-0-dp-0", "ready-kong-3-5-0-dp-0",
            "stop-kong-3-4-3-dp-1", "kong-3-5-0-dp-1", "ready-kong-3-5-0-dp-1"]);
        assert.ok(!upgrade.has("kong-3-4-3-cp-0") && !upgrade.has("kong-3-4-3-dp-0") && !upgrade.has("kong-3-4-3-dp-1"), "X is deleted last");
        // Stopping X's control plane does not touch its data planes.
        const stopped = (upgrade.spec("stop-kong-3-4-3") as { cluster: { nodes: Array<{ container: string }> } }).cluster.nodes.map((n) => n.container);
        assert.deepEqual(stopped, ["test-kong-3-4-3-cp-0"]);
    });

    it("canary: one control plane on the clone, with the generated certificate as a secret, and no data plane in it", () => {
        chain(upgrade, ["cluster-cert", "canary-3-4-3-to-3-5-0"]);
        const c = upgrade.spec("canary-3-4-3-to-3-5-0") as { node: { role: string }; smokePath?: string };
        assert.equal(c.node.role, "control_plane");
        const env = upgrade.get("canary-3-4-3-to-3-5-0").inputs.environment as Record<string, string>;
        assert.ok(env.KONG_CLUSTER_CERT && env.KONG_CLUSTER_CERT_KEY, "the canary control plane gets the cluster certificate");
        assert.ok(!JSON.stringify(c).includes("-dp-"), "no data plane is named in the canary");
        for (const dp of ["stop-kong-3-4-3-dp-0", "kong-3-5-0-dp-0"]) assert.ok(!upgrade.waitsFor("canary-3-4-3-to-3-5-0", dp));
    });

    it("canary: an operator's cluster certificate reaches the canary as a secret, never in plain", async () => {
        const g = Graph.of(await evaluate({ ...base, kong: { ...base.kong, clusterCert: "CERT-PEM-x1", clusterCertKey: "KEY-PEM-y2" }, upgrade: { to: "3.5.0" } }));
        const env = g.get("canary-3-4-3-to-3-5-0").inputs.environment as Record<string, string>;
        assert.equal(env.KONG_CLUSTER_CERT, "[secret]");
        assert.equal(env.KONG_CLUSTER_CERT_KEY, "[secret]");
        for (const r of g.registrations) assert.ok(!JSON.stringify(r.inputs).includes("KEY-PEM-y2"), `${r.name} holds the key in plain`);
    });

    it("rollback: data planes back to X first (accepted by Y's control plane), then the control-plane rollback", () => {
        chain(rollback, ["preflight-rollback-3-5-0-to-3-4-3", "stop-kong-3-5-0-dp-0", "kong-3-4-3-dp-0", "start-kong-3-4-3-dp-0", "ready-kong-3-4-3-dp-0",
            "stop-kong-3-5-0-dp-1", "kong-3-4-3-dp-1", "start-kong-3-4-3-dp-1", "ready-kong-3-4-3-dp-1",
            "stop-kong-3-5-0", "restore-3-4-3-from-3-5-0", "kong-3-4-3-cp-0", "start-kong-3-4-3", "verify-kong-3-4-3"]);
        assert.ok(!rollback.has("kong-3-5-0-cp-0") && !rollback.has("kong-3-5-0-dp-0"));
    });

    it("promotion keeps Y's control and data planes as they are", () => {
        const changes = planChanges(upgrade.registrations, promoted.registrations);
        for (const n of ["kong-3-5-0-cp-0", "kong-3-5-0-dp-0", "kong-3-5-0-dp-1"]) {
            assert.equal(promoted.get(n).urn, upgrade.get(n).urn);
            assert.deepEqual(changes.get(n), { op: "same", keys: [] }, n);
        }
        assert.deepEqual(promoted.get("cluster-cert").inputs, upgrade.get("cluster-cert").inputs);
    });

    it("refuses hybrid-only settings in traditional mode and a certificate without its key", () => {
        assert.throws(() => readSettings({ kong: { version: "3.4.3", dataPlanes: 2 }, database: { password: "p" } }, "dev"), /kong\.dataPlanes only applies to kong\.role: hybrid/);
        assert.throws(() => readSettings({ kong: { ...base.kong, clusterCert: "PEM" }, database: { password: "p" } }, "dev"), /kong\.clusterCert and kong\.clusterCertKey go together/);
    });
});

describe("dataPlaneOrderProblems", () => {
    const s = readSettings({ ...base, upgrade: { to: "3.5.0" } }, "dev");
    it("the planned upgrade holds the order", () => assert.deepEqual(dataPlaneOrderProblems(planRunbook(s), parseVersion("3.4.3", "v")), []));
    it("a data plane started on Y before Y's control plane is reported", () => {
        const r = planRunbook(s);
        const dp = r.steps.findIndex((st) => st.kind === "data-plane");
        const [moved] = r.steps.splice(dp, 1);
        r.steps.splice(r.steps.findIndex((st) => st.kind === "stop"), 0, moved);
        const broken: Runbook = { ...r };
        assert.match(dataPlaneOrderProblems(broken, parseVersion("3.4.3", "v")).join("\n"), /data plane 0 would start on 3\.5\.0 while control plane 3\.4\.3 serves/);
    });
});
