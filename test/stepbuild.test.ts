// Step programs run as plain JavaScript built from steps/: once, and again when a source changes.
import { strict as assert } from "assert";
import { spawnSync } from "child_process";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { it } from "node:test";
import { STEP_PROGRAMS_DIR, ensureStepPrograms } from "../components/stepbuild";

it("transpiles steps/ into a tree Node runs without a loader, rebuilds only when a source changes", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "stepbuild-"));
    mkdirSync(path.join(root, "steps", "lib"), { recursive: true });
    writeFileSync(path.join(root, "steps", "lib", "greet.ts"), `export const greet = (n: string): string => \`hello \${n}\`;\n`);
    writeFileSync(path.join(root, "steps", "main.ts"), `import { greet } from "./lib/greet";\nconst who: string = process.argv[2];\nconsole.log(greet(who));\n`);
    const runMain = () => spawnSync(process.execPath, [path.join(root, STEP_PROGRAMS_DIR, "steps", "main.js"), "x"], { encoding: "utf8" });

    const first = ensureStepPrograms(root);
    assert.equal(runMain().stdout, "hello x\n");
    const target = readlinkSync(path.join(root, STEP_PROGRAMS_DIR));
    assert.equal(ensureStepPrograms(root), first, "unchanged sources: same build");
    assert.equal(readlinkSync(path.join(root, STEP_PROGRAMS_DIR)), target, "not rebuilt");

    writeFileSync(path.join(root, "steps", "lib", "greet.ts"), `export const greet = (n: string): string => \`bye \${n}\`;\n`);
    assert.notEqual(ensureStepPrograms(root), first);
    assert.equal(runMain().stdout, "bye x\n", "a changed source is rebuilt");
    const olds = () => readdirSync(path.join(root, "build")).filter((e) => e.startsWith(`step-programs.${first}`));
    assert.equal(olds().length, 1, "a recent build of other sources stays (another process may be writing or running it)");

    // A build cut short (killed, or its folder removed under it) is never trusted by its stamp.
    rmSync(path.join(root, STEP_PROGRAMS_DIR, "steps", "lib", "greet.js"));
    ensureStepPrograms(root);
    assert.equal(runMain().stdout, "bye x\n", "an incomplete tree is built again");

    // Ten minutes later the old build goes.
    const old = new Date(Date.now() - 11 * 60_000);
    utimesSync(path.join(root, "build", olds()[0]), old, old);
    writeFileSync(path.join(root, "steps", "lib", "greet.ts"), `export const greet = (n: string): string => \`hi \${n}\`;\n`);
    ensureStepPrograms(root);
    assert.equal(runMain().stdout, "hi x\n");
    assert.deepEqual(olds(), [], "an old build of other sources is removed");
});
