// Kong 3.7.1's real table layout as a SQL fixture (test/fixtures/kong-3.7.1.sql, written from Kong's migration files) and what a restore must bring
// back, described independently of the step programs' own code.
import { readFileSync } from "fs";
import * as path from "path";
import { Client } from "pg";
import { DbTarget } from "../../steps/lib/spec";

export const KONG_371_SQL = path.join(__dirname, "..", "fixtures", "kong-3.7.1.sql");

export async function withClient<T>(db: DbTarget, password: string, fn: (c: Client) => Promise<T>, database = db.database): Promise<T> {
    const c = new Client({ host: db.host, port: db.port, user: db.user, password, database });
    await c.connect();
    try {
        return await fn(c);
    } finally {
        await c.end();
    }
}

/** Creates Kong 3.7.1's tables, triggers and schema_meta in `db`, as its owner. */
export async function loadKong371(db: DbTarget, password: string): Promise<void> {
    await withClient(db, password, async (c) => { await c.query(readFileSync(KONG_371_SQL, "utf8")); });
}

/** Entities across Kong's tables: services, routes, consumers with key-auth, ACLs, certificates, keys… */
export async function seedKong(db: DbTarget, password: string, n: number): Promise<void> {
    await withClient(db, password, (c) => c.query(`
        INSERT INTO services (id, name, host, port, protocol, tags, ws_id) SELECT gen_random_uuid(), 'svc-' || i, 'up-' || i || '.internal', 80, 'http', ARRAY['t' || (i % 3)], (SELECT id FROM workspaces) FROM generate_series(1, ${n}) i;
        INSERT INTO routes (id, name, service_id, paths, ws_id) SELECT gen_random_uuid(), 'r-' || s.name, s.id, ARRAY['/' || s.name], s.ws_id FROM services s;
        INSERT INTO consumers (id, username, ws_id) SELECT gen_random_uuid(), 'Ünïcode-' || i || CASE WHEN i % 2 = 0 THEN 'a' ELSE 'B' END, (SELECT id FROM workspaces) FROM generate_series(1, ${n}) i;
        INSERT INTO keyauth_credentials (id, consumer_id, key, ws_id) SELECT gen_random_uuid(), id, 'key-' || username, ws_id FROM consumers;
        INSERT INTO acls (id, consumer_id, "group", ws_id) SELECT gen_random_uuid(), id, 'admins', ws_id FROM consumers;
        INSERT INTO plugins (id, name, service_id, config, enabled, ws_id) SELECT gen_random_uuid(), 'key-auth', id, '{}', true, ws_id FROM services;
        INSERT INTO certificates (id, cert, key, ws_id) SELECT gen_random_uuid(), 'cert-' || i, 'key-' || i, (SELECT id FROM workspaces) FROM generate_series(1, 3) i;
        INSERT INTO snis (id, name, certificate_id, ws_id) SELECT gen_random_uuid(), 'sni-' || row_number() OVER (), id, ws_id FROM certificates;
        INSERT INTO ca_certificates (id, cert, cert_digest) VALUES (gen_random_uuid(), 'ca', 'digest-1');
        INSERT INTO key_sets (id, name) VALUES (gen_random_uuid(), 'set-1');
        INSERT INTO keys (id, set_id, name, kid, jwk) SELECT gen_random_uuid(), id, 'k1', 'kid-1', '{}' FROM key_sets;
        INSERT INTO sm_vaults (id, prefix, name, config) VALUES (gen_random_uuid(), 'env-vault', 'env', '{}');
        INSERT INTO filter_chains (id, name, filters) VALUES (gen_random_uuid(), 'fc-1', ARRAY['{"name":"f"}'::jsonb]);
        INSERT INTO upstreams (id, name, slots) VALUES (gen_random_uuid(), 'up-1', 10000);
        INSERT INTO targets (id, upstream_id, target, weight) SELECT gen_random_uuid(), id, '10.0.0.1:80', 100 FROM upstreams;`));
}

/** Every row of every table of the schema, as one fingerprint per table (md5 of the sorted rows). */
export async function fingerprint(db: DbTarget, password: string, database = db.database): Promise<Record<string, string>> {
    return withClient(db, password, async (c) => {
        const tables = (await c.query<{ relname: string }>(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND relkind = 'r' ORDER BY 1")).rows;
        const out: Record<string, string> = {};
        for (const { relname } of tables) {
            const r = await c.query<{ h: string | null }>(`SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) AS h FROM "${relname}" t`);
            out[relname] = r.rows[0].h ?? "empty";
        }
        return out;
    }, database);
}

/** Inside the database: triggers, functions, table grants, the ICU/libc order of names. */
export async function schemaFacts(db: DbTarget, password: string, database = db.database): Promise<Record<string, unknown>> {
    return withClient(db, password, async (c) => ({
        triggers: (await c.query("SELECT tgrelid::regclass::text AS t, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2")).rows,
        functions: (await c.query("SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1")).rows,
        grants: (await c.query("SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants WHERE table_schema = 'public' ORDER BY 1, 2, 3")).rows,
        order: (await c.query("SELECT username FROM consumers ORDER BY username")).rows.map((r) => r.username as string),
        stats: Number((await c.query("SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'public'")).rows[0].n) > 0,
    }), database);
}

/** What the database carries in shared catalogs, read as an admin would, in plain SQL. */
export async function databaseLevel(admin: Client, name: string): Promise<Record<string, unknown>> {
    const d = (await admin.query(
        `SELECT pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding, datcollate, datctype, datlocprovider, daticulocale,
                datconnlimit, datallowconn, shobj_description(oid, 'pg_database') AS comment,
                (SELECT array_agg(x ORDER BY x) FROM (SELECT (CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END) || ':' || a.privilege_type || ':' || a.is_grantable AS x
                   FROM aclexplode(coalesce(datacl, acldefault('d', datdba))) a) s) AS acl,
                (SELECT array_agg(coalesce(pg_get_userbyid(nullif(setrole, 0)), '*') || '=' || array_to_string(setconfig, ',') ORDER BY setrole)
                   FROM pg_db_role_setting WHERE setdatabase = d.oid) AS settings
           FROM pg_database d WHERE datname = $1`, [name])).rows[0];
    return d as Record<string, unknown>;
}
