// Kong stand-in: a test fixture that answers `kong migrations bootstrap|up|finish|list|status|reset`,
// `kong version`, `kong health` and `kong start`/`docker-start` the way Kong does (kong-facts §1–3):
// schema_meta (key, subsystem, last_executed, executed[], pending[]), the `locks` table and its TTL,
// list exit codes 0/3/4/5 with pending winning, `up` leaving migrations with a teardown pending
// until `finish`, nodes refusing to start on new migrations. Reads Kong's KONG_* environment.
//
// Fault injection (environment):
//   KONG_SIM_FAIL_UP_AT=<migration>   `up` fails inside that migration's transaction; a row
//                                     (name) in table kong_sim_faults does the same, so a rehearsal
//                                     can inject a fault into containers it does not configure
//                                     A row may name a condition on the data (columns when_plugin,
//                                     when_config jsonb, message): the migration then fails only while a
//                                     plugin of that name whose config contains when_config exists, as
//                                     a plugin config the new version's schema rejects
//   KONG_SIM_FAIL_START=<message>     `start` refuses with that message
//   KONG_SIM_PROXY_STATUS=<code>      the proxy answers every request with that status
//   KONG_SIM_CRASH_HOLDING_LOCK=1     take the migrations lock, then die without releasing it
//   KONG_SIM_HANG=<seconds>           sleep before doing anything
import { createHash, randomUUID } from "crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as http from "http";
import * as path from "path";
import { Client, ClientConfig, Pool } from "pg";
import { Migration, Subsystem, knownSubsystems, minorCode } from "./catalog";

const env = process.env;
const VERSION = env.KONG_VERSION ?? "3.4.3";
const PLUGINS = env.KONG_PLUGINS ?? "bundled";
const PREFIX = env.KONG_PREFIX ?? "/usr/local/kong";

class KongError extends Error {}

function log(line: string): void {
    if (!quiet) process.stdout.write(`${line}\n`);
}
let quiet = false;

function pgConfig(): ClientConfig {
    return {
        host: env.KONG_PG_HOST ?? "127.0.0.1", port: Number(env.KONG_PG_PORT ?? 5432), user: env.KONG_PG_USER ?? "kong",
        password: env.KONG_PG_PASSWORD, database: env.KONG_PG_DATABASE ?? "kong",
        ssl: env.KONG_PG_SSL === "on" ? { rejectUnauthorized: env.KONG_PG_SSL_VERIFY === "on" } : false,
        connectionTimeoutMillis: Number(env.KONG_PG_TIMEOUT ?? 5000), application_name: `kong-standin-${VERSION}`,
    };
}

async function connect(): Promise<Client> {
    const c = new Client(pgConfig());
    try {
        await c.connect();
    } catch (e) {
        throw new KongError(`[PostgreSQL error] failed to retrieve PostgreSQL server_version_num: ${(e as Error).message}`);
    }
    if (env.KONG_PG_SCHEMA) await c.query(`SET search_path TO "${env.KONG_PG_SCHEMA}"`);
    return c;
}

// ---- state (kong/db/migrations/state.lua) ----------------------------------------------------

interface Row { subsystem: string; last_executed: string | null; executed: string[]; pending: string[] }
interface Entry { subsystem: string; namespace: string; migrations: string[] }
interface State {
    needs_bootstrap: boolean;
    executed_migrations?: Entry[];
    pending_migrations?: Entry[];
    new_migrations?: Entry[];
    missing_migrations?: Entry[];
}

async function needsBootstrap(c: Client): Promise<boolean> {
    const r = await c.query("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_meta'");
    return (r.rowCount ?? 0) === 0;
}

async function rows(c: Client): Promise<Map<string, Row>> {
    const r = await c.query<Row>("SELECT subsystem, last_executed, coalesce(executed, '{}') AS executed, coalesce(pending, '{}') AS pending FROM schema_meta WHERE key = 'schema_meta'");
    return new Map(r.rows.map((row) => [row.subsystem, row]));
}

async function schemaState(c: Client): Promise<State> {
    if (await needsBootstrap(c)) return { needs_bootstrap: true };
    const meta = await rows(c);
    const lists: Record<"executed" | "pending" | "new" | "missing", Entry[]> = { executed: [], pending: [], new: [], missing: [] };
    for (const s of knownSubsystems(VERSION, PLUGINS)) {
        const row = meta.get(s.name);
        const names = s.migrations.map((m) => m.name);
        const lastIndex = row?.last_executed ? names.indexOf(row.last_executed) : -1;
        const buckets: Record<keyof typeof lists, string[]> = { executed: [], pending: [], new: [], missing: [] };
        names.forEach((n, i) => {
            if (row?.executed.includes(n)) buckets.executed.push(n);
            else if (row?.pending.includes(n)) buckets.pending.push(n);
            else if (!row || i > lastIndex) buckets.new.push(n);
            else buckets.missing.push(n);
        });
        for (const k of Object.keys(lists) as Array<keyof typeof lists>) {
            if (buckets[k].length > 0) lists[k].push({ subsystem: s.name, namespace: `kong.db.migrations.${s.name}`, migrations: buckets[k] });
        }
    }
    const state: State = { needs_bootstrap: false };
    if (lists.executed.length) state.executed_migrations = lists.executed;
    if (lists.pending.length) state.pending_migrations = lists.pending;
    if (lists.new.length) state.new_migrations = lists.new;
    if (lists.missing.length) state.missing_migrations = lists.missing;
    return state;
}

async function record(c: Client, subsystem: string, name: string, how: "executed" | "pending" | "teardown"): Promise<void> {
    if (how === "executed") {
        await c.query(`INSERT INTO schema_meta (key, subsystem, last_executed, executed) VALUES ('schema_meta', $1, $2, ARRAY[$2])
            ON CONFLICT (key, subsystem) DO UPDATE SET last_executed = $2, executed = array_append(coalesce(schema_meta.executed, '{}'), $2)`, [subsystem, name]);
    } else if (how === "pending") {
        await c.query(`INSERT INTO schema_meta (key, subsystem, pending) VALUES ('schema_meta', $1, ARRAY[$2])
            ON CONFLICT (key, subsystem) DO UPDATE SET pending = array_append(coalesce(schema_meta.pending, '{}'), $2)`, [subsystem, name]);
    } else {
        await c.query(`UPDATE schema_meta SET last_executed = $2, executed = array_append(coalesce(executed, '{}'), $2),
            pending = array_remove(pending, $2) WHERE key = 'schema_meta' AND subsystem = $1`, [subsystem, name]);
    }
}

// ---- the migrations mutex (kong/db/init.lua cluster_mutex) -------------------------------------

const OWNER = randomUUID();

async function insertLock(c: Client, ttlSeconds: number): Promise<boolean> {
    await c.query("BEGIN");
    await c.query("DELETE FROM locks WHERE ttl < CURRENT_TIMESTAMP AT TIME ZONE 'UTC'");
    const r = await c.query(`INSERT INTO locks (key, owner, ttl) VALUES ('migrations', $1, CURRENT_TIMESTAMP + make_interval(secs => $2))
        ON CONFLICT DO NOTHING`, [OWNER, ttlSeconds]);
    await c.query("COMMIT");
    return (r.rowCount ?? 0) === 1;
}

async function releaseLock(c: Client): Promise<void> {
    await c.query("DELETE FROM locks WHERE key = 'migrations' AND owner = $1", [OWNER]);
}

async function lockHeld(c: Client): Promise<boolean> {
    const r = await c.query("SELECT 1 FROM locks WHERE key = 'migrations' AND ttl >= CURRENT_TIMESTAMP");
    return (r.rowCount ?? 0) > 0;
}

/** Runs `fn` holding the lock. `wait`: poll up to the TTL for another holder (as `up` does). */
async function withLock(c: Client, ttl: number, wait: boolean, fn: () => Promise<void>): Promise<"ran" | "aborted"> {
    // Kong's `up` waits for another holder but then aborts rather than migrating (kong-facts §1.3).
    const deadline = Date.now() + ttl * 1000;
    while (!(await insertLock(c, ttl))) {
        if (!wait) return "aborted";
        if (Date.now() > deadline) throw new KongError("[PostgreSQL error] timeout");
        await new Promise((r) => setTimeout(r, 200));
        if (!(await lockHeld(c))) return "aborted";
    }
    if (env.KONG_SIM_CRASH_HOLDING_LOCK === "1") {
        process.stderr.write("stand-in: crashing while holding the migrations lock\n");
        process.exit(137);
    }
    try {
        await fn();
    } finally {
        await releaseLock(c).catch(() => undefined);
    }
    return "ran";
}

// ---- running migrations (kong/db/init.lua run_migrations) -------------------------------------

interface Fault { when_plugin?: string; when_config?: unknown; message?: string }

/** Why migration `name` fails here, or undefined when it does not. */
async function injectedFault(c: Client, name: string): Promise<string | undefined> {
    if (env.KONG_SIM_FAIL_UP_AT === name) return "injected failure";
    const r = await c.query<{ f: Fault }>("SELECT to_jsonb(f) AS f FROM kong_sim_faults f WHERE name = $1", [name]).catch(() => ({ rows: [] as Array<{ f: Fault }> }));
    for (const { f } of r.rows) {
        if (!f.when_plugin) return f.message ?? "injected failure";
        const hit = await c.query<{ id: string }>("SELECT id FROM plugins WHERE name = $1 AND config @> $2::jsonb",
            [f.when_plugin, JSON.stringify(f.when_config ?? {})]).catch(() => ({ rows: [] as Array<{ id: string }> }));
        if (hit.rows.length > 0) return `plugin ${f.when_plugin} (${hit.rows[0].id}): ${f.message ?? "configuration rejected"}`;
    }
    return undefined;
}

async function runUp(c: Client, s: Subsystem, m: Migration, alsoTeardown: boolean): Promise<void> {
    const fault = await injectedFault(c, m.name);
    if (fault) {
        await c.query("BEGIN");
        await c.query(m.up).catch(() => undefined);
        await c.query("ROLLBACK");
        throw new KongError(`[PostgreSQL error] failed to run migration '${m.name}' up: ${fault}`);
    }
    await c.query(`BEGIN; ${m.up}; COMMIT;`);
    if (m.teardown && alsoTeardown) {
        await c.query(`BEGIN; ${m.teardown}; COMMIT;`);
        await record(c, s.name, m.name, "executed");
        log(`${s.name} migrated up to: ${m.name} (executed)`);
    } else {
        await record(c, s.name, m.name, m.teardown ? "pending" : "executed");
        log(`${s.name} migrated up to: ${m.name} (${m.teardown ? "pending" : "executed"})`);
    }
}

function findMigration(subsystem: string, name: string): { s: Subsystem; m: Migration } {
    const s = knownSubsystems(VERSION, PLUGINS).find((x) => x.name === subsystem);
    const m = s?.migrations.find((x) => x.name === name);
    if (!s || !m) throw new KongError(`migration ${subsystem}/${name} is unknown to Kong ${VERSION}`);
    return { s, m };
}

function lockTimeout(args: string[]): number {
    const i = args.indexOf("--lock-timeout");
    return i >= 0 ? Number(args[i + 1]) : 60;
}

const NEEDS_BOOTSTRAP = "Database needs bootstrapping or is older than Kong 1.0.\n\nTo start a new installation from scratch, run 'kong migrations bootstrap'.\n\nTo migrate from a version older than 1.0, migrated to Kong 1.5.0 first. \nIf you still have 'apis' entities, you can convert them to Routes and Services\nusing the 'kong migrations migrate-apis' command in Kong 1.5.0.\n\n";

async function migrations(sub: string, args: string[]): Promise<number> {
    const c = await connect();
    try {
        const force = args.includes("-f") || args.includes("--force");
        switch (sub) {
            case "list": {
                const st = await schemaState(c);
                if (st.needs_bootstrap) { log(NEEDS_BOOTSTRAP); return 3; }
                const print = (title: string, entries?: Entry[]) => {
                    if (!entries) return;
                    log(title);
                    for (const e of entries) log(`${e.subsystem}: ${e.migrations.join(", ")}`);
                };
                print("Executed migrations:", st.executed_migrations);
                if (st.pending_migrations) {
                    print("Pending migrations:", st.pending_migrations);
                    if (st.new_migrations) {
                        print("New migrations available:", st.new_migrations);
                        log("Database has pending migrations from a previous upgrade, and new migrations from this upgrade (version " + VERSION + ")");
                    }
                    log("Run 'kong migrations finish' when ready");
                    return 4;
                }
                if (st.new_migrations) {
                    print("New migrations available:", st.new_migrations);
                    log("Run 'kong migrations up' to proceed");
                    return 5;
                }
                log("Database is up-to-date");
                return 0;
            }
            case "status": {
                process.stdout.write(`${JSON.stringify(await schemaState(c))}\n`);
                return 0;
            }
            case "bootstrap": {
                if (force) {
                    await c.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
                } else if (!(await needsBootstrap(c))) {
                    log("Database already bootstrapped");
                    return 0;
                }
                log("Bootstrapping database...");
                await c.query(`CREATE TABLE IF NOT EXISTS schema_meta (key TEXT, subsystem TEXT, last_executed TEXT, executed TEXT[], pending TEXT[], PRIMARY KEY (key, subsystem))`);
                await c.query(`CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, owner TEXT, ttl TIMESTAMP WITH TIME ZONE);
                    CREATE INDEX IF NOT EXISTS locks_ttl_idx ON locks (ttl)`);
                const outcome = await withLock(c, lockTimeout(args), false, async () => {
                    for (const s of knownSubsystems(VERSION, PLUGINS)) for (const m of s.migrations) await runUp(c, s, m, true);
                });
                if (outcome === "aborted") { log("aborted: another node is performing database changes"); return 0; }
                log("Database is up-to-date");
                return 0;
            }
            case "up": {
                let st = await schemaState(c);
                if (st.needs_bootstrap) throw new KongError(`Cannot run migrations: ${NEEDS_BOOTSTRAP}`);
                if (st.pending_migrations && !force) throw new KongError("Database has pending migrations; run 'kong migrations finish'");
                if (!st.new_migrations && !force) { log("Database is already up-to-date"); return 0; }
                let executed = 0;
                let pending = 0;
                const outcome = await withLock(c, lockTimeout(args), true, async () => {
                    st = await schemaState(c);
                    if (st.pending_migrations && !force) throw new KongError("Database has pending migrations; run 'kong migrations finish'");
                    for (const e of st.new_migrations ?? []) {
                        for (const name of e.migrations) {
                            const { s, m } = findMigration(e.subsystem, name);
                            await runUp(c, s, m, false);
                            if (m.teardown) pending++; else executed++;
                        }
                    }
                });
                if (outcome === "aborted") { log("aborted: another node is performing database changes"); return 0; }
                log(`${executed + pending} migrations processed`);
                log(`${executed} executed`);
                log(`${pending} pending`);
                if (pending > 0) log("\nDatabase has pending migrations; run 'kong migrations finish' when ready");
                return 0;
            }
            case "finish": {
                let st = await schemaState(c);
                if (st.needs_bootstrap) throw new KongError(`Cannot run migrations: ${NEEDS_BOOTSTRAP}`);
                let ran = 0;
                const outcome = await withLock(c, lockTimeout(args), false, async () => {
                    st = await schemaState(c);
                    for (const e of st.pending_migrations ?? []) {
                        for (const name of e.migrations) {
                            const { s, m } = findMigration(e.subsystem, name);
                            await c.query(`BEGIN; ${m.teardown ?? ""}; COMMIT;`);
                            await record(c, s.name, m.name, "teardown");
                            log(`${s.name} migrated up to: ${m.name} (executed)`);
                            ran++;
                        }
                    }
                });
                if (outcome === "aborted") { log("aborted: another node is performing database changes"); return 0; }
                st = await schemaState(c);
                if (ran > 0) log(`${ran} migrations processed\n${ran} executed`);
                if (st.new_migrations) { log("New migrations available; run 'kong migrations up' to proceed"); return 0; }
                if (ran === 0) log("No pending migrations to finish");
                return 0;
            }
            case "reset": {
                if (!args.includes("-y") && !args.includes("--yes") && !process.stdin.isTTY) {
                    throw new KongError("not a tty: invoke 'reset' non-interactively with the --yes flag");
                }
                if (await needsBootstrap(c)) throw new KongError("Database not bootstrapped, nothing to reset");
                await c.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
                log("Database successfully reset");
                return 0;
            }
            default:
                throw new KongError(`No such command for migrations: ${sub}`);
        }
    } finally {
        await c.end().catch(() => undefined);
    }
}

// ---- a node: kong start / docker-start ---------------------------------------------------------

function listenAddress(value: string | undefined, fallback: string): { host: string; port: number } | undefined {
    const v = (value ?? fallback).split(",")[0].trim().split(/\s+/)[0];
    if (v === "off" || v === "") return undefined;
    const i = v.lastIndexOf(":");
    return { host: v.slice(0, i), port: Number(v.slice(i + 1)) };
}

const PID_FILE = path.join(PREFIX, "pids", "nginx.pid");
const ENTITY_TABLES = ["services", "routes", "consumers", "plugins", "upstreams", "targets"];

type Route = { name: string; service: string; paths: string[] };

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { "content-type": "application/json", server: `kong/${VERSION}` });
    res.end(JSON.stringify(body));
}

function serve(addr: { host: string; port: number } | undefined, handler: http.RequestListener, servers: http.Server[]): void {
    if (!addr) return;
    const s = http.createServer(handler);
    s.listen(addr.port, addr.host);
    servers.push(s);
}

function routeRequest(routes: Route[], req: http.IncomingMessage, res: http.ServerResponse): void {
    const p = new URL(req.url ?? "/", "http://x").pathname;
    const route = routes.find((r) => r.paths.some((rp) => p.startsWith(rp)));
    if (!route) { sendJson(res, 404, { message: "no Route matched with those values" }); return; }
    sendJson(res, 200, { route: route.name, service: route.service, version: VERSION });
}

function writePid(): void {
    mkdirSync(path.dirname(PID_FILE), { recursive: true });
    writeFileSync(PID_FILE, `${process.pid}\n`);
    writeFileSync(path.join(PREFIX, ".kong_env"), `prefix = ${PREFIX}\n`);
}

/**
 * A hybrid data plane (KONG_ROLE=data_plane, database off): configuration comes from the control
 * plane at KONG_CLUSTER_CONTROL_PLANE (the stand-in's own exchange on the cluster port, not Kong's
 * WebSocket protocol), is cached on disk like Kong's LMDB, and survives the control plane being down.
 */
async function startDataPlane(): Promise<number> {
    writePid();
    const cacheFile = path.join(PREFIX, "dbless.json");
    let config: { routes: Route[]; hash: string } | undefined = existsSync(cacheFile)
        ? JSON.parse(readFileSync(cacheFile, "utf8")) as { routes: Route[]; hash: string } : undefined;
    const cp = env.KONG_CLUSTER_CONTROL_PLANE ?? "127.0.0.1:8005";
    const sync = async () => {
        try {
            const r = await fetch(`http://${cp}/v1/config?version=${VERSION}`, { signal: AbortSignal.timeout(2000) });
            const body = await r.json() as { routes: Route[]; hash: string; message?: string };
            if (r.status !== 200) { process.stderr.write(`[warn] control plane refused: ${body.message}\n`); return; }
            config = body;
            writeFileSync(cacheFile, JSON.stringify(body));
        } catch {
            // Control plane unreachable: keep serving the cached configuration.
        }
    };
    await sync();
    const timer = setInterval(() => { void sync(); }, 1000);
    const servers: http.Server[] = [];
    serve(listenAddress(env.KONG_PROXY_LISTEN, "0.0.0.0:8000"), (req, res) => routeRequest(config?.routes ?? [], req, res), servers);
    serve(listenAddress(env.KONG_STATUS_LISTEN, minorCode(VERSION) >= 306 ? "127.0.0.1:8007" : "off"), (req, res) => {
        if (req.url === "/status") sendJson(res, 200, { server: { connections_active: 1 }, memory: {}, configuration_hash: config?.hash ?? "0".repeat(32) });
        else if (req.url === "/status/ready") sendJson(res, config ? 200 : 503, { message: config ? "ready" : "no configuration available (empty configuration present)" });
        else sendJson(res, 404, { message: "Not found" });
    }, servers);
    process.stderr.write(`stand-in Kong ${VERSION} data plane started (pid ${process.pid}), control plane ${cp}\n`);
    const stop = () => {
        clearInterval(timer);
        rmSync(PID_FILE, { force: true });
        for (const s of servers) s.close();
        process.exit(0);
    };
    for (const sig of ["SIGQUIT", "SIGTERM", "SIGINT"] as const) process.on(sig, stop);
    return new Promise<number>(() => undefined);
}

async function start(): Promise<number> {
    if (env.KONG_SIM_FAIL_START) throw new KongError(env.KONG_SIM_FAIL_START);
    if (env.KONG_ROLE === "data_plane") return startDataPlane();
    const first = await connect();
    const st = await schemaState(first);
    await first.end();
    if (st.needs_bootstrap) throw new KongError(NEEDS_BOOTSTRAP);
    if (st.new_migrations) throw new KongError("New migrations available; run 'kong migrations up' to proceed");
    if (st.pending_migrations) {
        process.stderr.write(`[warn] database has pending migrations:\n${st.pending_migrations.map((e) => `${e.subsystem}: ${e.migrations.join(", ")}`).join("\n")}\n`);
    }
    mkdirSync(path.dirname(PID_FILE), { recursive: true });
    writeFileSync(PID_FILE, `${process.pid}\n`);
    writeFileSync(path.join(PREFIX, ".kong_env"), `prefix = ${PREFIX}\n`);
    // Like Kong's connection pool: a session ended by the server is replaced on the next query.
    const c = new Pool({ ...pgConfig(), max: 4 });
    c.on("error", () => undefined);
    // Like Kong's router: routes are held in memory and rebuilt from the database every second;
    // while the database cannot be read the node keeps proxying with the routes it has.
    let routes: Array<{ name: string; service: string; paths: string[] }> = [];
    const rebuild = () => c.query<{ name: string; service: string; paths: string[] }>(
        "SELECT r.name, s.name AS service, coalesce(r.paths, '{}') AS paths FROM routes r JOIN services s ON s.id = r.service_id")
        .then((r) => { routes = r.rows; }, () => undefined);
    await rebuild();
    const rebuilder = setInterval(() => { void rebuild(); }, 1000);

    const reachable = async () => c.query("SELECT 1").then(() => true, () => false);
    const json = (res: http.ServerResponse, code: number, body: unknown) => {
        res.writeHead(code, { "content-type": "application/json", server: `kong/${VERSION}` });
        res.end(JSON.stringify(body));
    };
    const status = async (req: http.IncomingMessage, res: http.ServerResponse, statusApi: boolean): Promise<boolean> => {
        if (req.url === "/status") {
            json(res, 200, { database: { reachable: await reachable() }, server: { connections_active: 1, total_requests: 0 }, memory: {} });
            return true;
        }
        if (statusApi && req.url === "/status/ready" && minorCode(VERSION) >= 303) {
            const ok = await reachable();
            json(res, ok ? 200 : 503, { message: ok ? "ready" : "failed to connect to database" });
            return true;
        }
        return false;
    };
    const body = (req: http.IncomingMessage) => new Promise<Record<string, unknown>>((resolve) => {
        let data = "";
        req.on("data", (d: Buffer) => { data += d.toString(); });
        req.on("end", () => { try { resolve(data ? JSON.parse(data) as Record<string, unknown> : {}); } catch { resolve({}); } });
    });
    const admin = async (req: http.IncomingMessage, res: http.ServerResponse) => {
        try {
            if (await status(req, res, false)) return;
            const url = new URL(req.url ?? "/", "http://x");
            const parts = url.pathname.split("/").filter(Boolean);
            if (parts.length === 0) { json(res, 200, { version: VERSION, tagline: "Welcome to kong" }); return; }
            const [collection, idOrName, sub] = parts;
            if (!ENTITY_TABLES.includes(collection)) { json(res, 404, { message: "Not found" }); return; }
            if (req.method === "GET" && !idOrName) {
                const r = await c.query(`SELECT * FROM ${collection} ORDER BY created_at, id`);
                json(res, 200, { data: r.rows, next: null });
                return;
            }
            if (req.method === "GET") {
                const col = /^[0-9a-f-]{36}$/.test(idOrName) ? "id" : collection === "consumers" ? "username" : "name";
                const r = await c.query(`SELECT * FROM ${collection} WHERE ${col}::text = $1`, [idOrName]);
                if (r.rowCount === 0) json(res, 404, { message: "Not found" }); else json(res, 200, r.rows[0]);
                return;
            }
            if (req.method === "POST") {
                const b = await body(req);
                if (idOrName && sub === "routes" && collection === "services") {
                    const svc = await c.query("SELECT id FROM services WHERE name = $1 OR id::text = $1", [idOrName]);
                    if (svc.rowCount === 0) { json(res, 404, { message: "Not found" }); return; }
                    b.service_id = svc.rows[0].id;
                    const r = await c.query("INSERT INTO routes (id, name, service_id, paths) VALUES ($1, $2, $3, $4) RETURNING *",
                        [randomUUID(), b.name ?? null, b.service_id, b.paths ?? null]);
                    json(res, 201, r.rows[0]);
                    return;
                }
                const id = randomUUID();
                let r;
                if (collection === "services") {
                    const u = b.url ? new URL(String(b.url)) : undefined;
                    r = await c.query("INSERT INTO services (id, name, protocol, host, port, path) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                        [id, b.name ?? null, u ? u.protocol.replace(":", "") : b.protocol ?? "http", u ? u.hostname : b.host,
                            u ? Number(u.port || 80) : b.port ?? 80, u ? u.pathname : b.path ?? null]);
                } else if (collection === "consumers") {
                    r = await c.query("INSERT INTO consumers (id, username, custom_id) VALUES ($1, $2, $3) RETURNING *", [id, b.username ?? null, b.custom_id ?? null]);
                } else if (collection === "plugins") {
                    r = await c.query("INSERT INTO plugins (id, name, config) VALUES ($1, $2, $3) RETURNING *", [id, b.name, JSON.stringify(b.config ?? {})]);
                } else if (collection === "upstreams") {
                    r = await c.query("INSERT INTO upstreams (id, name) VALUES ($1, $2) RETURNING *", [id, b.name]);
                } else {
                    json(res, 405, { message: `POST /${collection} is not supported by the stand-in` });
                    return;
                }
                json(res, 201, r.rows[0]);
                return;
            }
            if (req.method === "PATCH" && collection === "plugins" && idOrName) {
                const b = await body(req);
                const r = await c.query("UPDATE plugins SET config = $2 WHERE id::text = $1 RETURNING *", [idOrName, JSON.stringify(b.config ?? {})]);
                if (r.rowCount === 0) json(res, 404, { message: "Not found" }); else json(res, 200, r.rows[0]);
                return;
            }
            json(res, 405, { message: "Method not allowed" });
        } catch (e) {
            json(res, 400, { message: (e as Error).message });
        }
    };
    const proxy = (req: http.IncomingMessage, res: http.ServerResponse) => {
        if (env.KONG_SIM_PROXY_STATUS) { json(res, Number(env.KONG_SIM_PROXY_STATUS), { message: "injected proxy status" }); return; }
        const p = new URL(req.url ?? "/", "http://x").pathname;
        const route = routes.find((r) => r.paths.some((rp) => p.startsWith(rp)));
        if (!route) { json(res, 404, { message: "no Route matched with those values" }); return; }
        json(res, 200, { route: route.name, service: route.service, version: VERSION });
    };
    const servers: http.Server[] = [];
    const listen = (addr: { host: string; port: number } | undefined, handler: http.RequestListener) => {
        if (!addr) return;
        const s = http.createServer(handler);
        s.listen(addr.port, addr.host);
        servers.push(s);
    };
    listen(listenAddress(env.KONG_PROXY_LISTEN, "0.0.0.0:8000"), proxy);
    listen(listenAddress(env.KONG_ADMIN_LISTEN, "127.0.0.1:8001"), (req, res) => { void admin(req, res); });
    listen(listenAddress(env.KONG_STATUS_LISTEN, minorCode(VERSION) >= 306 ? "127.0.0.1:8007" : "off"), (req, res) => {
        void status(req, res, true).then((handled) => { if (!handled) json(res, 404, { message: "Not found" }); });
    });
    if (env.KONG_ROLE === "control_plane") {
        // Data planes fetch configuration here; a data plane on a newer minor is refused (kong-facts §7).
        listen(listenAddress(env.KONG_CLUSTER_LISTEN, "0.0.0.0:8005"), (req, res) => {
            const dp = new URL(req.url ?? "/", "http://x").searchParams.get("version") ?? "0.0.0";
            const [dMaj, dMin] = dp.split(".").map(Number);
            const [cMaj, cMin] = VERSION.split(".").map(Number);
            if (dMaj !== cMaj || dMin > cMin) {
                json(res, 426, { message: `data plane version ${dp} is incompatible with older control plane version ${VERSION}` });
                return;
            }
            json(res, 200, { routes, hash: createHash("md5").update(JSON.stringify(routes)).digest("hex") });
        });
    }
    process.stderr.write(`stand-in Kong ${VERSION} ${env.KONG_ROLE ?? "traditional"} started (pid ${process.pid})\n`);
    const stop = () => {
        clearInterval(rebuilder);
        rmSync(PID_FILE, { force: true });
        for (const s of servers) s.close();
        void c.end().finally(() => process.exit(0));
    };
    for (const sig of ["SIGQUIT", "SIGTERM", "SIGINT"] as const) process.on(sig, stop);
    return new Promise<number>(() => undefined);
}

/** `kong config db_export [file]`: the database's entities as a declarative file (JSON is YAML). */
async function config(sub: string, args: string[]): Promise<number> {
    if (sub !== "db_export") throw new KongError(`No such command for config: ${sub}`);
    const file = args.find((a) => !a.startsWith("-")) ?? "kong.yml";
    const c = await connect();
    try {
        const out: Record<string, unknown> = { _format_version: "3.0" };
        for (const t of ENTITY_TABLES) out[t] = (await c.query(`SELECT * FROM ${t} ORDER BY id`)).rows;
        writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
        log(`exported ${ENTITY_TABLES.map((t) => `${(out[t] as unknown[]).length} ${t}`).join(", ")} to ${file}`);
        return 0;
    } finally {
        await c.end();
    }
}

function health(): number {
    if (!existsSync(PID_FILE)) throw new KongError(`Kong is not running at ${PREFIX}`);
    const pid = Number(readFileSync(PID_FILE, "utf8").trim());
    try {
        process.kill(pid, 0);
    } catch {
        throw new KongError(`Kong is not running at ${PREFIX}`);
    }
    log("nginx.......running");
    log(`Kong is healthy at ${PREFIX}`);
    return 0;
}

async function main(argv: string[]): Promise<number> {
    if (env.KONG_SIM_HANG) await new Promise((r) => setTimeout(r, Number(env.KONG_SIM_HANG) * 1000));
    quiet = argv.includes("-q") || argv.includes("--quiet");
    const [cmd, sub, ...rest] = argv;
    switch (cmd) {
        case "version": log(VERSION); return 0;
        case "health": return health();
        case "start":
        case "docker-start": return start();
        case "migrations": return migrations(sub, rest);
        case "config": return config(sub, rest);
        default: throw new KongError(`No such command: ${cmd ?? ""}`);
    }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    process.stderr.write(`Error: ${e instanceof KongError ? e.message : (e as Error).stack ?? String(e)}\n`);
    process.exit(1);
});
