import { readFileSync, writeFileSync } from "fs";
import { Client } from "pg";
import { startPostgres } from "../../helpers/postgres";

// Replays dump-<tag>.sql (written by `luajit dump.lua <tag> > dump-<tag>.sql`, run from a Kong/kong clone path set in dump.lua)
// on a scratch PostgreSQL and writes layout.json, which gen.js turns into ../schema.ts. DIR: where those files are.
const DIR = process.env.KONG_REPLAY_DIR ?? "/tmp/kongref";

function parse(tag: string) {
    const text = readFileSync(`${DIR}/dump-${tag}.sql`, "utf8");
    const parts = text.split(/^--@@ MIGRATION /m).slice(1);
    return parts.map((p) => {
        const [head, ...rest] = p.split("\n");
        const [subsystem, name] = head.split(" ");
        const body = rest.join("\n");
        const [up, td] = body.split(/^--@@ TEARDOWN .*$/m);
        return { subsystem, name, hasTeardown: head.endsWith(" teardown"), up, teardown: (td ?? "").split(/^;$/m).map((s) => s.trim()).filter(Boolean) };
    });
}

export async function layout(c: Client) {
    const cols = await c.query(`SELECT table_name, column_name, CASE WHEN data_type IN ('ARRAY','USER-DEFINED') THEN udt_name ELSE data_type END AS type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`);
    const cons = await c.query(`SELECT conrelid::regclass::text AS t, conname, contype, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`);
    const idx = await c.query(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`);
    const trg = await c.query(`SELECT tgrelid::regclass::text AS t, tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2`);
    const fns = await c.query(`SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1`);
    const tables: Record<string, unknown> = {};
    for (const r of cols.rows) {
        const t = (tables[r.table_name] ??= { columns: [], constraints: [], indexes: [], triggers: [] }) as Record<string, unknown[]>;
        t.columns.push([r.column_name, r.type, r.is_nullable === "NO" ? "NOT NULL" : "", r.column_default ?? ""]);
    }
    for (const r of cons.rows) (tables[r.t] as Record<string, unknown[]>).constraints.push([r.conname, r.contype, r.def]);
    for (const r of idx.rows) (tables[r.tablename] as Record<string, unknown[]>).indexes.push([r.indexname, r.indexdef]);
    for (const r of trg.rows) (tables[r.t] as Record<string, unknown[]>).triggers.push([r.tgname, r.def]);
    return { tables, functions: fns.rows.map((r) => r.proname) };
}

async function main() {
    const server = await startPostgres();
    try {
        const out: Record<string, unknown> = {};
        for (const tag of ["3.4.2", "3.5.0", "3.6.1", "3.7.1"]) {
            const { db, password } = await server.kongDatabase(tag.replace(/\./g, ""));
            const c = new Client({ host: db.host, port: db.port, user: db.user, password, database: db.database });
            await c.connect();
            await c.query(`CREATE TABLE IF NOT EXISTS schema_meta (key TEXT, subsystem TEXT, last_executed TEXT, executed TEXT[], pending TEXT[], PRIMARY KEY (key, subsystem));
                CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, owner TEXT, ttl TIMESTAMP WITH TIME ZONE); CREATE INDEX IF NOT EXISTS locks_ttl_idx ON locks (ttl);`);
            const migs = parse(tag);
            for (const m of migs) {
                if (m.up.trim()) await c.query(`BEGIN;\n${m.up}\nCOMMIT;`).catch(async (e) => { console.error(tag, m.subsystem, m.name, "up", e.message); await c.query("ROLLBACK"); });
                for (const q of m.teardown) await c.query(q).catch(async (e) => { console.error(tag, m.subsystem, m.name, "td", e.message.slice(0, 100)); await c.query("ROLLBACK").catch(() => undefined); });
            }
            const sm: Record<string, string[]> = {};
            for (const m of migs) (sm[m.subsystem] ??= []).push(`${m.name}${m.hasTeardown ? "*" : ""}`);
            out[tag] = { migrations: sm, ...(await layout(c)) };
            await c.end();
        }
        writeFileSync(`${DIR}/layout.json`, JSON.stringify(out, null, 1));
    } finally {
        await server.stop();
    }
}
if (require.main === module) void main();
