// PostgreSQL access for the step programs: connections with clear errors, and the facts about
// Kong's database that steps compare (schema_meta rows, entity counts, the migrations lock).
import { readFileSync } from "fs";
import { Client, ClientConfig } from "pg";
import { ConnectionOptions } from "tls";
import { DbTarget } from "./spec";
import { StepError } from "./log";

/** Tables holding the entities an operator configured; compared before and after. */
export const ENTITY_TABLES = ["services", "routes", "consumers", "plugins", "upstreams", "targets"] as const;

export interface SchemaMetaRow {
    subsystem: string;
    last_executed: string | null;
    executed: string[];
    pending: string[];
}

export function quoteIdent(name: string): string {
    return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(text: string): string {
    return `'${text.replace(/'/g, "''")}'`;
}

/** Opens a connection to `database` (default: Kong's). The password comes from the caller's secret env. */
export async function connect(db: DbTarget, password: string, database = db.database): Promise<Client> {
    const client = new Client({
        host: db.host, port: db.port, user: db.user, password, database,
        ssl: tlsOptions(db),
        connectionTimeoutMillis: 10_000,
        application_name: "kong-upgrade",
    });
    try {
        await client.connect();
    } catch (e) {
        throw explainConnectError(e as Error & { code?: string }, db, database);
    }
    if (db.schema && database === db.database) await client.query(`SET search_path TO ${quoteIdent(db.schema)}`);
    return client;
}

/**
 * TLS as libpq's sslmode means it: `require` encrypts without checking; `verify-ca` checks the
 * chain against database.sslRootCert but not the name (the server may be reached by IP or
 * another name); `verify-full` checks the chain and that the certificate names database.host.
 */
export function tlsOptions(db: DbTarget): ClientConfig["ssl"] {
    if (db.sslmode === "disable") return false;
    if (db.sslmode === "require") return { rejectUnauthorized: false };
    let ca: string | undefined;
    if (db.sslRootCert) {
        try {
            ca = readFileSync(db.sslRootCert, "utf8");
        } catch (e) {
            throw new StepError(`cannot read database.sslRootCert ${db.sslRootCert}: ${(e as Error).message}`);
        }
    }
    const opts: ConnectionOptions = { rejectUnauthorized: true, ca };
    if (db.sslmode === "verify-ca") opts.checkServerIdentity = () => undefined;
    return opts;
}

function explainConnectError(e: Error & { code?: string }, db: DbTarget, database: string): StepError {
    const where = `${db.user}@${db.host}:${db.port}/${database}`;
    switch (e.code) {
        case "28P01":
        case "28000":
            return new StepError(`PostgreSQL refused ${where}: password authentication failed. ` +
                `Check database.password (pulumi config set --secret --path database.password …) and database.user`);
        case "3D000":
            return new StepError(`PostgreSQL has no database "${database}" (${where}); check database.name`);
        case "ECONNREFUSED":
        case "ENOTFOUND":
        case "ETIMEDOUT":
            return new StepError(`cannot reach PostgreSQL at ${db.host}:${db.port} (${e.code}); is the server running and database.host/port right?`);
        case "DEPTH_ZERO_SELF_SIGNED_CERT":
        case "SELF_SIGNED_CERT_IN_CHAIN":
        case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
        case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
        case "CERT_SIGNATURE_FAILURE":
        case "CERT_HAS_EXPIRED":
            return new StepError(`PostgreSQL's certificate at ${db.host}:${db.port} is not trusted (${e.code}: ${e.message}); ` +
                `database.sslRootCert must be the CA that signed the server's certificate`);
        case "ERR_TLS_CERT_ALTNAME_INVALID":
            return new StepError(`PostgreSQL's certificate does not name ${db.host} (${e.message}); with sslmode verify-full, ` +
                `database.host must be a name the certificate carries, or use verify-ca`);
        default:
            return new StepError(`cannot connect to PostgreSQL as ${where}: ${e.message}`);
    }
}

/** Runs `fn` with a connection to the server's maintenance database (for CREATE/ALTER DATABASE). */
export async function withServer<T>(db: DbTarget, password: string, fn: (c: Client) => Promise<T>): Promise<T> {
    const c = await connect(db, password, "postgres").catch(async (e: unknown) => {
        if (e instanceof StepError && e.message.includes('no database "postgres"')) return connect(db, password, "template1");
        throw e;
    });
    try {
        return await fn(c);
    } finally {
        await c.end().catch(() => undefined);
    }
}

export async function withDatabase<T>(db: DbTarget, password: string, fn: (c: Client) => Promise<T>, database = db.database): Promise<T> {
    const c = await connect(db, password, database);
    try {
        return await fn(c);
    } finally {
        await c.end().catch(() => undefined);
    }
}

export async function databaseExists(c: Client, name: string): Promise<boolean> {
    const r = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    return (r.rowCount ?? 0) > 0;
}

/** `base`, or `base_2`, `base_3`… when taken: names of set-aside databases never collide. */
export async function freeDatabaseName(c: Client, base: string): Promise<string> {
    for (let n = 1; n < 100; n++) {
        const name = n === 1 ? base : `${base}_${n}`;
        if (!(await databaseExists(c, name))) return name;
    }
    throw new StepError(`no free database name like ${base}`);
}

/** Databases whose name starts with `prefix`, oldest first (names end in a UTC timestamp). */
export async function databasesWithPrefix(c: Client, prefix: string): Promise<string[]> {
    const r = await c.query<{ datname: string }>(
        "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY datname", [prefix]);
    return r.rows.map((row) => row.datname);
}

/** The JSON a step left in COMMENT ON DATABASE, or undefined. */
export async function databaseNote<T>(c: Client, name: string): Promise<T | undefined> {
    const r = await c.query<{ note: string | null }>(
        "SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = $1", [name]);
    const note = r.rows[0]?.note;
    if (!note) return undefined;
    try {
        return JSON.parse(note) as T;
    } catch {
        return undefined;
    }
}

export async function setDatabaseNote(c: Client, name: string, note: object): Promise<void> {
    await c.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${quoteLiteral(JSON.stringify(note))}`);
}

export interface Session {
    pid: number;
    usename: string;
    application_name: string;
    client_addr: string | null;
}

/**
 * Clients connected to `name`. Background workers (autovacuum) are not counted: PostgreSQL ends
 * them itself before CREATE DATABASE … TEMPLATE and ALTER DATABASE … RENAME.
 */
const CLIENT_SESSIONS_ON = "FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'";

export async function sessionsOn(c: Client, name: string): Promise<Session[]> {
    const r = await c.query<Session>(`SELECT pid, usename, application_name, client_addr::text AS client_addr ${CLIENT_SESSIONS_ON}`, [name]);
    return r.rows;
}

/** Ends the clients `sessionsOn` counts; returns how many. */
export async function terminateSessions(c: Client, name: string): Promise<number> {
    const r = await c.query(`SELECT pg_terminate_backend(pid) ${CLIENT_SESSIONS_ON}`, [name]);
    return r.rowCount ?? 0;
}

export function describeSessions(sessions: Session[]): string {
    return sessions.map((s) => `pid ${s.pid} ${s.usename}${s.application_name ? ` (${s.application_name})` : ""}` +
        `${s.client_addr ? ` from ${s.client_addr}` : ""}`).join(", ");
}

async function tableExists(c: Client, table: string): Promise<boolean> {
    const r = await c.query("SELECT to_regclass($1) IS NOT NULL AS present", [table]);
    return r.rows[0].present === true;
}

/** Kong's migration record, one row per subsystem, in a stable order. */
export async function readSchemaMeta(c: Client): Promise<SchemaMetaRow[]> {
    if (!(await tableExists(c, "schema_meta"))) return [];
    const r = await c.query<SchemaMetaRow>(
        `SELECT subsystem, last_executed, coalesce(executed, '{}') AS executed, coalesce(pending, '{}') AS pending
           FROM schema_meta WHERE key = 'schema_meta' ORDER BY subsystem`);
    return r.rows;
}

/** Row counts of the entity tables that exist. */
export async function entityCounts(c: Client): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const t of ENTITY_TABLES) {
        if (await tableExists(c, t)) {
            const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(t)}`);
            out[t] = Number(r.rows[0].n);
        }
    }
    return out;
}

export interface LockState {
    owner: string;
    ttl: string;
    live: boolean;
}

/** The `migrations` row of Kong's `locks` table (kong-facts §2.4), if any. */
export async function migrationsLock(c: Client): Promise<LockState | undefined> {
    if (!(await tableExists(c, "locks"))) return undefined;
    const r = await c.query<LockState>(
        "SELECT owner, ttl::text AS ttl, ttl >= CURRENT_TIMESTAMP AS live FROM locks WHERE key = 'migrations'");
    return r.rows[0];
}

export async function databaseSize(c: Client, name: string): Promise<number> {
    const r = await c.query<{ size: string }>("SELECT pg_database_size($1) AS size", [name]);
    return Number(r.rows[0].size);
}

/**
 * Online snapshot's freeze: new sessions on `name` are read-only (Kong's nodes reconnect and keep
 * proxying; their writes fail). Sessions already open are ended by the caller.
 */
export async function freezeReadOnly(c: Client, name: string): Promise<void> {
    await c.query(`ALTER DATABASE ${quoteIdent(name)} SET default_transaction_read_only = on`);
}

/** Lifts the freeze; harmless when there is none. */
export async function liftReadOnly(c: Client, name: string): Promise<void> {
    await c.query(`ALTER DATABASE ${quoteIdent(name)} RESET default_transaction_read_only`);
    await allowConnections(c, name, true);
}

/** Whether new sessions may connect to `name` (snapshots refuse them; a template copy needs none). */
export async function allowConnections(c: Client, name: string, allow: boolean): Promise<void> {
    await c.query(`ALTER DATABASE ${quoteIdent(name)} WITH ALLOW_CONNECTIONS ${allow}`);
}
