// `npm run bench -- --quick` runs in CI time and prints its table and closing line.
import { strict as assert } from "assert";
import { execFile } from "child_process";
import * as path from "path";
import { it } from "node:test";

it("npm run bench -- --quick prints the comparison table and the speed-up line", { timeout: 5 * 60_000 }, async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ["--require", "ts-node/register/transpile-only", "bench/bench.ts", "--quick", "--repeat", "1"],
            { cwd: path.join(__dirname, ".."), maxBuffer: 16 << 20 }, (err, out, errOut) => resolve({ code: err ? 1 : 0, stdout: out, stderr: errOut }));
    });
    assert.equal(code, 0, stderr.slice(-2000));
    for (const op of ["snapshot: template copy (ours)", "snapshot: pg_dump -Fc", "snapshot: online (freeze + template copy)",
        "restore: rename (ours, default)", "restore: set aside + template copy", "restore: pg_restore into fresh db", "restore: rename, database step alone"]) {
        assert.match(stdout, new RegExp(`^small\\s+${op.replace(/[()+]/g, "\\$&")}\\s+\\d+\\s+[\\d.]+\\s+[\\d.]+`, "m"), op);
    }
    assert.match(stdout.trim().split("\n").pop() ?? "", /^snapshot speedup vs pg_dump: \d+\.\d×; restore speedup vs pg_restore: \d+\.\d×; overhead: (-?\d+\.\d\d s|n\/a \(no rehearsal\))$/);
});
