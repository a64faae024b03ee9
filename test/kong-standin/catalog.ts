// The stand-in's migration catalog: Kong's own subsystems and migration names (core and the bundled
// plugins, as Kong 3.4.2 … 3.7.1 list them), building Kong 3.7.1's real tables from the facts in
// schema.ts. A Kong of minor version V knows every migration whose `since` is at most V.
//
// What is folded: everything Kong's migrations up to 3.4 do (core 000_base … 020_330_to_340 and the
// plugins' older ones) is created by each subsystem's first migration in 3.4's final shape; the
// later names of that range are recorded but do nothing. From 3.5 on each migration does what
// Kong's does (schema changes exactly; plugin-config rewrites in our own SQL), with a teardown
// exactly where Kong has one, so `up` leaves pending what Kong leaves pending.
import { KONG_371_TABLES, KONG_MIGRATIONS, TableFact } from "./schema";

export interface Migration {
    name: string;
    /** First minor (major*100 + minor) that ships it. */
    since: number;
    /** SQL run by `up` (and by bootstrap); empty: nothing to run (Kong records it all the same). */
    up: string;
    /** Present when Kong's migration has a teardown (run by `finish`); may be empty SQL. */
    teardown?: string;
}

export interface Subsystem {
    name: string;
    /** A plugin subsystem is loaded only when KONG_PLUGINS includes the plugin. */
    plugin: boolean;
    /** Kong's Lua namespace, as `kong migrations status` prints it. */
    namespace: string;
    migrations: Migration[];
}

/** Tables each plugin's first migration creates (kong/plugins/<name>/migrations/000_base_*.lua). */
export const PLUGIN_TABLES: Record<string, string[]> = {
    "acl": ["acls"],
    "acme": ["acme_storage"],
    "basic-auth": ["basicauth_credentials"],
    "hmac-auth": ["hmacauth_credentials"],
    "jwt": ["jwt_secrets"],
    "key-auth": ["keyauth_credentials"],
    "oauth2": ["oauth2_credentials", "oauth2_authorization_codes", "oauth2_tokens"],
    "rate-limiting": ["ratelimiting_metrics"],
    "response-ratelimiting": ["response_ratelimiting_metrics"],
    "session": ["sessions"],
};

/** Created by `bootstrap` itself, before any migration (kong/db/strategies/postgres/connector.lua). */
export const BOOTSTRAP_TABLES = ["schema_meta", "locks"];

/** Added after 3.4, by the migration named (core 021/022/023_*.lua at tag 3.7.1). */
const LATER: Record<string, { table: string; column?: string }[]> = {
    "021_340_to_350": [{ table: "clustering_data_planes", column: "labels" }],
    "022_350_to_360": [{ table: "clustering_data_planes", column: "cert_details" }],
    "023_360_to_370": [{ table: "clustering_rpc_requests" }, { table: "clustering_data_planes", column: "rpc_capabilities" }],
};
const laterTables = new Set(Object.values(LATER).flat().filter((l) => !l.column).map((l) => l.table));
const laterColumns = new Set(Object.values(LATER).flat().filter((l) => l.column).map((l) => `${l.table}.${l.column}`));

function columnType(c: { type: string; default?: string }): string {
    if (c.default?.startsWith("nextval(")) return c.type === "bigint" ? "BIGSERIAL" : "SERIAL";
    return c.type.startsWith("_") ? `${c.type.slice(1)}[]` : c.type;
}

function columnSql(table: string, c: TableFact["columns"][number]): string {
    const def = c.default && !c.default.startsWith("nextval(") ? ` DEFAULT ${c.default}` : "";
    return `"${c.name}" ${columnType(c)}${c.notNull ? " NOT NULL" : ""}${def}`;
}

/** DDL that creates `tables` as Kong 3.7.1 has them, leaving out what arrives after `skipLater`. */
export function tablesSql(tables: string[], skipLater = true): string {
    const facts = tables.map((t) => [t, KONG_371_TABLES[t]] as const);
    const out: string[] = [];
    for (const [t, f] of facts) {
        const cols = f.columns.filter((c) => !(skipLater && laterColumns.has(`${t}.${c.name}`)));
        out.push(`CREATE TABLE IF NOT EXISTS "${t}" (${cols.map((c) => columnSql(t, c)).join(", ")})`);
    }
    // Keys first, then foreign keys (they reference keys), then indexes and triggers.
    for (const kinds of [["p", "u", "c"], ["f"]]) {
        for (const [t, f] of facts) {
            for (const k of f.constraints.filter((c) => kinds.includes(c.kind))) out.push(`ALTER TABLE "${t}" ADD CONSTRAINT "${k.name}" ${k.def}`);
        }
    }
    for (const [, f] of facts) for (const i of f.indexes) out.push(i.def);
    for (const [, f] of facts) for (const tr of f.triggers) out.push(tr.def.replace(/^CREATE TRIGGER/, "CREATE TRIGGER"));
    return out.map((s) => `${s};`).join("\n");
}

// Our own bodies for the two trigger functions Kong's core migrations define (003_100_to_110 and
// 019_320_to_330): keep `tags` in step with each entity's tags, and delete a few expired rows
// after each insert into a table with a TTL column.
const FUNCTIONS_SQL = `
CREATE OR REPLACE FUNCTION sync_tags() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN DELETE FROM tags WHERE entity_name = TG_TABLE_NAME; RETURN NULL; END IF;
    IF TG_OP = 'DELETE' THEN DELETE FROM tags WHERE entity_id = OLD.id; RETURN OLD; END IF;
    INSERT INTO tags (entity_id, entity_name, tags) VALUES (NEW.id, TG_TABLE_NAME, NEW.tags)
        ON CONFLICT (entity_id) DO UPDATE SET tags = EXCLUDED.tags;
    RETURN NEW;
END $fn$;
CREATE OR REPLACE FUNCTION batch_delete_expired_rows() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('DELETE FROM %I WHERE ctid IN (SELECT ctid FROM %I WHERE %I < CURRENT_TIMESTAMP AT TIME ZONE ''UTC'' ORDER BY %I LIMIT 2 FOR UPDATE SKIP LOCKED)',
        TG_TABLE_NAME, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0]);
    RETURN NULL;
END $fn$;`;

const pluginTables = new Set(Object.values(PLUGIN_TABLES).flat());
const CORE_TABLES = Object.keys(KONG_371_TABLES)
    .filter((t) => !pluginTables.has(t) && !BOOTSTRAP_TABLES.includes(t) && !laterTables.has(t))
    // workspaces first: every entity table references it.
    .sort((a, b) => (a === "workspaces" ? -1 : b === "workspaces" ? 1 : 0));

/** Kong 3.6 moved the rate-limiting plugins' flat redis_* fields into a `redis` record. */
function redisUp(plugin: string): string {
    const fields = ["host", "port", "password", "username", "ssl", "ssl_verify", "server_name", "timeout", "database"];
    const pairs = fields.map((f) => `'${f}', coalesce(config->'redis_${f}', config #> '{redis,${f}}')`).join(", ");
    return `UPDATE plugins SET config = config || jsonb_build_object('redis', jsonb_build_object(${pairs})) WHERE name = '${plugin}'`;
}
function redisTeardown(plugin: string): string {
    const fields = ["host", "port", "password", "username", "ssl", "ssl_verify", "server_name", "timeout", "database"];
    return `UPDATE plugins SET config = config ${fields.map((f) => `- 'redis_${f}'`).join(" ")} WHERE name = '${plugin}'`;
}

/** What a migration does in the stand-in, where it does more than record its name. */
const SQL: Record<string, { up?: string; teardown?: string }> = {
    // Rows Kong's core migrations insert: the default workspace (009_200_to_210) and the cluster id (013_220_to_230).
    "core/000_base": {
        up: `${FUNCTIONS_SQL}\n${tablesSql(CORE_TABLES)}
            INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'default') ON CONFLICT DO NOTHING;
            INSERT INTO parameters (key, value) VALUES ('cluster_id', gen_random_uuid()::text) ON CONFLICT DO NOTHING;`,
    },
    ...Object.fromEntries(Object.entries(PLUGIN_TABLES).map(([p, tables]) => [`${p}/${KONG_MIGRATIONS["3.4.2"][p][0].replace("*", "")}`, { up: tablesSql(tables) }])),
    "core/021_340_to_350": { up: `ALTER TABLE IF EXISTS ONLY clustering_data_planes ADD COLUMN IF NOT EXISTS labels jsonb` },
    "core/022_350_to_360": { up: `ALTER TABLE IF EXISTS ONLY clustering_data_planes ADD COLUMN IF NOT EXISTS cert_details jsonb` },
    "core/023_360_to_370": {
        up: `${tablesSql(["clustering_rpc_requests"], false)}\nALTER TABLE IF EXISTS ONLY clustering_data_planes ADD COLUMN IF NOT EXISTS rpc_capabilities text[]`,
    },
    "rate-limiting/006_350_to_360": { up: redisUp("rate-limiting"), teardown: redisTeardown("rate-limiting") },
    "response-ratelimiting/001_350_to_360": { up: redisUp("response-ratelimiting"), teardown: redisTeardown("response-ratelimiting") },
    "acme/003_350_to_360": {
        up: `UPDATE plugins SET config = jsonb_set(config, '{storage_config,redis}', (config #> '{storage_config,redis}') || jsonb_build_object(
            'password', coalesce(config #> '{storage_config,redis,auth}', config #> '{storage_config,redis,password}'),
            'server_name', coalesce(config #> '{storage_config,redis,ssl_server_name}', config #> '{storage_config,redis,server_name}'),
            'extra_options', jsonb_build_object(
                'scan_count', coalesce(config #> '{storage_config,redis,scan_count}', config #> '{storage_config,redis,extra_options,scan_count}'),
                'namespace', coalesce(config #> '{storage_config,redis,namespace}', config #> '{storage_config,redis,extra_options,namespace}'))))
            WHERE name = 'acme' AND config #> '{storage_config,redis}' IS NOT NULL`,
        teardown: `UPDATE plugins SET config = config #- '{storage_config,redis,auth}' #- '{storage_config,redis,ssl_server_name}'
            #- '{storage_config,redis,scan_count}' #- '{storage_config,redis,namespace}' WHERE name = 'acme'`,
    },
};

const RELEASES: Array<[string, number]> = [["3.4.2", 304], ["3.5.0", 305], ["3.6.1", 306], ["3.7.1", 307]];

/** Minor that first ships `name`: from the release lists for 3.5+, from the name for 3.1–3.4. */
function sinceOf(subsystem: string, name: string): number {
    for (const [tag, code] of RELEASES) {
        if ((KONG_MIGRATIONS[tag][subsystem] ?? []).some((m) => m.replace("*", "") === name)) {
            if (code > 304) return code;
            const to = /_3(\d)\d_to_3(\d)\d$/.exec(name);
            return to ? 300 + Number(to[2]) : 300;
        }
    }
    throw new Error(`unknown migration ${subsystem}/${name}`);
}

function buildCatalog(): Subsystem[] {
    const latest = KONG_MIGRATIONS["3.7.1"];
    const names = ["core", ...Object.keys(latest).filter((s) => s !== "core").sort()];
    return names.map((s) => ({
        name: s,
        plugin: s !== "core",
        namespace: s === "core" ? "kong.db.migrations.core" : `kong.plugins.${s}.migrations`,
        migrations: latest[s].map((entry) => {
            const name = entry.replace("*", "");
            const sql = SQL[`${s}/${name}`] ?? {};
            return { name, since: sinceOf(s, name), up: sql.up ?? "", ...(entry.endsWith("*") ? { teardown: sql.teardown ?? "" } : {}) };
        }),
    }));
}

export const CATALOG: Subsystem[] = buildCatalog();

// Not Kong's: one core migration after 3.7, so that the stand-in has a hop beyond the releases it
// models (3.8 ships none here; 3.9 adds one).
CATALOG[0].migrations.push({ name: "024_380_to_390", since: 309, up: `ALTER TABLE targets ADD COLUMN IF NOT EXISTS failover boolean DEFAULT false` });

/** Tables a bootstrap by a stand-in of `version` with every bundled plugin creates (3.4 … 3.7). */
export function expectedTables(version: string): string[] {
    const code = minorCode(version);
    const out = new Set([...BOOTSTRAP_TABLES, ...CORE_TABLES, ...pluginTables]);
    if (code >= 307) out.add("clustering_rpc_requests");
    return [...out].sort();
}

/** major*100 + minor of "3.7.1" or "3.7.1.2". */
export function minorCode(version: string): number {
    const [major, minor] = version.split(".").map(Number);
    return major * 100 + minor;
}

/** Subsystems a Kong of `version` with KONG_PLUGINS=`plugins` loads, with the migrations it knows. */
export function knownSubsystems(version: string, plugins: string): Subsystem[] {
    const code = minorCode(version);
    const list = plugins.split(",").map((p) => p.trim());
    const loaded = (s: Subsystem) => !s.plugin || list.includes("bundled") || list.includes(s.name);
    return CATALOG.filter(loaded)
        .map((s) => ({ ...s, migrations: s.migrations.filter((m) => m.since <= code) }))
        // A plugin Kong does not ship yet (ai-proxy before 3.7) has no subsystem at all.
        .filter((s) => !s.plugin || s.migrations.length > 0);
}
