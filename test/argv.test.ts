// The command lines the step programs hand to docker: one function builds each, and no secret is in them.
import { strict as assert } from "assert";
import { describe, it } from "node:test";
import { dockerEnv } from "../steps/lib/docker";
import { spawnSync } from "child_process";
import { mkdtempSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { kongDockerArgv, kongScript, kongShellArgv } from "../steps/lib/kong";
import { pgSslEnv, pgToolArgv, pgConnArgs } from "../steps/lib/pgtools";
import { KongRun } from "../steps/lib/spec";

const run: KongRun = {
    image: "kong:3.7.1", version: "3.7.1", network: "kong-upgrade-dev", plugins: "bundled,my-plugin", env: { KONG_LOG_LEVEL: "notice" },
    pg: { host: "kong-database", port: 5432, database: "kong", user: "kong", ssl: false, schema: "kong_schema" },
    lockTimeoutSeconds: 600, license: true,
};

describe("kongDockerArgv", () => {
    it("runs kong once in a removed-after container of the target image, with Y's settings and secrets by name", () => {
        delete process.env.KONG_UPGRADE_DOCKER;
        assert.deepEqual(kongDockerArgv(run, ["migrations", "up", "--lock-timeout", "600"]), [
            "docker", "run", "--rm", "--network", "kong-upgrade-dev", "--label", "kong-upgrade.role=migrations",
            "-e", "KONG_DATABASE=postgres", "-e", "KONG_PG_HOST=kong-database", "-e", "KONG_PG_PORT=5432", "-e", "KONG_PG_USER=kong",
            "-e", "KONG_PG_DATABASE=kong", "-e", "KONG_PG_SSL=off", "-e", "KONG_PG_SCHEMA=kong_schema", "-e", "KONG_PLUGINS=bundled,my-plugin",
            "-e", "KONG_LOG_LEVEL=notice", "-e", "KONG_PG_PASSWORD", "-e", "KONG_LICENSE_DATA",
            "kong:3.7.1", "kong", "migrations", "up", "--lock-timeout", "600",
        ]);
    });
});

describe("kongShellArgv and kongScript", () => {
    it("runs a sequence in the same container, settings and secrets as kongDockerArgv, a shell as the command", () => {
        delete process.env.KONG_UPGRADE_DOCKER;
        const argv = kongShellArgv(run, "the script");
        assert.deepEqual(argv, [...kongDockerArgv(run, []).slice(0, -1), "sh", "-c", "the script"]);
    });

    it("runs each command only when the one before exited as required, marks each exit code, expands KONG_*_FILE", () => {
        // `kong` here is a shell function: prints its arguments and exits with the number after "exit".
        const fake = `k() { echo "ran $* pw=$KONG_PG_PASSWORD"; return "$3"; }; k`;
        const script = kongScript(fake, [{ args: ["x", "list", "5"] }, { args: ["x", "up", "1"], when: [5] }, { args: ["x", "list", "0"], when: [0] }]);
        const dir = mkdtempSync(path.join(os.tmpdir(), "kong-script-"));
        writeFileSync(`${dir}/pw`, "from-file");
        const r = spawnSync("/bin/sh", ["-c", script], { env: { PATH: process.env.PATH, KONG_PG_PASSWORD_FILE: `${dir}/pw` }, encoding: "utf8" });
        assert.equal(r.status, 0);
        assert.deepEqual(r.stdout.split("\n").filter(Boolean), [
            "kong-upgrade:start", "ran x list 5 pw=from-file", "kong-upgrade:exit 0 5", "ran x up 1 pw=from-file", "kong-upgrade:exit 1 1",
        ], "the list after up did not run: up exited 1");
        assert.deepEqual(r.stderr.split("\n").filter(Boolean), ["kong-upgrade:exit 0 5", "kong-upgrade:exit 1 1"]);
    });
});

describe("kongDockerArgv with secret settings and a verified database", () => {
    it("names kong.secretEnv by name only, mounts the CA read-only and turns verification on", () => {
        delete process.env.KONG_UPGRADE_DOCKER;
        const argv = kongDockerArgv({ ...run, license: false, secretEnv: ["KONG_ADMIN_GUI_SESSION_CONF"],
            pg: { ...run.pg, ssl: true, sslRootCert: "/etc/pg/ca.pem" } }, ["migrations", "list"]);
        assert.deepEqual(argv.slice(7, 9), ["-v", "/etc/pg/ca.pem:/etc/kong-upgrade/pg-root-ca.pem:ro"]);
        for (const e of ["KONG_PG_SSL=on", "KONG_PG_SSL_VERIFY=on", "KONG_LUA_SSL_TRUSTED_CERTIFICATE=system,/etc/kong-upgrade/pg-root-ca.pem",
            "KONG_PG_PASSWORD", "KONG_ADMIN_GUI_SESSION_CONF"]) {
            assert.equal(argv[argv.indexOf(e) - 1], "-e", e);
        }
    });

    it("keeps the operator's own trusted certificates and adds the database's CA", () => {
        const argv = kongDockerArgv({ ...run, env: { KONG_LUA_SSL_TRUSTED_CERTIFICATE: "/etc/ssl/mine.pem" },
            pg: { ...run.pg, ssl: true, sslRootCert: "/etc/pg/ca.pem" } }, ["migrations", "list"]);
        assert.ok(argv.includes("KONG_LUA_SSL_TRUSTED_CERTIFICATE=/etc/ssl/mine.pem,/etc/kong-upgrade/pg-root-ca.pem"));
    });
});

describe("pgToolArgv", () => {
    // The dump is written as the user running the step, so the step can make it 0600.
    const USER = ["--user", `${process.getuid!()}:${process.getgid!()}`];
    const dump = { image: "postgres:15", network: "kong-upgrade-dev", directory: "/var/snapshots", host: "kong-database", port: 5432 };
    const db = { host: "127.0.0.1", port: 15432, database: "kong", user: "kong", sslmode: "disable" as const };
    it("runs pg_dump in a PostgreSQL container with the dump folder mounted and PGPASSWORD by name", () => {
        delete process.env.KONG_UPGRADE_PG_TOOLS;
        assert.deepEqual(pgToolArgv(dump, "pg_dump", ["-Fc", ...pgConnArgs(dump, db, "kong"), "-f", { file: "snap.dump" }]), [
            "docker", "run", "--rm", "--network", "kong-upgrade-dev", "-v", "/var/snapshots:/snapshots", ...USER, "-e", "PGPASSWORD", "-e", "PGSSLMODE", "postgres:15",
            "pg_dump", "-Fc", "-h", "kong-database", "-p", "5432", "-U", "kong", "-d", "kong", "-f", "/snapshots/snap.dump",
        ]);
    });

    it("verify-full: the CA mounted read-only, PGSSLMODE and PGSSLROOTCERT by name (values in the tool's environment)", () => {
        delete process.env.KONG_UPGRADE_PG_TOOLS;
        const verified = { ...dump, sslmode: "verify-full" as const, sslRootCert: "/etc/pg/ca.pem" };
        assert.deepEqual(pgToolArgv(verified, "pg_restore", ["-l", { file: "s.dump" }]), [
            "docker", "run", "--rm", "--network", "kong-upgrade-dev", "-v", "/var/snapshots:/snapshots",
            "-v", "/etc/pg/ca.pem:/etc/kong-upgrade/pg-root-ca.pem:ro", ...USER, "-e", "PGPASSWORD", "-e", "PGSSLMODE", "-e", "PGSSLROOTCERT",
            "postgres:15", "pg_restore", "-l", "/snapshots/s.dump",
        ]);
        assert.deepEqual(pgSslEnv(verified), { PGSSLMODE: "verify-full", PGSSLROOTCERT: "/etc/kong-upgrade/pg-root-ca.pem" });
    });
});

describe("dockerEnv: which Docker host a docker command reaches", () => {
    const table: Array<[string, Parameters<typeof dockerEnv>[0], Record<string, string>]> = [
        ["no docker.hosts: the CLI's own default, nothing set", undefined, {}],
        ["a unix socket: TLS settings inherited for another host are switched off", { host: "unix:///run/docker-b.sock" },
            { DOCKER_HOST: "unix:///run/docker-b.sock", DOCKER_TLS_VERIFY: "", DOCKER_CERT_PATH: "" }],
        ["tcp with TLS: verify the daemon with the host's certificates", { host: "tcp://10.0.0.6:2376", certPath: "/etc/docker/edge-c" },
            { DOCKER_HOST: "tcp://10.0.0.6:2376", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: "/etc/docker/edge-c" }],
        ["ssh: the CLI's own ssh transport", { host: "ssh://ops@edge-b" }, { DOCKER_HOST: "ssh://ops@edge-b", DOCKER_TLS_VERIFY: "", DOCKER_CERT_PATH: "" }],
    ];
    for (const [label, endpoint, expected] of table) it(label, () => assert.deepEqual(dockerEnv(endpoint), expected));
});
