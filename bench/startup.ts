// `npm run bench:startup [-- --repeat N]`: how long a step program takes to start, the way each
// Command runs it, for a trivial step (stop of a cluster with no nodes: no docker, no database).
// The last way is the Commands' own command line (`/bin/sh -c "exec bash …/run-step.sh stop"`)
// with the step runner warm: a worker that is already loaded runs the step (steps/runner.ts).
// Two figures per way: spawn → first progress line on stderr, spawn → exit. Node's own start-up
// (`node -e 0`) is the floor. Every step's start-up falls inside the downtime window.
import { spawn } from "child_process";
import * as path from "path";
import { stepArgv, stepCommandLine } from "../components/step";
import { SPEC_ENV } from "../steps/lib/spec";

const ROOT = path.join(__dirname, "..");
const SPEC = JSON.stringify({ step: "stop", cluster: { stack: "bench", version: "3.4.3", nodes: [] }, drainSeconds: 1 });

function once(argv: string[]): Promise<{ firstLine: number; exit: number }> {
    return new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
        const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, env: { ...process.env, [SPEC_ENV]: SPEC }, stdio: ["ignore", "pipe", "pipe"] });
        let firstLine = -1;
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => {
            stderr += d.toString();
            if (firstLine < 0 && stderr.includes("\n")) firstLine = ms();
        });
        child.stdout.resume();
        child.on("error", reject);
        child.on("close", (code) => {
            const exit = ms();
            if (code !== 0) reject(new Error(`${argv.join(" ")} exited ${code}: ${stderr}`));
            else resolve({ firstLine: firstLine < 0 ? exit : firstLine, exit });
        });
    });
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

async function main(): Promise<void> {
    const ri = process.argv.indexOf("--repeat");
    const repeat = ri >= 0 ? Number(process.argv[ri + 1]) : 15;
    const node = process.execPath;
    const built = stepArgv("stop").slice(1);
    const ways: Array<[string, string[]]> = [
        ["node -e 0 (Node's own start-up, the floor)", [node, "-e", "process.stderr.write('x\\n')"]],
        ["before: ts-node transpile-only, steps/main.ts", [node, "--require", "ts-node/register/transpile-only", "steps/main.ts", "stop"]],
        ["before: sucrase loader, steps/main.ts", [node, "--require", "sucrase/register/ts", "steps/main.ts", "stop"]],
        [`after: plain JavaScript, ${built[0]}`, [node, ...built]],
        ["now: the Command's line, the step runner warm", ["/bin/sh", "-c", stepCommandLine("stop", true)]],
    ];
    // The first run through the client starts the runner (and runs the step directly); the rest find it.
    await once(ways[4][1]);
    await new Promise((r) => setTimeout(r, 1500));
    const rows: Array<{ label: string; first: number[]; exit: number[] }> = ways.map(([label]) => ({ label, first: [], exit: [] }));
    // Interleaved, so the machine's noise falls on every way alike.
    for (let rep = 0; rep < repeat; rep++) {
        for (let i = 0; i < ways.length; i++) {
            const r = await once(ways[i][1]);
            rows[i].first.push(r.firstLine);
            rows[i].exit.push(r.exit);
        }
    }
    const w = Math.max(...rows.map((r) => r.label.length));
    process.stdout.write(`${"way a step program is started".padEnd(w)}  first line ms (median, min–max)   exit ms (median, min–max)\n`);
    for (const r of rows) {
        const f = (xs: number[]) => `${median(xs).toFixed(0).padStart(5)}  ${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`.padEnd(30);
        process.stdout.write(`${r.label.padEnd(w)}  ${f(r.first)}   ${f(r.exit)}\n`);
    }
    const after = median(rows[3].exit);
    const warm = median(rows[4].exit);
    process.stdout.write(`\n${repeat} runs each, interleaved. To exit: sucrase ${(median(rows[2].exit) / after).toFixed(1)}× and ts-node ` +
        `${(median(rows[1].exit) / after).toFixed(1)}× the plain JavaScript; plain JavaScript is Node's floor + ` +
        `${(after - median(rows[0].exit)).toFixed(0)} ms; through the warm runner ${warm.toFixed(0)} ms, ` +
        `${(after / warm).toFixed(1)}× sooner than plain JavaScript and ${(median(rows[0].exit) / warm).toFixed(1)}× sooner than Node's floor.\n`);
}

main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
});
