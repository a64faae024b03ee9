// PostgreSQL access for the step programs: connections with clear errors, and the facts about
// Kong's database that steps compare (schema_meta rows, entity counts, the migrations lock).
import { createHash } from "crypto";
import { readFileSync } from "fs";
import { Client, ClientConfig } from "pg";
import { ConnectionOptions } from "tls";
import { DbTarget } from "./spec";
import { StepError, progress, sleep } from "./log";
import { instrumentQueries, uncountedQuery } from "./crash";
import { SCHEMA_META_EXISTS_SQL, SCHEMA_META_ROWS_SQL } from "./migrationstate";
import { fitName } from "./snapshots";

instrumentQueries(Client.prototype as unknown as { query: (...args: never[]) => unknown });

/**
 * Tables whose rows Kong itself adds and removes while it runs (events, locks, counters, tokens,
 * sessions, data-plane registrations): after an upgrade, verify does not hold them to the
 * snapshot's counts. A restore still compares every table.
 */
export const RUNTIME_TABLES = [
    "schema_meta", "locks", "cluster_events", "clustering_data_planes", "clustering_rpc_requests", "ratelimiting_metrics",
    "response_ratelimiting_metrics", "sessions", "oauth2_tokens", "oauth2_authorization_codes", "acme_storage",
] as const;

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

/** Where a step connected: what a step runner's next worker may connect to before it is given its step. */
export interface ConnectTarget { db: DbTarget; password: string; database: string }

let lastTarget: ConnectTarget | undefined;
/** The connection opened ahead; `ready` settles within PREPARED_WAIT_MS of being asked for (see settle). */
let prepared: { key: string; client: Client; ready: Promise<boolean>; timer: NodeJS.Timeout } | undefined;
const targetKey = (t: ConnectTarget) => createHash("sha256").update(JSON.stringify([t.db, t.database, t.password])).digest("hex");
/** How long a step waits for a prepared connection (to open, to answer, to close) before going on without it. */
const PREPARED_WAIT_MS = 1000;

/** The first connection this step opened to Kong's database (undefined: none). */
export function lastConnectTarget(): ConnectTarget | undefined {
    return lastTarget;
}

type ClientSocket = { connection?: { stream?: { destroy?: () => void; unref?: () => void } } };

/**
 * Ends a client without waiting on the server: end() waits for its goodbye, which a dropped
 * connection never sends. `cut`: close the socket at once (a connection that hangs must not hold
 * anyone); else let a healthy goodbye finish without holding the process.
 */
export function endWithoutWaiting(c: Client, cut = false): void {
    c.end().catch(() => undefined);
    const socket = (c as unknown as ClientSocket).connection?.stream;
    if (cut) socket?.destroy?.(); else socket?.unref?.();
}
const abandon = (c: Client) => endWithoutWaiting(c, true);

/**
 * Opens, ahead of its step, the connection the step will most likely open first: after a
 * migration step, the next migration step's gate read (a step runner's worker between two
 * steps; steps/runner.ts). The gate read's queries run once on it (read only): a new server
 * process takes 10–13 ms over `information_schema` the first two times, about 1 ms after.
 * connect() takes it when its target and password are the same and it answers. Closed after
 * `keepMs` unused. Its statements are not kill points (steps/lib/crash.ts): they are not the step's.
 */
export function prepareConnection(t: ConnectTarget, keepMs = 15_000): void {
    if (prepared) return;
    let client: Client;
    try {
        client = newClient(t.db, t.password, t.database);
    } catch {
        return; // a CA file that cannot be read: the step will say so itself
    }
    client.on("error", () => undefined);
    const ready = (async () => {
        await client.connect();
        if (t.db.schema && t.database === t.db.database) await uncountedQuery(client, `SET search_path TO ${quoteIdent(t.db.schema)}`);
        for (let i = 0; i < 2; i++) await uncountedQuery(client, SCHEMA_META_EXISTS_SQL);
        await uncountedQuery(client, SCHEMA_META_ROWS_SQL).catch(() => undefined);
        return true;
    })().catch(() => {
        abandon(client);
        return false;
    });
    const timer = setTimeout(() => {
        if (prepared?.client === client) prepared = undefined;
        abandon(client);
    }, keepMs);
    timer.unref();
    prepared = { key: targetKey(t), client, ready, timer };
}

/** `p` or false after `ms`. */
const settle = (p: Promise<boolean>, ms = PREPARED_WAIT_MS) => Promise.race([p, new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);

/** Closes the prepared connection, if any, and resolves once the server has let it go (PREPARED_WAIT_MS at most, then cut). */
export async function dropPreparedConnection(): Promise<void> {
    const p = prepared;
    prepared = undefined;
    if (!p) return;
    clearTimeout(p.timer);
    if (await settle(p.ready)) {
        const ended = await settle(p.client.end().then(() => true, () => false));
        if (ended) return;
    }
    abandon(p.client);
}

/** The prepared connection, when it is to this target, opened in time and answers. */
async function takePrepared(t: ConnectTarget): Promise<Client | undefined> {
    if (!prepared || prepared.key !== targetKey(t)) return undefined;
    const p = prepared;
    prepared = undefined;
    clearTimeout(p.timer);
    // Still opening: it began before a new one would, so it is waited for, up to the time a new
    // one may take to connect (a server that does not answer at all fails both).
    if (await settle(p.ready, 10_000) && await settle(uncountedQuery(p.client, "SELECT 1").then(() => true, () => false))) return p.client;
    abandon(p.client);
    return undefined;
}

/** Opens a connection to `database` (default: Kong's). The password comes from the caller's secret env. */
export async function connect(db: DbTarget, password: string, database = db.database): Promise<Client> {
    const target = { db, password, database };
    const c = (await takePrepared(target)) ?? await connectFresh(db, password, database);
    // The first to Kong's own database: a step's gate read, which the next step also starts with.
    if (database === db.database) lastTarget ??= target;
    return c;
}

function newClient(db: DbTarget, password: string, database: string): Client {
    return new Client({
        host: db.host, port: db.port, user: db.user, password, database,
        ssl: tlsOptions(db),
        connectionTimeoutMillis: 10_000,
        application_name: "kong-upgrade",
    });
}

async function connectFresh(db: DbTarget, password: string, database: string): Promise<Client> {
    const client = newClient(db, password, database);
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

/** `base` + `suffix`, or with `_2`, `_3`… when taken; the base is cut so every name fits 63 bytes. */
export async function freeDatabaseName(c: Client, base: string, suffix: string): Promise<string> {
    for (let n = 1; n < 100; n++) {
        const name = fitName(base, n === 1 ? suffix : `${suffix}_${n}`);
        if (!(await databaseExists(c, name))) return name;
    }
    throw new StepError(`no free database name like ${base}${suffix}`);
}

export interface Session {
    pid: number;
    /** Visible for every session; NULL only for background processes. */
    usename: string | null;
    application_name: string | null;
    client_addr: string | null;
    /** NULL for other roles' sessions unless the role has pg_read_all_stats. */
    backend_type: string | null;
}

/**
 * Every session on `name` but ours, whatever its role. To a role without pg_read_all_stats,
 * other roles' rows show backend_type NULL (postgres-facts §Sessions), so rows are counted by
 * datname; known background workers (and role-less rows, which are background workers: PostgreSQL
 * ends those itself before a template copy or a rename) are left out.
 */
const SESSIONS_ON = `FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
    AND (backend_type = 'client backend' OR (backend_type IS NULL AND usename IS NOT NULL))`;

export async function sessionsOn(c: Client, name: string): Promise<Session[]> {
    const r = await c.query<Session>(
        `SELECT pid, usename, application_name, client_addr::text AS client_addr, backend_type ${SESSIONS_ON} ORDER BY pid`, [name]);
    return r.rows;
}

/**
 * Ends every session `sessionsOn` finds, one by one; returns how many ended. Sessions that
 * remain (another role's, without pg_signal_backend; a superuser's) make it refuse, naming them.
 */
export async function terminateSessions(c: Client, name: string): Promise<number> {
    const found = await sessionsOn(c, name);
    let ended = 0;
    for (const s of found) {
        const r = await c.query<{ ok: boolean }>("SELECT pg_terminate_backend($1) AS ok", [s.pid]).catch(() => ({ rows: [{ ok: false }] }));
        if (r.rows[0]?.ok) ended += 1;
    }
    for (let i = 0; i < 20; i++) {
        const left = await sessionsOn(c, name);
        if (left.length === 0) return ended;
        if (i === 19) {
            throw new StepError(`${left.length} session(s) on ${name} could not be ended (${describeSessions(left)}): ` +
                `ending another role's session needs pg_signal_backend (a superuser's, a superuser). Stop those clients, then run pulumi up again`);
        }
        await sleep(250);
    }
    return ended;
}

export function describeSessions(sessions: Session[]): string {
    return sessions.map((s) => `pid ${s.pid} ${s.usename ?? "?"}${s.application_name ? ` (${s.application_name})` : ""}` +
        `${s.client_addr ? ` from ${s.client_addr}` : ""}${s.backend_type === null ? " (details hidden: the role lacks pg_read_all_stats)" : ""}`).join(", ");
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

/** Every table of Kong's schema as the catalog lists it (the search_path's first schema), sorted. */
export async function kongTables(c: Client): Promise<string[]> {
    const r = await c.query<{ relname: string }>(
        `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname`);
    return r.rows.map((row) => row.relname);
}

/** Row count of every table of Kong's schema, as found in the catalog (not a fixed list). */
export async function entityCounts(c: Client): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const t of await kongTables(c)) {
        const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(t)}`);
        out[t] = Number(r.rows[0].n);
    }
    return out;
}

/** Tables whose counts differ, each named: "keyauth_credentials 3 of 5", "acls missing". */
export function countDifferences(got: Record<string, number>, want: Record<string, number>, only?: (table: string) => boolean): string[] {
    const out: string[] = [];
    for (const [t, n] of Object.entries(want)) {
        if (only && !only(t)) continue;
        if (!(t in got)) out.push(`${t} missing`);
        else if (got[t] !== n) out.push(`${t} ${got[t]} of ${n}`);
    }
    for (const t of Object.keys(got)) if (!(t in want) && (!only || only(t))) out.push(`${t} not in the snapshot`);
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

/** Whether `name` carries the online snapshot's freeze (read-only or closed to connections). */
export async function isFrozen(c: Client, name: string): Promise<boolean> {
    const r = await c.query<{ frozen: boolean }>(
        `SELECT NOT d.datallowconn OR EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) AS cfg
                 WHERE s.setdatabase = d.oid AND s.setrole = 0 AND cfg LIKE 'default\\_transaction\\_read\\_only=%' AND cfg <> 'default_transaction_read_only=off') AS frozen
           FROM pg_database d WHERE d.datname = $1`, [name]);
    return r.rows[0]?.frozen === true;
}

/** The server's identity (postgres-facts §Identity); undefined with the reason when the role cannot read it. */
export async function serverIdentity(c: Client): Promise<{ systemIdentifier?: string; note?: string }> {
    try {
        const r = await c.query<{ id: string }>("SELECT system_identifier::text AS id FROM pg_control_system()");
        return { systemIdentifier: r.rows[0].id };
    } catch (e) {
        return { note: `system_identifier unreadable by ${c.user ?? "this role"} (${(e as Error).message}); the server is not checked` };
    }
}

/** A privilege on the database, as aclexplode gives it (grantee PUBLIC or a role name). */
export interface DatabaseGrant {
    grantee: string;
    privilege: string;
    grantable: boolean;
}

/**
 * What a database carries in shared catalogs rather than inside itself: a template copy or a
 * rename does not bring these along (postgres-facts §What a template copy carries), so the
 * snapshot records them and restore re-applies them.
 */
export interface DatabaseProps {
    owner: string;
    encoding: string;
    collate: string;
    ctype: string;
    /** "c" libc, "i" ICU, "b" builtin (17+). */
    localeProvider: string;
    icuLocale: string | null;
    connectionLimit: number;
    comment: string | null;
    /** `ALTER DATABASE … SET` entries, "name=value" as pg_db_role_setting holds them (our freeze left out). */
    settings: string[];
    /** `ALTER ROLE r IN DATABASE … SET` entries per role. */
    roleSettings: Record<string, string[]>;
    /** Effective ACL (the default made explicit), sorted. */
    acl: DatabaseGrant[];
}

/** Settings that are our freeze, never the operator's: Kong cannot run on a read-only database. */
function operatorSetting(cfg: string): boolean {
    return !cfg.startsWith("default_transaction_read_only=");
}

export async function databaseProps(c: Client, name: string): Promise<DatabaseProps> {
    const d = await c.query<{ oid: number; owner: string; encoding: string; datcollate: string; datctype: string; raw: Record<string, unknown>; datconnlimit: number; comment: string | null }>(
        `SELECT d.oid, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate, d.datctype,
                to_jsonb(d) - 'datacl' AS raw, d.datconnlimit, shobj_description(d.oid, 'pg_database') AS comment
           FROM pg_database d WHERE d.datname = $1`, [name]);
    const row = d.rows[0];
    if (!row) throw new StepError(`database ${name} does not exist`);
    const s = await c.query<{ role: string | null; setconfig: string[] }>(
        `SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END AS role, setconfig
           FROM pg_db_role_setting WHERE setdatabase = $1 ORDER BY 1 NULLS FIRST`, [row.oid]);
    const roleSettings: Record<string, string[]> = {};
    let settings: string[] = [];
    for (const r of s.rows) {
        if (r.role === null) settings = r.setconfig.filter(operatorSetting);
        else roleSettings[r.role] = r.setconfig;
    }
    const acl = await c.query<DatabaseGrant>(
        `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
           FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE d.datname = $1 ORDER BY 1, 2, 3`, [name]);
    const raw = row.raw;
    return {
        owner: row.owner, encoding: row.encoding, collate: row.datcollate, ctype: row.datctype,
        localeProvider: String(raw.datlocprovider ?? "c"),
        icuLocale: (raw.daticulocale ?? raw.datlocale ?? null) as string | null,
        connectionLimit: row.datconnlimit, comment: row.comment, settings, roleSettings, acl: acl.rows,
    };
}

/** Options of CREATE DATABASE that give a fresh database the recorded encoding and locale (dump restore). */
export function createOptions(p: DatabaseProps): string {
    const parts = [`TEMPLATE template0`, `ENCODING ${quoteLiteral(p.encoding)}`, `LC_COLLATE ${quoteLiteral(p.collate)}`, `LC_CTYPE ${quoteLiteral(p.ctype)}`];
    if (p.localeProvider === "i") parts.push(`LOCALE_PROVIDER icu`, `ICU_LOCALE ${quoteLiteral(p.icuLocale ?? "")}`);
    return parts.join(" ");
}

/** GUCs whose value pg_db_role_setting holds as an already-quoted list (pg_dump's GUC_LIST_QUOTE set). */
const LIST_SETTINGS = new Set(["search_path", "session_preload_libraries", "shared_preload_libraries", "local_preload_libraries", "temp_tablespaces", "unix_socket_directories"]);

function setClause(cfg: string): string {
    const eq = cfg.indexOf("=");
    const name = cfg.slice(0, eq);
    const value = cfg.slice(eq + 1);
    return `${quoteIdent(name)} TO ${LIST_SETTINGS.has(name.toLowerCase()) ? value : quoteLiteral(value)}`;
}

/**
 * Re-applies recorded properties to `name` inside the caller's transaction. Each statement the
 * role may not be allowed to run (another role's in-database setting needs CREATEROLE) runs
 * under a savepoint; what could not be applied is returned, as statements for the operator.
 */
export async function applyDatabaseProps(c: Client, name: string, p: DatabaseProps): Promise<string[]> {
    const db = quoteIdent(name);
    const skipped: string[] = [];
    const run = async (sql: string) => {
        await c.query("SAVEPOINT kong_upgrade_prop");
        try {
            await c.query(sql);
            await c.query("RELEASE SAVEPOINT kong_upgrade_prop");
        } catch (e) {
            await c.query("ROLLBACK TO SAVEPOINT kong_upgrade_prop");
            skipped.push(`${sql}; -- ${(e as Error).message}`);
        }
    };
    const current = await databaseProps(c, name);
    if (current.owner !== p.owner) await run(`ALTER DATABASE ${db} OWNER TO ${quoteIdent(p.owner)}`);
    await c.query(`ALTER DATABASE ${db} RESET ALL`);
    for (const cfg of p.settings) await run(`ALTER DATABASE ${db} SET ${setClause(cfg)}`);
    for (const role of Object.keys(current.roleSettings)) await run(`ALTER ROLE ${quoteIdent(role)} IN DATABASE ${db} RESET ALL`);
    for (const [role, cfgs] of Object.entries(p.roleSettings)) {
        for (const cfg of cfgs) await run(`ALTER ROLE ${quoteIdent(role)} IN DATABASE ${db} SET ${setClause(cfg)}`);
    }
    const key = (g: DatabaseGrant) => `${g.grantee}\0${g.privilege}\0${g.grantable}`;
    const after = await databaseProps(c, name);
    const want = new Set(p.acl.map(key));
    const have = new Set(after.acl.map(key));
    const who = (g: string) => (g === "PUBLIC" ? "PUBLIC" : quoteIdent(g));
    for (const g of after.acl) if (!want.has(key(g))) await run(`REVOKE ${g.privilege} ON DATABASE ${db} FROM ${who(g.grantee)} CASCADE`);
    for (const g of p.acl) if (!have.has(key(g))) await run(`GRANT ${g.privilege} ON DATABASE ${db} TO ${who(g.grantee)}${g.grantable ? " WITH GRANT OPTION" : ""}`);
    await c.query(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS true CONNECTION LIMIT ${Number(p.connectionLimit)}`);
    await c.query(`COMMENT ON DATABASE ${db} IS ${p.comment === null ? "NULL" : quoteLiteral(p.comment)}`);
    return skipped;
}

/**
 * A session-level advisory lock keyed by (stack, database) on this server: one snapshot or
 * restore at a time. A second run waits up to `waitSeconds`, then refuses naming the holder.
 * Released when the connection ends, so a killed run never leaves it behind.
 */
export async function lockStack(c: Client, stack: string, database: string, waitSeconds = 30): Promise<void> {
    const r = await c.query<{ k1: number; k2: number }>("SELECT hashtext($1) AS k1, hashtext($2) AS k2", [`kong-upgrade:${stack}`, database]);
    const { k1, k2 } = r.rows[0];
    const deadline = Date.now() + waitSeconds * 1000;
    for (let announced = false; ;) {
        const got = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1, $2) AS ok", [k1, k2]);
        if (got.rows[0].ok) return;
        const holder = await c.query<{ pid: number }>(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid AND objid = $2::int::oid AND granted LIMIT 1", [k1, k2]);
        const pid = holder.rows[0]?.pid;
        if (Date.now() > deadline) {
            throw new StepError(`another kong-upgrade run (server pid ${pid ?? "?"}) is snapshotting or restoring ${database} of stack ${stack}; ` +
                `waited ${waitSeconds}s. Let it finish, then run pulumi up again. Nothing was changed`);
        }
        if (!announced) { progress(`another kong-upgrade run (server pid ${pid ?? "?"}) works on ${database}; waiting up to ${waitSeconds}s`); announced = true; }
        await sleep(500);
    }
}

/** The JSON a step left in COMMENT ON DATABASE, or undefined (none, or not JSON). */
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

/** Records `note` as the database's COMMENT (only on databases this program made: clones, snapshots). */
export async function setDatabaseNote(c: Client, name: string, note: object): Promise<void> {
    await c.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${quoteLiteral(JSON.stringify(note))}`);
}
