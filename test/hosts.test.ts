// Clusters over several Docker hosts, under Pulumi's mocks: one provider per host, the stack's
// network and images on each, every node on the host placement.ts gives it (the same for X and
// Y), step programs pointed at the right host, and a host added to a running cluster moving nothing.
import { strict as assert } from "assert";
import { before, describe, it } from "node:test";
import { Registration } from "../bin/evaluate";
import { Graph, ProgramConfig, evaluate } from "./helpers/program";

const external = { mode: "external", host: "10.0.0.2", password: "hosts-pw-3" };
const LOCAL = "unix:///var/run/docker.sock";
const EDGE_B = { host: "ssh://ops@edge-b", address: "10.0.0.7" };
const twoHosts: ProgramConfig = {
    kong: { version: "3.4.3", nodes: 3, adminAddress: "0.0.0.0" }, database: external, docker: { hosts: [LOCAL, EDGE_B] },
};
const CONTAINER = "docker:index/container:Container";

let steady: Graph;
let upgrade: Graph;
let rollback: Graph;
let added: Graph;
let grown: Graph;
let single: Graph;
let hybrid: Graph;

before(async () => {
    [steady, upgrade, rollback, added, grown, single, hybrid] = (await Promise.all([
        evaluate(twoHosts),
        evaluate({ ...twoHosts, upgrade: { to: "3.5.0" } }),
        evaluate({ ...twoHosts, upgrade: { to: "3.5.0", rollback: true } }),
        // A third host joins the running 3-node cluster at node 3: nothing may move.
        evaluate({ ...twoHosts, docker: { hosts: [LOCAL, EDGE_B, { host: "ssh://ops@edge-c", address: "10.0.0.8", firstNode: 3 }] } }),
        evaluate({ ...twoHosts, kong: { version: "3.4.3", nodes: 5, adminAddress: "0.0.0.0" },
            docker: { hosts: [LOCAL, EDGE_B, { host: "ssh://ops@edge-c", address: "10.0.0.8", firstNode: 3 }] } }),
        evaluate({ kong: { version: "3.4.3", nodes: 2 }, database: { password: "hosts-pw-3" } }),
        evaluate({ kong: { version: "3.4.3", role: "hybrid", nodes: 1, dataPlanes: 2, adminAddress: "0.0.0.0", clusterCert: "PEM", clusterCertKey: "KEY" }, database: external,
            docker: { hosts: [{ host: LOCAL, address: "10.0.0.5" }, EDGE_B] }, upgrade: { to: "3.5.0" } }, { revealSecrets: true }),
    ])).map(Graph.of);
});

/** The provider's logical name a resource was registered with ("" for the default provider). */
const providerOf = (r: Registration) => (r.provider ? r.provider.split("::")[3] : "");
const containers = (g: Graph) => g.registrations.filter((r) => r.type === CONTAINER && r.name.startsWith("kong-"));

describe("several Docker hosts", () => {
    it("registers one Docker provider per host, with its endpoint", () => {
        const providers = steady.registrations.filter((r) => r.type === "pulumi:providers:docker");
        // The local socket is the default provider's own host: it keeps the default provider (placement.ts isDefaultDockerHost).
        assert.deepEqual(providers.map((p) => [p.name, p.inputs.host]), [["docker-edge-b", "ssh://ops@edge-b"]]);
    });

    it("creates the stack's network and pulls every image on each host, through that host's provider", () => {
        assert.deepEqual(["network", "network-edge-b"].map((n) => [steady.get(n).inputs.name, providerOf(steady.get(n))]),
            [["kong-upgrade-test", ""], ["kong-upgrade-test", "docker-edge-b"]]);
        for (const v of ["3-4-3", "3-5-0"]) {
            assert.equal(providerOf(upgrade.get(`image-kong-${v}`)), "");
            assert.equal(providerOf(upgrade.get(`image-kong-${v}-on-edge-b`)), "docker-edge-b");
        }
        assert.ok(upgrade.waitsFor("preflight-3-4-3-to-3-5-0", "image-kong-3-5-0-on-edge-b"), "every image is present on every host before anything stops");
    });

    it("spreads nodes round-robin and runs each through its host's provider and network", () => {
        assert.deepEqual(containers(steady).map((c) => [c.name, providerOf(c)]),
            [["kong-3-4-3-node-0", ""], ["kong-3-4-3-node-1", "docker-edge-b"], ["kong-3-4-3-node-2", ""]]);
        const net = (c: Registration) => (c.inputs.networksAdvanced as Array<{ name: string }>)[0].name;
        assert.deepEqual(containers(steady).map(net), ["kong-upgrade-test", "kong-upgrade-test", "kong-upgrade-test"]);
        assert.ok(steady.waitsFor("kong-3-4-3-node-1", "image-kong-3-4-3-on-edge-b"));
        assert.deepEqual(steady.outputs.placement,
            { "test-kong-3-4-3-node-0": "local", "test-kong-3-4-3-node-1": "edge-b", "test-kong-3-4-3-node-2": "local" });
        assert.ok((upgrade.outputs.runbook as string[]).some((l) => l.includes("3 node(s) of kong:3.5.0 (0, 2 on local; 1 on edge-b)")),
            "the runbook names each node's host");
    });

    it("puts Y's node i on X's node i's host with the same ports, so load balancer targets stay valid", () => {
        for (let i = 0; i < 3; i++) {
            const x = steady.get(`kong-3-4-3-node-${i}`);
            const y = upgrade.get(`kong-3-5-0-node-${i}`);
            assert.equal(providerOf(y), providerOf(x));
            assert.deepEqual(y.inputs.ports, x.inputs.ports);
        }
    });

    it("points stop, start and preflight at each node's host, and one-off containers at the first host", () => {
        type Spec = { cluster: { nodes: Array<{ container: string; docker?: { host: string }; statusUrl: string }>; hosts?: Array<{ host: string }> } };
        const stop = upgrade.spec("stop-kong-3-4-3") as Spec;
        assert.deepEqual(stop.cluster.nodes.map((n) => [n.container, n.docker?.host, n.statusUrl]), [
            ["test-kong-3-4-3-node-0", LOCAL, "http://127.0.0.1:8100"],
            ["test-kong-3-4-3-node-1", "ssh://ops@edge-b", "http://10.0.0.7:8110"],
            ["test-kong-3-4-3-node-2", LOCAL, "http://127.0.0.1:8120"],
        ]);
        const preflight = upgrade.spec("preflight-3-4-3-to-3-5-0") as Spec & { kong: { docker?: { host: string } } };
        assert.deepEqual(preflight.cluster.hosts?.map((h) => h.host), [LOCAL, "ssh://ops@edge-b"], "preflight looks for stray Kong nodes on every host");
        for (const step of ["migrations-up-3-5-0", "migrations-finish-3-5-0", "bootstrap"]) {
            assert.equal((upgrade.spec(step) as { kong: { docker?: { host: string } } }).kong.docker?.host, LOCAL, `${step} runs on the first host`);
        }
        const start = rollback.spec("start-kong-3-4-3") as Spec;
        assert.deepEqual(start.cluster.nodes.map((n) => n.docker?.host), [LOCAL, "ssh://ops@edge-b", LOCAL]);
    });

    it("a host added at the current node count moves nothing; the next nodes go to it", () => {
        for (const c of containers(steady)) {
            const after = added.get(c.name);
            assert.equal(after.urn, c.urn);
            assert.equal(providerOf(after), providerOf(c), `${c.name} stays on its host`);
            assert.deepEqual(after.inputs, c.inputs, `${c.name} is not replaced`);
        }
        assert.deepEqual(containers(grown).map(providerOf),
            ["", "docker-edge-b", "", "docker-edge-c", "docker-edge-b"], "least loaded first, ties to the host listed first");
    });

    it("without docker.hosts: the default provider and the single-host names, exactly as before", () => {
        assert.equal(single.registrations.filter((r) => r.type === "pulumi:providers:docker").length, 0);
        assert.ok(single.has("network") && single.has("image-kong-3-4-3"));
        assert.deepEqual(containers(single).map(providerOf), ["", ""]);
        type Spec = { kong: { docker?: unknown }; cluster: { hosts?: unknown; nodes: Array<{ docker?: unknown }> } };
        const verify = single.spec("verify-kong-3-4-3") as Spec;
        assert.deepEqual([verify.kong.docker, verify.cluster.hosts, ...verify.cluster.nodes.map((n) => n.docker)], [undefined, undefined, undefined, undefined],
            "step programs use the CLI's own default host");
    });

    it("hybrid over two hosts: control planes publish the cluster port, data planes on other hosts connect to it", () => {
        const cp = hybrid.get("kong-3-5-0-cp-0");
        assert.equal(providerOf(cp), "", "the local socket keeps the default provider");
        assert.deepEqual((cp.inputs.ports as Array<{ internal: number; external: number }>).map((p) => [p.internal, p.external]),
            [[8001, 8001], [8100, 8100], [8005, 8005]]);
        const dp1 = hybrid.get("kong-3-5-0-dp-1");
        assert.equal(providerOf(dp1), "docker-edge-b");
        const envs = dp1.inputs.envs as string[];
        assert.ok(envs.includes("KONG_CLUSTER_CONTROL_PLANE=10.0.0.5:8005"), envs.join("\n"));
    });

    it("refuses at preview: several hosts on the embedded database", async () => {
        const ev = await evaluate({ ...twoHosts, database: { password: "p" } });
        assert.ok(!ev.ok);
        assert.match(ev.error, /docker\.hosts lists 2 hosts, and Kong nodes on several hosts need a database every host reaches/);
    });
});
