// database.sslmode verify-ca/verify-full against a real PostgreSQL serving TLS, with a CA this
// test makes (openssl): the step programs' own client, and pg_dump through pgtools.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { connect } from "../steps/lib/db";
import { pgConnArgs, pgToolArgv, runPgTool } from "../steps/lib/pgtools";
import { DbTarget, DumpTarget, SECRET_ENV } from "../steps/lib/spec";
import { TestServer, startPostgres } from "./helpers/postgres";

const dir = mkdtempSync(path.join(os.tmpdir(), "kong-upgrade-tls-"));
const file = (n: string) => path.join(dir, n);
const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });

/** A CA, and a server certificate it signs for the name `localhost` only. */
function makeCertificates(): void {
    for (const ca of ["ca", "other-ca"]) {
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", file(`${ca}.key`), "-out", file(`${ca}.crt`), "-days", "2", "-subj", `/CN=${ca} of the test`);
    }
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", file("server.key"), "-out", file("server.csr"), "-subj", "/CN=localhost");
    writeFileSync(file("san.ext"), "subjectAltName=DNS:localhost\n");
    openssl("x509", "-req", "-in", file("server.csr"), "-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-CAcreateserial",
        "-out", file("server.crt"), "-days", "2", "-extfile", file("san.ext"));
    // PostgreSQL reads its key only when private to the server's user (`postgres` when tests run as root).
    chmodSync(dir, 0o755);
    chmodSync(file("server.key"), 0o600);
    if (process.getuid?.() === 0) {
        const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
        const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
        chownSync(file("server.key"), uid, gid);
        chownSync(file("server.crt"), uid, gid);
    }
}

let server: TestServer;
let kong: { db: DbTarget; password: string };
before(async () => {
    makeCertificates();
    server = await startPostgres({ postgresFlags: ["-c", "ssl=on", "-c", `ssl_cert_file=${file("server.crt")}`, "-c", `ssl_key_file=${file("server.key")}`] });
    kong = await server.kongDatabase("tls");
});
after(async () => { await server?.stop(); });

const target = (host: string, sslmode: DbTarget["sslmode"], ca?: string): DbTarget =>
    ({ ...kong.db, host, sslmode, sslRootCert: ca ? file(ca) : undefined });

async function tryConnect(db: DbTarget): Promise<string | undefined> {
    try {
        const c = await connect(db, kong.password);
        const ssl = (await c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).rows[0].ssl as boolean;
        await c.end();
        assert.equal(ssl, true, "the session is encrypted");
        return undefined;
    } catch (e) {
        return (e as Error).message;
    }
}

describe("the step programs' client", () => {
    it("verify-full: the right CA and the certificate's name connect", async () => {
        assert.equal(await tryConnect(target("localhost", "verify-full", "ca.crt")), undefined);
    });

    it("verify-full: another CA is refused, saying database.sslRootCert must be the signing CA", async () => {
        assert.match(await tryConnect(target("localhost", "verify-full", "other-ca.crt")) ?? "",
            /certificate at localhost:\d+ is not trusted .*database\.sslRootCert must be the CA that signed/);
    });

    it("verify-full: a name the certificate does not carry (an IP) is refused; verify-ca accepts it", async () => {
        assert.match(await tryConnect(target("127.0.0.1", "verify-full", "ca.crt")) ?? "", /does not name 127\.0\.0\.1.*use verify-ca/);
        assert.equal(await tryConnect(target("127.0.0.1", "verify-ca", "ca.crt")), undefined);
        assert.match(await tryConnect(target("127.0.0.1", "verify-ca", "other-ca.crt")) ?? "", /not trusted/, "verify-ca still checks the chain");
    });
});

describe("pg_dump through pgtools (KONG_UPGRADE_PG_TOOLS=local)", () => {
    before(() => {
        process.env.KONG_UPGRADE_PG_TOOLS = "local";
        process.env[SECRET_ENV.password] = kong.password;
    });

    async function dump(host: string, sslmode: DbTarget["sslmode"], ca?: string): Promise<string | undefined> {
        const db = target(host, sslmode, ca);
        const out = mkdtempSync(path.join(dir, "dump-"));
        const d: DumpTarget = { image: "unused", network: "unused", directory: out, host, port: db.port, sslmode, sslRootCert: db.sslRootCert };
        try {
            await runPgTool(d, pgToolArgv(d, "pg_dump", ["-Fc", ...pgConnArgs(d, db, db.database), "-f", { file: "x.dump" }]));
            assert.ok(existsSync(path.join(out, "x.dump")));
            return undefined;
        } catch (e) {
            return (e as Error).message;
        }
    }

    it("verify-full with the right CA and name dumps; another CA fails with libpq's reason", async () => {
        assert.equal(await dump("localhost", "verify-full", "ca.crt"), undefined);
        assert.match(await dump("localhost", "verify-full", "other-ca.crt") ?? "", /pg_dump failed .*certificate verify failed/s);
    });

    it("verify-ca accepts an IP; verify-full refuses it", async () => {
        assert.equal(await dump("127.0.0.1", "verify-ca", "ca.crt"), undefined);
        assert.match(await dump("127.0.0.1", "verify-full", "ca.crt") ?? "", /pg_dump failed .*(does not match host name|server certificate for "localhost")/s);
    });
});
