// Kong 3.7.1's table layout (facts in test/kong-standin/schema.ts) in a form any test can compare a
// database against: readLayout(client) of a database next to kong371Layout().
import { Client } from "pg";
import { KONG_371_FUNCTIONS, KONG_371_TABLES } from "../kong-standin/schema";

/** Sorted lines: tables; `table.column type[ NOT NULL]`; `table constraint definition`; index, trigger and function names. */
export interface Layout { tables: string[]; columns: string[]; constraints: string[]; indexes: string[]; triggers: string[]; functions: string[] }

// Kong 3.7.1's tables after bootstrap with the bundled plugins (/work/shared/postgres-facts.md,
// "Kong 3.7.1's real schema"), less `vault_auth_vaults`: kong/db/migrations/core/016_280_to_300.lua:79-83
// (tag 3.7.1) creates it only from a `vaults` table that an OSS bootstrap never has, and a replay of
// the 3.7.1 migration files on PostgreSQL 15 does not create it.
export const KONG_371_TABLE_LIST = [
    "acls", "acme_storage", "basicauth_credentials", "ca_certificates", "certificates", "cluster_events", "clustering_data_planes",
    "clustering_rpc_requests", "consumers", "filter_chains", "hmacauth_credentials", "jwt_secrets", "key_sets", "keyauth_credentials", "keys",
    "locks", "oauth2_authorization_codes", "oauth2_credentials", "oauth2_tokens", "parameters", "plugins", "ratelimiting_metrics",
    "response_ratelimiting_metrics", "routes", "schema_meta", "services", "sessions", "sm_vaults", "snis", "tags", "targets", "upstreams", "workspaces",
];

/** The layout of the database `c` is connected to, in its current schema. */
export async function readLayout(c: Client): Promise<Layout> {
    const q = async (sql: string) => (await c.query<{ x: string }>(sql)).rows.map((r) => r.x).sort();
    return {
        tables: await q("SELECT table_name::text AS x FROM information_schema.tables WHERE table_schema = current_schema()"),
        columns: await q(`SELECT table_name || '.' || column_name || ' ' || CASE WHEN data_type IN ('ARRAY','USER-DEFINED') THEN udt_name ELSE data_type END
            || CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END AS x FROM information_schema.columns WHERE table_schema = current_schema()`),
        constraints: await q("SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS x FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"),
        indexes: await q("SELECT indexname::text AS x FROM pg_indexes WHERE schemaname = current_schema()"),
        triggers: await q("SELECT tgrelid::regclass::text || ' ' || tgname AS x FROM pg_trigger WHERE NOT tgisinternal"),
        functions: await q("SELECT proname::text AS x FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"),
    };
}

/** Kong 3.7.1's layout after `kong migrations bootstrap` with KONG_PLUGINS=bundled. */
export function kong371Layout(): Layout {
    const e = Object.entries(KONG_371_TABLES);
    return {
        tables: e.map(([t]) => t).sort(),
        columns: e.flatMap(([t, f]) => f.columns.map((c) => `${t}.${c.name} ${c.type}${c.notNull ? " NOT NULL" : ""}`)).sort(),
        constraints: e.flatMap(([t, f]) => f.constraints.map((c) => `${t} ${c.name} ${c.def}`)).sort(),
        indexes: e.flatMap(([, f]) => [...f.indexes.map((i) => i.name), ...f.constraints.filter((c) => c.kind === "p" || c.kind === "u").map((c) => c.name)]).sort(),
        triggers: e.flatMap(([t, f]) => f.triggers.map((tr) => `${t} ${tr.name}`)).sort(),
        functions: [...KONG_371_FUNCTIONS].sort(),
    };
}
