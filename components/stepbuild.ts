// The step programs run as plain JavaScript, so a step starts in Node's own time: no TypeScript
// loader at run time. TypeScript's own transpiler (a dependency already) turns steps/**/*.ts into
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

function sources(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const full = path.join(dir, e.name);
        return e.isDirectory() ? sources(full) : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [full] : [];
    }).sort();
}

const built = new Set<string>();

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
    if (built.has(`${root}\0${hash}`)) return hash;
    const stampFile = path.join(link, "sources.sha256");
    if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === hash) {
        built.add(`${root}\0${hash}`);
        return hash;
    }
    // Loaded only to build: the Pulumi program already holds it (its TypeScript runtime).
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const ts = require("typescript") as typeof import("typescript");
    const buildDir = path.dirname(link);
    fs.mkdirSync(buildDir, { recursive: true });
    const target = fs.mkdtempSync(path.join(buildDir, `step-programs.${hash}.`));
    for (const f of files) {
        const out = ts.transpileModule(fs.readFileSync(f, "utf8"), {
            fileName: f,
            compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
        });
        const dest = path.join(target, path.relative(root, f)).replace(/\.ts$/, ".js");
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.writeFileSync(dest, out.outputText);
    }
    fs.writeFileSync(path.join(target, "sources.sha256"), hash);
    const tmpLink = `${link}.${process.pid}.tmp`;
    fs.rmSync(tmpLink, { force: true });
    // A real folder in the link's place (not made here) would refuse the rename.
    if (fs.existsSync(link) && !fs.lstatSync(link).isSymbolicLink()) fs.rmSync(link, { recursive: true, force: true });
    fs.symlinkSync(process.platform === "win32" ? target : path.basename(target), tmpLink, "junction");
    fs.renameSync(tmpLink, link);
    // Builds of other sources (a step still running from one has loaded its modules already).
    // Builds of these same sources stay: another process building at the same moment may have
    // swapped the link onto its own.
    for (const e of fs.readdirSync(buildDir)) {
        if (e.startsWith("step-programs.") && !e.startsWith(`step-programs.${hash}.`) && !e.endsWith(".tmp")) {
            fs.rmSync(path.join(buildDir, e), { recursive: true, force: true });
        }
    }
    built.add(`${root}\0${hash}`);
    return hash;
}
