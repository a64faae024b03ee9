import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
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
        assert.equal(s.database.adminPassword, undefined, "unset: the program provides the superuser's password");
        assert.equal(s.database.sslRootCert, undefined);
        assert.deepEqual(s.kong.secretEnv, {});
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
        ["bad address", { ...base, kong: { version: "3.4.3", adminAddress: "localhost" } }, /kong\.adminAddress "localhost" is not an IP address/],
        ["same target", { ...base, upgrade: { to: "3.4.3" } }, /upgrade\.to equals kong\.version \(3\.4\.3\): nothing to upgrade/],
        ["bad strategy", { ...base, upgrade: { to: "3.5.0", snapshotStrategy: "copy" } }, /upgrade\.snapshotStrategy must be one of "template", "dump", not "copy"/],
        ["via not a list", { ...base, upgrade: { to: "3.7.1", via: "3.5.0" } }, /upgrade\.via must be a list of versions/],
        ["external on loopback", { ...base, database: { mode: "external", host: "localhost", password: "p" } }, /loopback address, which Kong's containers cannot reach; set database\.containerHost/],
        ["embedded with host", { ...base, database: { host: "db", password: "p" } }, /database\.host is for an external server/],
        ["bad db name", { ...base, database: { name: "Kong-DB", password: "p" } }, /database\.name "Kong-DB" must be a lower-case PostgreSQL identifier/],
        ["db port collides", { ...base, database: { port: 8000, password: "p" } }, /database\.port 8000 is also the host port of node 0's proxy/],
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

// Issue #11 item 7: every input validated at preview. Each row is the only problem of its
// configuration, and the message is asserted whole: it names the key and says what to change.
describe("every input validated at preview, with the exact message", () => {
    const kong = (extra: Record<string, unknown>) => ({ ...base, kong: { version: "3.4.3", ...extra } });
    const upgrade = (extra: Record<string, unknown>) => ({ ...base, upgrade: { to: "3.5.0", ...extra } });
    const database = (extra: Record<string, unknown>) => ({ ...base, database: { password: "pw", ...extra } });
    const table: Array<[string, RawConfig, string]> = [
        // image references
        ["kong.image with a tag", kong({ image: "kong:3.4.2" }),
            `kong.image "kong:3.4.2" includes the tag "3.4.2", and the tag is the version: set kong.image to "kong" and put the tag in kong.version ("3.4.2")`],
        ["kong.image with a tag behind a registry port", kong({ image: "registry.example.com:5000/kong:3.4.3" }),
            `kong.image "registry.example.com:5000/kong:3.4.3" includes the tag "3.4.3", and the tag is the version: set kong.image to "registry.example.com:5000/kong" and put the tag in kong.version ("3.4.3")`],
        ["kong.image with a digest", kong({ image: `kong@sha256:${"a".repeat(64)}` }),
            `kong.image "kong@sha256:${"a".repeat(64)}" pins a digest, and each version's image is kong.image:<version>: set kong.image to "kong"`],
        ["kong.image read as a docker option", kong({ image: "--privileged" }),
            `kong.image "--privileged" starts with "-", which docker reads as an option: set kong.image to a repository such as "kong" or "kong/kong-gateway"`],
        ["kong.image in upper case", kong({ image: "Kong/Kong-Gateway" }),
            `kong.image "Kong/Kong-Gateway" is not an image repository (lower-case letters and digits separated by ".", "_" or "-", "/" between path parts, optionally a registry host first): set it to e.g. "kong", "kong/kong-gateway" or "registry.example.com:5000/kong"`],
        ["upgrade.dumpImage read as a docker option", upgrade({ dumpImage: "-v/:/host" }),
            `upgrade.dumpImage "-v/:/host" starts with "-", which docker reads as an option: set upgrade.dumpImage to an image such as "postgres:15"`],
        ["upgrade.dumpImage not a reference", upgrade({ dumpImage: "postgres:15:1" }),
            `upgrade.dumpImage "postgres:15:1" is not a Docker image reference: write repository[:tag][@digest] in lower case, e.g. "postgres:15"`],
        ["database.image read as a docker option", database({ image: "-postgres" }),
            `database.image "-postgres" starts with "-", which docker reads as an option: set database.image to an image such as "postgres:15"`],
        // paths
        ["upgrade.dumpDirectory with a colon", upgrade({ dumpDirectory: "/srv/snap:/etc" }),
            `upgrade.dumpDirectory "/srv/snap:/etc" contains ":", which docker's -v reads as the end of the host path: set it to a folder whose path has no ":"`],
        // addresses
        ["kong.adminAddress out of range", kong({ adminAddress: "999.1.1.1" }),
            `kong.adminAddress "999.1.1.1" is not an IP address, which Docker needs to publish ports on: write an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface) or an IPv6 address without brackets (e.g. ::1, or :: for every interface)`],
        ["kong.proxyAddress a bare word", kong({ proxyAddress: "cafe" }),
            `kong.proxyAddress "cafe" is not an IP address, which Docker needs to publish ports on: write an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface) or an IPv6 address without brackets (e.g. ::1, or :: for every interface)`],
        ["kong.adminAddress IPv6 in brackets", kong({ adminAddress: "[::1]" }),
            `kong.adminAddress "[::1]" is not an IP address, which Docker needs to publish ports on: write an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface) or an IPv6 address without brackets (e.g. ::1, or :: for every interface)`],
        ["database.host out of range", database({ mode: "external", host: "999.1.1.1" }),
            `database.host "999.1.1.1" is neither an IP address nor a host name: write an IPv4 address (e.g. 10.0.0.7), an IPv6 address without brackets (e.g. fd00::7) or a host name (e.g. db.internal)`],
        ["database.containerHost not a name", database({ mode: "external", host: "10.0.0.2", containerHost: "db_host" }),
            `database.containerHost "db_host" is neither an IP address nor a host name: write an IPv4 address (e.g. 10.0.0.7), an IPv6 address without brackets (e.g. fd00::7) or a host name (e.g. db.internal)`],
        ["docker.hosts[].address out of range", { ...base, kong: { version: "3.4.3", adminAddress: "0.0.0.0" }, docker: { hosts: [{ host: "unix:///var/run/docker.sock", address: "10.0.0.300" }] } },
            `docker.hosts[0].address "10.0.0.300" is neither an IP address nor a host name: write an IPv4 address (e.g. 10.0.0.7), an IPv6 address without brackets (e.g. fd00::7) or a host name (e.g. db.internal)`],
        // versions
        ["kong.version with a leading zero", { ...base, kong: { version: "3.04.2" } },
            `kong.version is "3.04.2", which has a leading zero, and Kong's image tags have none: write "3.4.2"`],
        ["upgrade.to with a leading zero", upgrade({ to: "3.5.01" }),
            `upgrade.to is "3.5.01", which has a leading zero, and Kong's image tags have none: write "3.5.1"`],
        ["upgrade.via with a leading zero", upgrade({ to: "3.7.1", via: ["3.05.0", "3.6.1"] }),
            `upgrade.via[0] is "3.05.0", which has a leading zero, and Kong's image tags have none: write "3.5.0"`],
        // ports
        ["database.port on a node's Admin API", database({ port: 8011 }),
            `database.port 8011 is also the host port of node 1's Admin API (kong.ports.admin + 1 × kong.ports.stride): set database.port to a port no node publishes, e.g. 15432, or move kong.ports.admin`],
        ["database.port on a data plane's proxy", { ...base, kong: { version: "3.4.3", role: "hybrid" }, database: { password: "pw", port: 9010 } },
            `database.port 9010 is also the host port of data plane 1's proxy (kong.ports.dpProxy + 1 × kong.ports.stride): set database.port to a port no node publishes, e.g. 15432, or move kong.ports.dpProxy`],
        // the three unclear messages of the issue, made exact
        ["upgrade.via in the wrong order", upgrade({ to: "3.7.1", via: ["3.6.1", "3.5.0"] }),
            `upgrade.via lists its hops out of order (3.6.1, 3.5.0); Kong migrates through them oldest first: set upgrade.via to ["3.5.0", "3.6.1"]`],
        ["upgrade.via listing a version past upgrade.to", upgrade({ to: "3.6.1", via: ["3.5.0", "3.7.1"] }),
            `upgrade.via[1] 3.7.1 is not between kong.version 3.4.3 and upgrade.to 3.6.1: remove it from upgrade.via`],
        ["upgrade.via listing a hop twice", upgrade({ to: "3.6.1", via: ["3.5.0", "3.5.0"] }),
            `upgrade.via[1] repeats 3.5.0 (upgrade.via[0]): remove one of them`],
        ["KONG_PG_RO_PASSWORD in kong.env", kong({ env: { KONG_PG_RO_PASSWORD: "x" } }),
            `kong.env.KONG_PG_RO_PASSWORD configures a read-only replica for Kong, which this program does not manage (migrations, snapshots and restores act on the database.* server only): remove it`],
        ["KONG_PG_PASSWORD in kong.env", kong({ env: { KONG_PG_PASSWORD: "x" } }),
            `kong.env.KONG_PG_PASSWORD is managed by the program: remove it and set database.password (a secret) instead`],
        ["KONG_PG_SSL_VERIFY in kong.env", kong({ env: { KONG_PG_SSL_VERIFY: "on" } }),
            `kong.env.KONG_PG_SSL_VERIFY is managed by the program: remove it and set database.sslmode (verify-ca or verify-full) and database.sslRootCert instead`],
        ["another KONG_PG_* in kong.env", kong({ env: { KONG_PG_SSL_CERT: "/c.pem" } }),
            `kong.env.KONG_PG_SSL_CERT is managed by the program, which sets Kong's database connection from database.*: remove it (connection tuning such as KONG_PG_TIMEOUT, KONG_PG_MAX_CONCURRENT_QUERIES is allowed)`],
        ["KONG_ROLE in kong.env", kong({ env: { KONG_ROLE: "data_plane" } }),
            `kong.env.KONG_ROLE is managed by the program: remove it and set kong.role instead`],
        ["KONG_DATABASE in kong.env", kong({ env: { KONG_DATABASE: "off" } }),
            `kong.env.KONG_DATABASE is managed by the program (postgres; off on hybrid data planes): remove it`],
        // listeners
        ["KONG_STATUS_LISTEN in kong.env", kong({ env: { KONG_STATUS_LISTEN: "off" } }),
            `kong.env.KONG_STATUS_LISTEN is managed by the program: it sets Kong's listeners itself and publishes them on kong.ports, and its health checks and verify use them; remove it and choose host ports under kong.ports (and addresses with kong.adminAddress, kong.proxyAddress)`],
        ["KONG_STREAM_LISTEN in kong.secretEnv", kong({ secretEnv: { KONG_STREAM_LISTEN: "0.0.0.0:5555" } }),
            `kong.secretEnv.KONG_STREAM_LISTEN is managed by the program: it sets Kong's listeners itself and publishes them on kong.ports, and its health checks and verify use them; remove it and choose host ports under kong.ports (and addresses with kong.adminAddress, kong.proxyAddress)`],
        // secret-looking settings belong in kong.secretEnv
        ...["KONG_PASSWORD", "KONG_SSL_CERT_KEY", "KONG_ADMIN_GUI_SESSION_CONF", "KONG_PORTAL_SESSION_CONF", "KONG_ADMIN_GUI_AUTH_CONF",
            "KONG_VAULT_HCV_TOKEN", "KONG_KEYRING_RECOVERY_PUBLIC_KEY", "KONG_ANONYMOUS_REPORTS_SECRET"].map((name): [string, RawConfig, string] =>
            [`${name} in kong.env`, kong({ env: { [name]: "s3cret" } }),
                `kong.env.${name} looks secret, and kong.env is kept in plain text (stack state, step specs, the preview): remove it from kong.env ` +
                `and set it in kong.secretEnv instead (pulumi config set --secret --path kong.secretEnv.${name} …)`]),
        // kong.secretEnv itself
        ["kong.secretEnv outside KONG_", kong({ secretEnv: { AWS_SECRET_ACCESS_KEY: "x" } }),
            `kong.secretEnv.AWS_SECRET_ACCESS_KEY: only KONG_* settings belong here (Kong reads every kong.conf property as KONG_<NAME>, in upper case): rename or remove it`],
        ["kong.secretEnv managed", kong({ secretEnv: { KONG_PG_PASSWORD: "x" } }),
            `kong.secretEnv.KONG_PG_PASSWORD is managed by the program: remove it and set database.password (a secret) instead`],
        ["kong.secretEnv empty value", kong({ secretEnv: { KONG_PASSWORD: "" } }),
            `kong.secretEnv.KONG_PASSWORD is empty: set it (pulumi config set --secret --path kong.secretEnv.KONG_PASSWORD …), or remove it`],
        ["kong.secretEnv and kong.env both", kong({ env: { KONG_LOG_LEVEL: "debug" }, secretEnv: { KONG_LOG_LEVEL: "info" } }),
            `kong.env.KONG_LOG_LEVEL is also set in kong.secretEnv: keep it in one place; remove it from kong.env`],
        // passwords
        ["empty password", database({ password: "" }),
            `database.password is empty: set it (pulumi config set --secret --path database.password …), or remove it`],
        ["password stored as a number", database({ password: 123456 }),
            `database.password was stored as a number, not as text: set it again with --type string (pulumi config set --secret --type string --path database.password …)`],
        ["empty superuser password", database({ adminPassword: "" }),
            `database.adminPassword is empty: set it (pulumi config set --secret --path database.adminPassword …), or remove it`],
        // database.sslRootCert
        ["verify-full without a CA", database({ mode: "external", host: "db.internal", sslmode: "verify-full" }),
            `database.sslmode verify-full checks the server's certificate against a CA: set database.sslRootCert to that CA's certificate file (PEM) on the machine running Pulumi, or set database.sslmode to "require" (encrypted, not verified)`],
        ["a CA without verification", database({ mode: "external", host: "db.internal", sslmode: "require", sslRootCert: "ca.pem" }),
            `database.sslRootCert only applies to database.sslmode verify-ca or verify-full: set database.sslmode to "verify-full" (or "verify-ca"), or remove database.sslRootCert`],
        // kong.clusterControlPlane
        ["clusterControlPlane host out of range", { ...base, kong: { version: "3.4.3", role: "hybrid", clusterControlPlane: "999.1.1.1:8005" } },
            `kong.clusterControlPlane host "999.1.1.1" is neither an IP address nor a host name: write host:port with an IPv4 address (e.g. 10.0.0.5:8005), an IPv6 address in brackets (e.g. [fd00::5]:8005) or a host name (e.g. cp.internal:8005)`],
        ["clusterControlPlane port out of range", { ...base, kong: { version: "3.4.3", role: "hybrid", clusterControlPlane: "cp.internal:80050" } },
            `kong.clusterControlPlane port 80050 is not a port: set a port from 1 to 65535`],
    ];
    for (const [label, raw, message] of table) {
        it(label, () => assert.deepEqual(problems(raw), [message]));
    }

    it("accepts what the grammar allows: registry ports, tags and digests where a whole image is given, host names, IPv6, tuning KONG_PG_*", () => {
        const s = ok({
            kong: { version: "3.4.3", image: "registry.example.com:5000/kong/kong-gateway", adminAddress: "::1", proxyAddress: "::",
                env: { KONG_PG_TIMEOUT: "60000", KONG_LOG_LEVEL: "debug" } },
            database: { mode: "external", host: "cafe", containerHost: "host.docker.internal", password: "pw" },
            upgrade: { to: "3.5.0", dumpImage: `postgres:15-alpine@sha256:${"b".repeat(64)}`, dumpDirectory: "/srv/kong snapshots" },
        });
        assert.equal(s.kong.image, "registry.example.com:5000/kong/kong-gateway");
        assert.equal(s.database.host, "cafe", "a single-label host name is a host name");
        assert.deepEqual(s.kong.env, { KONG_PG_TIMEOUT: "60000", KONG_LOG_LEVEL: "debug" });
    });

    it("database.port collides only with ports a node publishes: 10 (the default stride) is free", () => {
        assert.equal(ok(database({ port: 10 })).database.port, 10);
    });

    it("a hybrid control plane publishes no proxy, so the database may take that port", () => {
        assert.equal(ok({ ...base, kong: { version: "3.4.3", role: "hybrid" }, database: { password: "pw", port: 8000 } }).database.port, 8000);
    });

    it("passwords and secret settings are kept byte for byte, and never repeated in a message", () => {
        const s = ok({ kong: { version: "3.4.3", secretEnv: { KONG_PASSWORD: " two spaces  ", KONG_PORTAL_SESSION_CONF: '{"secret":"x"}' } },
            database: { password: "  pw with spaces\n", adminPassword: "\tsuper " } });
        assert.equal(s.database.password, "  pw with spaces\n");
        assert.equal(s.database.adminPassword, "\tsuper ");
        assert.deepEqual(s.kong.secretEnv, { KONG_PASSWORD: " two spaces  ", KONG_PORTAL_SESSION_CONF: '{"secret":"x"}' });
        const found = problems({ kong: { version: "3.4.3", license: 424242, env: { KONG_ADMIN_GUI_SESSION_CONF: "hunter2" } }, database: { password: 987654 } });
        assert.equal(found.length, 3, JSON.stringify(found));
        for (const p of found) assert.ok(!/424242|hunter2|987654/.test(p), p);
    });

    it("database.sslRootCert: a PEM certificate file that exists, checked at preview", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kong-upgrade-ca-"));
        try {
            const ca = path.join(dir, "ca.pem");
            fs.writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
            const external = { mode: "external", host: "db.internal", password: "pw", sslmode: "verify-full" };
            assert.equal(ok({ ...base, database: { ...external, sslRootCert: ca } }).database.sslRootCert, ca);
            const missing = path.join(dir, "nope.pem");
            assert.deepEqual(problems({ ...base, database: { ...external, sslRootCert: missing } }), [
                `database.sslRootCert "${missing}" cannot be read (${missing}: ENOENT): set it to the CA certificate file (PEM) on the machine running Pulumi; a relative path starts at the project folder`]);
            const key = path.join(dir, "key.pem");
            fs.writeFileSync(key, "-----BEGIN PRIVATE KEY-----\n");
            assert.deepEqual(problems({ ...base, database: { ...external, sslmode: "verify-ca", sslRootCert: key } }), [
                `database.sslRootCert "${key}" holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line): set it to the CA's certificate in PEM form`]);
            assert.deepEqual(problems({ ...base, database: { ...external, sslRootCert: dir } }), [
                `database.sslRootCert "${dir}" is not a file (${dir}): set it to the CA certificate file (PEM)`]);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("still reports every problem at once", () => {
        const found = problems({ kong: { version: "3.04.2", image: "kong:3.4.2", adminAddress: "cafe", env: { KONG_STATUS_LISTEN: "off", KONG_PASSWORD: "x" } },
            database: { password: "", port: 8001 }, upgrade: { to: "3.7.1", via: ["3.6.1", "3.5.0"], dumpDirectory: "a:b", dumpImage: "-x" } });
        assert.equal(found.length, 9, JSON.stringify(found, null, 1));
    });
});
