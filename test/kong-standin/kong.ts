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

// kong/cmd/utils/log.lua: info on stdout; warn and error on stderr with a date and level; -q silences all.
function log(line: string): void {
    if (!quiet) process.stdout.write(`${line}\n`);
}
function stamped(level: string, line: string): void {
    const d = new Date();
    const p = (n: number) => String(n).padStart(2, "0");
    const date = `${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    if (!quiet) process.stderr.write(`${date} [${level}] ${line}\n`);
}
function logWarn(line: string): void { stamped("warn", line); }
function logError(line: string): void { stamped("error", line); }
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
    // Kong fills the lists even when bootstrap is needed: then every migration is new (state.lua:219-246).
    const bootstrap = await needsBootstrap(c);
    const meta = bootstrap ? new Map<string, Row>() : await rows(c);
    const lists: Record<"executed" | "pending" | "new" | "missing", Entry[]> = { executed: [], pending: [], new: [], missing: [] };
    for (const s of knownSubsystems(VERSION, PLUGINS)) {
        const row = meta.get(s.name);
        const buckets: Record<keyof typeof lists, string[]> = { executed: [], pending: [], new: [], missing: [] };
        // state.lua:250-283: `after` is set only on reaching the migration named last_executed, so a
        // migration in neither array is missing only when it is last_executed itself; one before it
        // (after still unset) or past it is new, as is every one when last_executed names none of ours.
        let after: number | undefined;
        s.migrations.forEach(({ name }, i) => {
            if (row && name === row.last_executed) after = i + 1;
            if (row?.executed.includes(name)) buckets.executed.push(name);
            else if (row?.pending.includes(name)) buckets.pending.push(name);
            else if (after === undefined || i >= after) buckets.new.push(name);
            else buckets.missing.push(name);
        });
        for (const k of Object.keys(lists) as Array<keyof typeof lists>) {
            if (buckets[k].length > 0) lists[k].push({ subsystem: s.name, namespace: s.namespace, migrations: buckets[k] });
        }
    }
    const state: State = { needs_bootstrap: bootstrap };
    if (lists.executed.length) state.executed_migrations = lists.executed;
    if (lists.pending.length) state.pending_migrations = lists.pending;
    if (lists.new.length) state.new_migrations = lists.new;
    if (lists.missing.length) state.missing_migrations = lists.missing;
    return state;
}

/**
 * `kong migrations status` (kong/cmd/migrations.lua:156-175): cleanup() turns the executed, pending
 * and new lists into names but leaves missing_migrations as the loaded migration modules
 * ({ name, postgres = { up, up_f, teardown } }). cjson.encode cannot encode a function (lua-cjson
 * 2.1.0.13, json_append_data), so a missing migration with a teardown makes status fail; in Kong's
 * 3.x migrations up_f only comes with a teardown, so the teardown decides. Without one, Kong prints
 * the migration's own `up` SQL where the stand-in prints its catalog's.
 */
function statusJson(st: State): string {
    const missing = st.missing_migrations?.map((e) => ({
        ...e,
        migrations: e.migrations.map((name) => {
            const { m } = findMigration(e.subsystem, name);
            if (m.teardown !== undefined) throw new KongError("Cannot serialise function: type not supported");
            return { name, postgres: { up: m.up } };
        }),
    }));
    return JSON.stringify(missing ? { ...st, missing_migrations: missing } : st);
}

/** How `kong migrations list` prints a list: subsystem names right-aligned (state.lua Migrations_mt). */
function formatEntries(entries: Entry[]): string {
    const width = Math.max(...entries.map((e) => e.subsystem.length));
    return entries.map((e) => `${e.subsystem.padStart(width)}: ${e.migrations.join(", ")}`).join("\n");
}

// As the postgres connector's record_migration: upserts for every state.
async function record(c: Client, subsystem: string, name: string, how: "executed" | "pending" | "teardown"): Promise<void> {
    if (how === "executed") {
        await c.query(`INSERT INTO schema_meta (key, subsystem, last_executed, executed) VALUES ('schema_meta', $1, $2, ARRAY[$2])
            ON CONFLICT (key, subsystem) DO UPDATE SET last_executed = EXCLUDED.last_executed, executed = array_append(coalesce(schema_meta.executed, '{}'), $2)`, [subsystem, name]);
    } else if (how === "pending") {
        await c.query(`INSERT INTO schema_meta (key, subsystem, pending) VALUES ('schema_meta', $1, ARRAY[$2])
            ON CONFLICT (key, subsystem) DO UPDATE SET pending = array_append(schema_meta.pending, $2)`, [subsystem, name]);
    } else {
        await c.query(`INSERT INTO schema_meta (key, subsystem, last_executed, executed) VALUES ('schema_meta', $1, $2, ARRAY[$2])
            ON CONFLICT (key, subsystem) DO UPDATE SET last_executed = EXCLUDED.last_executed,
            executed = array_append(coalesce(schema_meta.executed, '{}'), $2), pending = array_remove(coalesce(schema_meta.pending, '{}'), $2)`, [subsystem, name]);
    }
}

// ---- the migrations mutex (kong/db/init.lua cluster_mutex) -------------------------------------

const OWNER = randomUUID();

async function insertLock(c: Client, ttlSeconds: number): Promise<boolean> {
    await c.query("BEGIN");
    try {
        await c.query("DELETE FROM locks WHERE ttl < CURRENT_TIMESTAMP AT TIME ZONE 'UTC'");
        const r = await c.query(`INSERT INTO locks (key, owner, ttl) VALUES ('migrations', $1, CURRENT_TIMESTAMP + make_interval(secs => $2))
            ON CONFLICT DO NOTHING`, [OWNER, ttlSeconds]);
        await c.query("COMMIT");
        return (r.rowCount ?? 0) === 1;
    } catch (e) {
        await c.query("ROLLBACK").catch(() => undefined);
        throw new KongError(`[PostgreSQL error] failed to insert cluster lock: ${(e as Error).message}`);
    }
}

async function releaseLock(c: Client): Promise<void> {
    await c.query("DELETE FROM locks WHERE key = 'migrations' AND owner = $1", [OWNER]);
}

async function lockHeld(c: Client): Promise<boolean> {
    const r = await c.query("SELECT 1 FROM locks WHERE key = 'migrations' AND ttl >= CURRENT_TIMESTAMP AT TIME ZONE 'UTC'");
    return (r.rowCount ?? 0) > 0;
}

/**
 * Runs `fn` holding the lock, as DB:cluster_mutex does: `true` when it ran, `false` when another
 * node held the lock (at once with `noWait`, or released while we waited). A lock still held after
 * `ttl` seconds of waiting is an error; so is `fn` failing (the lock is then released).
 */
async function clusterMutex(c: Client, ttl: number, opts: { noWait: boolean; noCleanup?: boolean }, fn: () => Promise<void>): Promise<boolean> {
    if (!(await insertLock(c, ttl))) {
        if (opts.noWait) return false;
        let step = 0.1;
        let elapsed = 0;
        while (elapsed < ttl) {
            await new Promise((r) => setTimeout(r, step * 1000));
            elapsed += step;
            if (elapsed >= ttl) break;
            if (!(await lockHeld(c))) return false;
            step = Math.min(step * 3, 2);
        }
        throw new KongError("[PostgreSQL error] timeout");
    }
    if (env.KONG_SIM_CRASH_HOLDING_LOCK === "1") {
        process.stderr.write("stand-in: crashing while holding the migrations lock\n");
        process.exit(137);
    }
    try {
        await fn();
    } catch (e) {
        await c.query("ROLLBACK").catch(() => undefined);
        await releaseLock(c).catch(() => undefined);
        throw new KongError(`[PostgreSQL error] cluster_mutex callback threw an error: ${(e as Error).message}`);
    }
    if (!opts.noCleanup) await releaseLock(c).catch(() => undefined);
    return true;
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

function findMigration(subsystem: string, name: string): { s: Subsystem; m: Migration } {
    const s = knownSubsystems(VERSION, PLUGINS).find((x) => x.name === subsystem);
    const m = s?.migrations.find((x) => x.name === name);
    if (!s || !m) throw new KongError(`[PostgreSQL error] failed to load migration '${name}'`);
    return { s, m };
}

async function runMigrations(c: Client, entries: Entry[], opts: { up: boolean; teardown: boolean; skipTeardown?: Entry[] }): Promise<void> {
    const skip = new Set((opts.skipTeardown ?? []).flatMap((e) => e.migrations.map((n) => `${e.subsystem}/${n}`)));
    let processed = 0;
    let pending = 0;
    for (const e of entries) {
        log(`migrating ${e.subsystem} on database '${pgConfig().database}'...`);
        for (const name of e.migrations) {
            const { s, m } = findMigration(e.subsystem, name);
            const hasTeardown = m.teardown !== undefined;
            if (opts.up) {
                const fault = await injectedFault(c, m.name);
                if (fault) {
                    await c.query("BEGIN");
                    await c.query(m.up).catch(() => undefined);
                    await c.query("ROLLBACK");
                    throw new KongError(`[PostgreSQL error] failed to run migration '${m.name}' up: ${fault}`);
                }
                if (m.up.trim()) {
                    try {
                        await c.query(`BEGIN;\n${m.up};\nCOMMIT;`);
                    } catch (err) {
                        await c.query("ROLLBACK").catch(() => undefined);
                        throw new KongError(`[PostgreSQL error] failed to run migration '${m.name}' up: ${(err as Error).message}`);
                    }
                }
                await record(c, s.name, m.name, hasTeardown ? "pending" : "executed");
                if (hasTeardown) pending++;
            }
            if (opts.teardown && hasTeardown && !skip.has(`${s.name}/${m.name}`)) {
                try {
                    if (m.teardown!.trim()) await c.query(m.teardown!);
                } catch (err) {
                    throw new KongError(`[PostgreSQL error] failed to run migration '${m.name}' teardown: ${(err as Error).message}`);
                }
                await record(c, s.name, m.name, "teardown");
                pending = Math.max(pending - 1, 0);
            }
            log(`${s.name} migrated up to: ${m.name} ${hasTeardown && !opts.teardown ? "(pending)" : "(executed)"}`);
            processed++;
        }
    }
    log(`${processed} migration${processed > 1 ? "s" : ""} processed`);
    if (processed - pending > 0) log(`${processed - pending} executed`);
    if (pending > 0) log(`${pending} pending`);
}

function lockTimeout(args: string[]): number {
    const i = args.indexOf("--lock-timeout");
    return i >= 0 ? Number(args[i + 1]) : 60;
}

const NEEDS_BOOTSTRAP = "Database needs bootstrapping or is older than Kong 1.0.\n\nTo start a new installation from scratch, run 'kong migrations bootstrap'.\n\nTo migrate from a version older than 1.0, migrated to Kong 1.5.0 first. \nIf you still have 'apis' entities, you can convert them to Routes and Services\nusing the 'kong migrations migrate-apis' command in Kong 1.5.0.\n\n";
const NOT_LEADER = "aborted: another node is performing database changes";
const SUB_COMMANDS = ["bootstrap", "up", "finish", "list", "reset", "status"];

async function schemaReset(c: Client): Promise<void> {
    const schema = (await c.query<{ s: string }>("SELECT current_schema() AS s")).rows[0].s;
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE; CREATE SCHEMA "${schema}" AUTHORIZATION CURRENT_USER`);
    await c.query(`SET search_path TO "${schema}"`);
}

/** kong/cmd/utils/migrations.lua reset(): false when there was nothing to reset or another node held the lock. */
async function reset(c: Client, st: State, ttl: number): Promise<boolean> {
    if (st.needs_bootstrap) { log("Database not bootstrapped, nothing to reset"); return false; }
    let ok: boolean;
    try {
        ok = await clusterMutex(c, ttl, { noWait: true, noCleanup: true }, async () => {
            log("Resetting database...");
            await schemaReset(c);
            log("Database successfully reset");
        });
    } catch (e) {
        if (!(e as Error).message.startsWith("[PostgreSQL error] failed to insert cluster lock")) throw e;
        logError(`${(e as Error).message} - retrying without cluster lock`);
        log("Resetting database...");
        await schemaReset(c);
        log("Database successfully reset");
        return true;
    }
    if (!ok) { log(NOT_LEADER); return false; }
    return true;
}

async function migrations(sub: string | undefined, args: string[]): Promise<number> {
    if (!sub || !SUB_COMMANDS.includes(sub)) {
        // bin/kong: pl_app.quit("No such command for migrations: <sub>"), exit 1, before any database work.
        process.stderr.write(sub ? `No such command for migrations: ${sub}\n` : "");
        return 1;
    }
    const c = await connect();
    try {
        const force = args.includes("-f") || args.includes("--force");
        const ttl = lockTimeout(args);
        let st = await schemaState(c);
        switch (sub) {
            case "list": {
                if (st.needs_bootstrap) { log(NEEDS_BOOTSTRAP); return 3; }
                let r = "";
                if (st.executed_migrations) { log(`Executed migrations:\n${formatEntries(st.executed_migrations)}`); r = "\n"; }
                if (st.pending_migrations) { log(`${r}Pending migrations:\n${formatEntries(st.pending_migrations)}`); r = "\n"; }
                if (st.new_migrations) { log(`${r}New migrations available:\n${formatEntries(st.new_migrations)}`); r = "\n"; }
                if (st.pending_migrations && st.new_migrations) {
                    if (r !== "") log("");
                    logWarn(`Database has pending migrations from a previous upgrade, and new migrations from this upgrade (version ${VERSION})`);
                    // "%s %s": db.strategy ("postgres") and db.infos.db_desc ("database").
                    log("\nRun 'kong migrations finish' when ready to complete pending migrations (postgres database will be incompatible with the previous Kong version)");
                    return 4;
                }
                if (st.pending_migrations) { log("\nRun 'kong migrations finish' when ready"); return 4; }
                if (st.new_migrations) { log("\nRun 'kong migrations up' to proceed"); return 5; }
                return 0;
            }
            case "status": {
                // print(), not log(): -q does not silence it.
                process.stdout.write(`${statusJson(st)}\n`);
                return 0;
            }
            case "bootstrap": {
                if (force) {
                    await reset(c, st, ttl);
                    st = await schemaState(c);
                }
                if (!st.needs_bootstrap) { log("Database already bootstrapped"); return 0; }
                log("Bootstrapping database...");
                if (env.KONG_PG_SCHEMA) await c.query(`CREATE SCHEMA IF NOT EXISTS "${env.KONG_PG_SCHEMA}" AUTHORIZATION CURRENT_USER`);
                await c.query(`CREATE TABLE IF NOT EXISTS schema_meta (key TEXT, subsystem TEXT, last_executed TEXT, executed TEXT[], pending TEXT[], PRIMARY KEY (key, subsystem))`);
                await c.query(`CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, owner TEXT, ttl TIMESTAMP WITH TIME ZONE);
                    CREATE INDEX IF NOT EXISTS locks_ttl_idx ON locks (ttl)`);
                const ran = await clusterMutex(c, ttl, { noWait: true }, async () => {
                    await runMigrations(c, st.new_migrations ?? [], { up: true, teardown: true });
                    log("Database is up-to-date");
                });
                if (!ran) log(NOT_LEADER);
                return 0;
            }
            case "up": {
                if (st.needs_bootstrap) throw new KongError(`Cannot run migrations: ${NEEDS_BOOTSTRAP}`);
                if (!force && st.pending_migrations) throw new KongError("Database has pending migrations; run 'kong migrations finish'");
                // `up` passes abort = true, which cluster_mutex does not read: it waits (kong-facts §1.3).
                const ran = await clusterMutex(c, ttl, { noWait: false }, async () => {
                    st = await schemaState(c);
                    if (!force && st.pending_migrations) throw new KongError("Database has pending migrations; run 'kong migrations finish'");
                    if (force && st.executed_migrations) {
                        await runMigrations(c, st.executed_migrations, { up: true, teardown: true, skipTeardown: st.pending_migrations });
                        st = await schemaState(c);
                        if (st.pending_migrations) { log("\nDatabase has pending migrations; run 'kong migrations finish' when ready"); return; }
                    }
                    if (!st.new_migrations) { if (!force) log("Database is already up-to-date"); return; }
                    await runMigrations(c, st.new_migrations, { up: true, teardown: false });
                    st = await schemaState(c);
                    if (st.pending_migrations) log("\nDatabase has pending migrations; run 'kong migrations finish' when ready");
                });
                if (!ran) log(NOT_LEADER);
                return 0;
            }
            case "finish": {
                if (st.needs_bootstrap) throw new KongError(`Cannot run migrations: ${NEEDS_BOOTSTRAP}`);
                const ran = await clusterMutex(c, ttl, { noWait: true }, async () => {
                    st = await schemaState(c);
                    if (force && st.executed_migrations) {
                        await runMigrations(c, st.executed_migrations, { up: true, teardown: true });
                        st = await schemaState(c);
                    }
                    if (st.pending_migrations) {
                        await runMigrations(c, st.pending_migrations, { up: false, teardown: true });
                        st = await schemaState(c);
                    }
                    if (st.new_migrations) { log("\nNew migrations available; run 'kong migrations up' to proceed"); return; }
                    if (!force && !st.pending_migrations) log("No pending migrations to finish");
                });
                if (!ran) log(NOT_LEADER);
                return 0;
            }
            default: {
                if (!args.includes("-y") && !args.includes("--yes") && !process.stdin.isTTY) {
                    throw new KongError("not a tty: invoke 'reset' non-interactively with the --yes flag");
                }
                return (await reset(c, st, ttl)) ? 0 : 1;
            }
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

let requests = 0;

/** GET /status (kong/api/routes/health.lua): always 200; nginx and memory figures are the stand-in's own. */
function statusBody(): { memory: object; server: object } {
    requests++;
    const heap = `${(process.memoryUsage().heapUsed / 1048576).toFixed(2)} MiB`;
    return {
        memory: { lua_shared_dicts: { kong: { allocated_slabs: "0.04 MiB", capacity: "5.00 MiB" } }, workers_lua_vms: [{ http_allocated_gc: heap, pid: process.pid }] },
        server: {
            connections_active: 1, connections_reading: 0, connections_writing: 1, connections_waiting: 0,
            connections_accepted: requests, connections_handled: requests, total_requests: requests,
        },
    };
}

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
        if (req.url === "/status") sendJson(res, 200, { ...statusBody(), configuration_hash: config?.hash ?? "0".repeat(32) });
        else if (req.url === "/status/ready") sendJson(res, config ? 200 : 503, { message: config ? "ready" : "no configuration available (configuration hash is not initialized)" });
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
            json(res, 200, { ...statusBody(), database: { reachable: await reachable() } });
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
                    r = await c.query("INSERT INTO plugins (id, name, config, enabled) VALUES ($1, $2, $3, true) RETURNING *", [id, b.name, JSON.stringify(b.config ?? {})]);
                } else if (collection === "upstreams") {
                    r = await c.query("INSERT INTO upstreams (id, name, slots) VALUES ($1, $2, 10000) RETURNING *", [id, b.name]);
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

/** kong/cmd/health.lua: only whether the nginx of the prefix runs; no database, no migrations. */
function health(args: string[]): number {
    const i = args.findIndex((a) => a === "-p" || a === "--prefix");
    const prefix = i >= 0 ? args[i + 1] : PREFIX;
    if (!existsSync(prefix)) throw new KongError(`no such prefix: ${prefix}`);
    if (!existsSync(path.join(prefix, ".kong_env"))) throw new KongError(`Kong is not running at ${prefix}`);
    const pidFile = path.join(prefix, "pids", "nginx.pid");
    let running = false;
    try {
        process.kill(Number(readFileSync(pidFile, "utf8").trim()), 0);
        running = true;
    } catch {
        running = false;
    }
    log(`${"nginx".padEnd(12, ".")}${running ? "running" : "not running"}`);
    log("");
    if (!running) throw new KongError(`Kong is not running at ${prefix}`);
    log(`Kong is healthy at ${prefix}`);
    return 0;
}

async function main(argv: string[]): Promise<number> {
    if (env.KONG_SIM_HANG) await new Promise((r) => setTimeout(r, Number(env.KONG_SIM_HANG) * 1000));
    quiet = argv.includes("-q") || argv.includes("--quiet");
    const [cmd, sub, ...rest] = argv;
    switch (cmd) {
        case "version": log(VERSION); return 0;
        case "health": return health([sub, ...rest].filter((x): x is string => x !== undefined));
        case "start":
        case "docker-start": return start();
        case "migrations": return migrations(sub, rest);
        case "config": return config(sub, rest);
        default: throw new KongError(`No such command: ${cmd ?? ""}`);
    }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    // kong/cmd/init.lua: "Error: <message>" and a hint, exit 1.
    process.stderr.write(`Error: ${e instanceof KongError ? e.message : (e as Error).stack ?? String(e)}\n\n  Run with --v (verbose) or --vv (debug) for more details\n`);
    process.exit(1);
});
