// `npm run plan`: the runbook of a stack file, without the Pulumi CLI or credentials.
import { strict as assert } from "assert";
import { execFile } from "child_process";
import * as path from "path";
import { describe, it } from "node:test";
import { formatRunbook, planRunbook } from "../components/plan";
import { readSettings } from "../components/config";

const ROOT = path.join(__dirname, "..");

function plan(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
        execFile(process.execPath, ["--require", "ts-node/register/transpile-only", "bin/plan.ts", ...args], { cwd: ROOT },
            (err, stdout, stderr) => resolve({ code: err ? (err as NodeJS.ErrnoException & { code: number }).code : 0, stdout, stderr }));
    });
}

describe("npm run plan", () => {
    it("prints the dev stack's runbook: database, bootstrap, nodes, verify", async () => {
        const r = await plan("--stack", "dev");
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^stack dev$/m);
        assert.match(r.stdout, /steady: Kong 3\.4\.2 \(2 nodes\)/);
        assert.match(r.stdout, / 4\. kong-3-4-2-node-0, status-kong-3-4-2-node-0, kong-3-4-2-node-1, status-kong-3-4-2-node-1\n.*one at a time.*\n\s+waits for: bootstrap/);
        assert.match(r.stdout, /database\.password is not set in the stack file yet; planned as \[secret\]/);
    });

    it("prints an upgrade of the dev stack in order, with the deletions of X last", async () => {
        const r = await plan("--stack", "dev", "--set", "upgrade.to=3.7.1", "--set", 'upgrade.via=["3.5.0","3.6.1"]');
        assert.equal(r.code, 0, r.stderr);
        const order = ["preflight-3-4-2-to-3-7-1", "canary-3-4-2-to-3-7-1", "stop-kong-3-4-2", "snapshot-3-4-2-to-3-7-1", "migrations-up-3-5-0", "migrations-finish-3-5-0",
            "migrations-up-3-6-1", "migrations-finish-3-6-1", "migrations-up-3-7-1", "migrations-finish-3-7-1", "kong-3-7-1-node-0", "verify-kong-3-7-1",
            "then, after every step above succeeded, the engine deletes:", "kong-3-4-2-node-0 (cluster 3.4.2), decommissioned last"];
        const at = order.map((s) => r.stdout.indexOf(s));
        assert.ok(at.every((i) => i >= 0), `missing: ${order.filter((_, i) => at[i] < 0).join(", ")}`);
        assert.deepEqual([...at].sort((a, b) => a - b), at, "steps printed out of order");
    });

    it("exits 1 with the validation message on invalid configuration", async () => {
        const r = await plan("--stack", "dev", "--set", "upgrade.to=3.7.1");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /Kong 3\.4\.2 → 3\.7\.1 is not a direct upgrade: Kong routes it through 3\.5 and 3\.6/);
        assert.equal(r.stdout, "");
    });

    it("refuses a stack that has no file", async () => {
        const r = await plan("--stack", "nope");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /no Pulumi\.nope\.yaml/);
    });
});

describe("formatRunbook", () => {
    it("numbers the rollback's steps and lists Y's deletion", () => {
        const s = readSettings({ kong: { version: "3.4.3", nodes: 1 }, database: { password: "p" }, upgrade: { to: "3.7.1", rollback: true, restoreStrategy: "copy" } }, "dev");
        const text = formatRunbook(planRunbook(s)).join("\n");
        assert.match(text, /^rollback: roll back Kong 3\.7\.1 → 3\.4\.3 from the snapshot the 3\.4\.3 → 3\.7\.1 upgrade recorded/);
        assert.match(text, /restore .* by template copy; the current database is set aside as kong_failed_<time>, never dropped/);
        assert.match(text, /- kong-3-7-1-node-0 \(cluster 3\.7\.1\), deleted last/);
    });
});
