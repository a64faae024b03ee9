// The step programs run as plain JavaScript, so a step starts in Node's own time: no TypeScript
// loader at run time (and, through the step runner, in a worker that is already loaded: steps/runner.ts). TypeScript's own transpiler (a dependency already) turns steps/**/*.ts into
// build/step-programs/ the first time the program runs, and again whenever a source changes: a
// hash of every source is kept with the output. Nothing built is committed (build/ is ignored).
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";

const ROOT = path.join(__dirname, "..");

/** The folder the Commands run the step programs from, relative to the project (their cwd). */
export const STEP_PROGRAMS_DIR = "build/step-programs";

/** The entry point of every step program inside STEP_PROGRAMS_DIR. */
export const STEP_PROGRAMS_MAIN = `${STEP_PROGRAMS_DIR}/steps/main.js`;

/** The step runner's client (steps/run-step.sh, copied as is): what the Commands run. */
export const STEP_RUNNER_CLIENT = `${STEP_PROGRAMS_DIR}/steps/run-step.sh`;

function sources(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const full = path.join(dir, e.name);
        return e.isDirectory() ? sources(full) : (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) || e.name.endsWith(".sh") ? [full] : [];
    }).sort();
}


/**
 * Makes `<root>/build/step-programs` hold the transpiled steps/ of `root`, unless it already holds
 * those of exactly these sources. Each build goes into its own folder and a symlink is swapped
 * onto it in one rename, so a step starting meanwhile (another stack's run) sees one whole tree.
 * Returns the hash of the sources. Cheap when nothing changed (hashes ~70 kB).
 */
export function ensureStepPrograms(root = ROOT): string {
    const files = sources(path.join(root, "steps"));
    const h = createHash("sha256");
    for (const f of files) h.update(path.relative(root, f)).update("\0").update(fs.readFileSync(f)).update("\0");
    const hash = h.digest("hex").slice(0, 16);
    const link = path.join(root, STEP_PROGRAMS_DIR);
    const stampFile = path.join(link, "sources.sha256");
    const output = (dir: string, f: string) => path.join(dir, path.relative(root, f)).replace(/\.ts$/, ".js");
    // The stamp and every output: a tree cut short (a crash mid-build) is built again.
    if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === hash && files.every((f) => fs.existsSync(output(link, f)))) {
        return hash;
    }
    // Loaded only to build: the Pulumi program already holds it (its TypeScript runtime).
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const ts = require("typescript") as typeof import("typescript");
    const buildDir = path.dirname(link);
    fs.mkdirSync(buildDir, { recursive: true });
    const target = fs.mkdtempSync(path.join(buildDir, `step-programs.${hash}.`));
    for (const f of files) {
        const dest = output(target, f);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        // Shell scripts (the step runner's client) as they are; TypeScript transpiled.
        fs.writeFileSync(dest, f.endsWith(".sh") ? fs.readFileSync(f) : ts.transpileModule(fs.readFileSync(f, "utf8"), {
            fileName: f,
            compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
        }).outputText);
    }
    fs.writeFileSync(path.join(target, "sources.sha256"), hash);
    const tmpLink = `${link}.${process.pid}.tmp`;
    fs.rmSync(tmpLink, { force: true });
    // A real folder in the link's place (not made here) would refuse the rename.
    if (fs.existsSync(link) && !fs.lstatSync(link).isSymbolicLink()) fs.rmSync(link, { recursive: true, force: true });
    fs.symlinkSync(process.platform === "win32" ? target : path.basename(target), tmpLink, "junction");
    fs.renameSync(tmpLink, link);
    // Old builds of other sources go. A recent one stays: another process may be writing it right
    // now (the sources changed during a run), or a step just started from it loads its modules.
    const stale = Date.now() - 10 * 60_000;
    for (const e of fs.readdirSync(buildDir)) {
        const dir = path.join(buildDir, e);
        if (e.startsWith("step-programs.") && !e.startsWith(`step-programs.${hash}.`) && !e.endsWith(".tmp") && fs.statSync(dir).mtimeMs < stale) {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }
    return hash;
}
