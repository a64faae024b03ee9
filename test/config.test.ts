import { strict as assert } from "assert";
import { describe, it } from "node:test";
import { ConfigError, RawConfig, nodePorts, portProblems, readSettings } from "../components/config";

const ok = (raw: RawConfig) => readSettings(raw, "dev");
const base = { kong: { version: "3.4.3" }, database: { password: "pw" } };

function problems(raw: RawConfig): string[] {
    try {
        readSettings(raw, "dev");
    } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.problems;
    }
    return [];
}

describe("readSettings defaults", () => {
    it("fills every documented default", () => {
        const s = ok(base);
        assert.equal(s.kong.image, "kong");
        assert.equal(s.kong.nodes, 2);
        assert.equal(s.kong.plugins, "bundled");
        assert.deepEqual(s.kong.ports, { proxy: 8000, admin: 8001, status: 8100, stride: 10, dpProxy: 9000, dpStatus: 9100, cluster: 8005 });
        assert.equal(s.kong.adminAddress, "127.0.0.1");
        assert.equal(s.database.mode, "embedded");
        assert.equal(s.database.containerHost, "kong-database");
        assert.equal(s.database.port, 15432);
        assert.equal(s.database.adminPassword, "pw");
        assert.equal(s.upgrade, undefined);
        assert.equal(s.network, "kong-upgrade-dev");
        assert.deepEqual(s.docker.hosts, [], "no docker.hosts: the one default Docker host");
    });
    it("upgrade defaults: template snapshot, rename restore, no session termination", () => {
        const u = ok({ ...base, upgrade: { to: "3.5.0" } }).upgrade!;
        assert.deepEqual([u.snapshotStrategy, u.restoreStrategy, u.terminateSessions, u.rollback], ["template", "rename", false, false]);
    });
    it("accepts Enterprise four-part versions and image", () => {
        const s = ok({ ...base, kong: { version: "3.7.1.2", image: "kong/kong-gateway", license: "lic" }, upgrade: { to: "3.8.0.0" } });
        assert.equal(s.upgrade!.to.text, "3.8.0.0");
        assert.equal(s.kong.license, "lic");
    });
    it("external database: host as given, containers use it too", () => {
        const s = ok({ ...base, database: { mode: "external", host: "db.internal", password: "pw", sslmode: "require" } });
        assert.deepEqual([s.database.host, s.database.port, s.database.containerHost, s.database.sslmode], ["db.internal", 5432, "db.internal", "require"]);
    });
});

describe("readSettings refuses, naming the key and the fix", () => {
    const table: Array<[string, RawConfig, RegExp]> = [
        ["no kong block", { database: { password: "p" } }, /kong-upgrade:kong is not set/],
        ["kong not an object", { kong: "3.4.3", database: { password: "p" } }, /kong-upgrade:kong must be an object/],
        ["env outside KONG_", { ...base, kong: { version: "3.4.3", env: { PATH: "/x" } } }, /kong\.env\.PATH: only KONG_\* settings/],
        ["env managed by us", { ...base, kong: { version: "3.4.3", env: { KONG_PG_HOST: "x" } } }, /kong\.env\.KONG_PG_HOST is managed by the program/],
        ["bad address", { ...base, kong: { version: "3.4.3", adminAddress: "localhost" } }, /kong\.adminAddress must be an IP address/],
        ["same target", { ...base, upgrade: { to: "3.4.3" } }, /upgrade\.to equals kong\.version \(3\.4\.3\): nothing to upgrade/],
        ["bad strategy", { ...base, upgrade: { to: "3.5.0", snapshotStrategy: "copy" } }, /upgrade\.snapshotStrategy must be one of "template", "dump", not "copy"/],
        ["via not a list", { ...base, upgrade: { to: "3.7.1", via: "3.5.0" } }, /upgrade\.via must be a list of versions/],
        ["external on loopback", { ...base, database: { mode: "external", host: "localhost", password: "p" } }, /loopback address, which Kong's containers cannot reach; set database\.containerHost/],
        ["embedded with host", { ...base, database: { host: "db", password: "p" } }, /database\.host is for an external server/],
        ["bad db name", { ...base, database: { name: "Kong-DB", password: "p" } }, /database\.name "Kong-DB" must be a lower-case PostgreSQL identifier/],
        ["db port collides", { ...base, database: { port: 8000, password: "p" } }, /database\.port 8000 collides with a Kong port/],
        ["boolean as text", { ...base, upgrade: { to: "3.5.0", rollback: "yes" } }, /upgrade\.rollback must be true or false/],
        ["misspelt upgrade key", { ...base, upgrade: { too: "3.5.0" } }, /unknown key upgrade\.too \(did you mean upgrade\.to\?\)/],
    ];
    for (const [label, raw, message] of table) {
        it(label, () => assert.ok(problems(raw).some((p) => message.test(p)), `${label}: ${JSON.stringify(problems(raw))}`));
    }
    it("reports every problem at once", () => {
        assert.equal(problems({ kong: { version: "x", nodes: 0, nodez: 1 } }).length, 4);
    });
    it("string numbers and booleans from `pulumi config set` are read as such", () => {
        const s = ok({ kong: { version: "3.4.3", nodes: "3" }, database: { password: "p" }, upgrade: { to: "3.5.0", rollback: "true" } });
        assert.equal(s.kong.nodes, 3);
        assert.equal(s.upgrade!.rollback, true);
    });
});

describe("ports", () => {
    it("node i publishes base + i × stride", () => assert.deepEqual(nodePorts({ proxy: 8000, admin: 8001, status: 8100, stride: 10, dpProxy: 9000, dpStatus: 9100, cluster: 8005 }, 2), { proxy: 8020, admin: 8021, status: 8120, cluster: 8025 }));
    it("refuses overlapping ports between nodes", () => {
        assert.match(portProblems({ proxy: 8000, admin: 8001, status: 8100, stride: 1, dpProxy: 9000, dpStatus: 9100, cluster: 8005 }, 2).join("\n"), /node 1 proxy and node 0 admin would both publish port 8001/);
    });
    it("refuses ports above 65535", () => {
        assert.match(portProblems({ proxy: 65530, admin: 8001, status: 8100, stride: 10, dpProxy: 9000, dpStatus: 9100, cluster: 8005 }, 2).join("\n"), /node 1 proxy port would be 65540/);
    });
});

describe("docker.hosts", () => {
    const external = { mode: "external", host: "10.0.0.2", password: "p" };
    const two = { hosts: ["unix:///var/run/docker.sock", { host: "ssh://ops@edge-b", name: "edge-b" }] };
    it("reads endpoints, names and addresses with their defaults", () => {
        const s = ok({ ...base, kong: { version: "3.4.3", adminAddress: "0.0.0.0" }, database: external,
            docker: { hosts: ["unix:///var/run/docker.sock", "ssh://ops@edge-b.example:2222", { host: "tcp://10.0.0.6:2376", certPath: "/etc/docker/edge-c" }] } });
        assert.deepEqual(s.docker.hosts.map((h) => [h.name, h.address, h.firstNode, h.certPath]), [
            ["local", "127.0.0.1", 0, undefined],
            ["edge-b-example", "edge-b.example", 0, undefined],
            ["10-0-0-6", "10.0.0.6", 0, "/etc/docker/edge-c"],
        ]);
    });
    const table: Array<[string, RawConfig, RegExp]> = [
        ["several hosts on the embedded database", { ...base, docker: two }, /lists 2 hosts, and Kong nodes on several hosts need a database every host reaches: set database\.mode to external/],
        ["embedded database on a remote host", { ...base, docker: { hosts: ["ssh://ops@edge-b"] } }, /embedded database publishes on 127\.0\.0\.1 of its Docker host/],
        ["plain tcp", { ...base, database: external, docker: { hosts: ["tcp://10.0.0.6:2375"] } }, /TCP endpoint without TLS.*set docker\.hosts\[0\]\.certPath/],
        ["not an endpoint", { ...base, docker: { hosts: ["edge-b:2376"] } }, /docker\.hosts\[0\]\.host "edge-b:2376" is not a Docker endpoint/],
        ["duplicate names", { ...base, database: external, kong: { version: "3.4.3", adminAddress: "0.0.0.0" },
            docker: { hosts: ["ssh://a@edge", "ssh://b@edge"] } }, /docker\.hosts\[0\] and docker\.hosts\[1\] are both named "edge"/],
        ["loopback admin on a remote host", { ...base, database: external, docker: two }, /kong\.adminAddress 127\.0\.0\.1 .* cannot reach on docker\.hosts\[1\] \(edge-b\): set kong\.adminAddress to "0\.0\.0\.0"/],
        ["nobody takes node 0", { ...base, docker: { hosts: [{ host: "unix:///var/run/docker.sock", firstNode: 2 }] } }, /no Docker host takes node 0/],
        ["dump through a remote host", { ...base, database: external, kong: { version: "3.4.3", adminAddress: "0.0.0.0" }, upgrade: { to: "3.5.0", snapshotStrategy: "dump" },
            docker: { hosts: ["ssh://ops@edge-b"] } }, /snapshotStrategy dump writes into upgrade\.dumpDirectory through a bind mount/],
        ["hybrid data planes cannot reach a loopback control plane", { ...base, database: external, kong: { version: "3.4.3", role: "hybrid", adminAddress: "0.0.0.0" },
            docker: { hosts: ["unix:///var/run/docker.sock", "ssh://ops@edge-b"] } }, /data planes on other hosts reach control plane 0 at its host's address/],
        ["misspelt host key", { ...base, docker: { hosts: [{ host: "unix:///var/run/docker.sock", firstnode: 1 }] } }, /unknown key docker\.hosts\[0\]\.firstnode \(did you mean docker\.hosts\[0\]\.firstNode\?\)/],
        ["misspelt root key", { ...base, otherKeys: ["dockr"] }, /unknown key kong-upgrade:dockr \(did you mean kong-upgrade:docker\?\)/],
    ];
    for (const [label, raw, message] of table) {
        it(`refuses: ${label}`, () => assert.ok(problems(raw).some((p) => message.test(p)), `${label}: ${JSON.stringify(problems(raw))}`));
    }
    it("hybrid over several hosts publishes control plane cluster ports, checked for collisions", () => {
        const found = problems({ ...base, database: external, kong: { version: "3.4.3", role: "hybrid", adminAddress: "0.0.0.0", nodes: 2, ports: { cluster: 8001 } },
            docker: { hosts: [{ host: "ssh://ops@edge-a", address: "10.0.0.5" }, "ssh://ops@edge-b"] } });
        assert.ok(found.some((p) => /control plane 0 cluster listener and node 0 admin would both publish port 8001/.test(p)), JSON.stringify(found));
    });
});
