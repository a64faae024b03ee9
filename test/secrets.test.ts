// Secrets through the step programs, against a real PostgreSQL: kong.secretEnv reaches Kong's
// one-off containers by name only, and the password step creates and rotates a role's password.
import { strict as assert } from "assert";
import { createHash } from "crypto";
import { readFileSync } from "fs";
import { after, before, describe, it } from "node:test";
import { Client } from "pg";
import { DbTarget, StepSpec } from "../steps/lib/spec";
import { TestServer, startPostgres } from "./helpers/postgres";
import { StepRun, fakeDockerState, kongRun, runStep } from "./helpers/steps";

let server: TestServer;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

function ok(r: StepRun): void {
    assert.equal(r.code, 0, `step failed:\n${r.stderr}`);
}

async function login(db: DbTarget, password: string): Promise<Client> {
    const c = new Client({ host: db.host, port: db.port, user: db.user, password, database: db.database });
    await c.connect();
    return c;
}

async function refused(db: DbTarget, password: string): Promise<string | undefined> {
    try {
        await (await login(db, password)).end();
        return undefined;
    } catch (e) {
        return (e as { code?: string }).code;
    }
}

describe("kong.secretEnv", () => {
    const NAME = "KONG_ADMIN_GUI_SESSION_CONF";
    const VALUE = `{"secret":"session-secret-${process.pid}-Vx"}`;

    it("reaches Kong's one-off container by name: the value is in no argv, spec, stdout or stderr", async () => {
        const t = await server.kongDatabase("secretenv");
        const state = fakeDockerState();
        // No local kong command: the step runs `docker run … kong …`, which the fake docker performs.
        const env = { FAKE_DOCKER_STATE: state, KONG_UPGRADE_KONG_COMMAND: "", [NAME]: VALUE };
        const spec: StepSpec = { step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3", { secretEnv: [NAME] }) };
        assert.ok(!JSON.stringify(spec).includes(VALUE));
        const r = await runStep(spec, { ...t, env });
        ok(r);
        assert.ok(!r.stdout.includes(VALUE) && !r.stderr.includes(VALUE), "value printed by the step");
        const log = readFileSync(`${state}.log`, "utf8");
        assert.ok(!log.includes(VALUE), "value on a docker command line");
        const runs = log.trim().split("\n").map((l) => JSON.parse(l) as unknown).filter((a): a is string[] => Array.isArray(a) && a[0] === "run");
        assert.ok(runs.length > 0, "bootstrap ran kong in a container");
        for (const argv of runs) {
            const i = argv.indexOf(NAME);
            assert.ok(i > 0 && argv[i - 1] === "-e", `-e ${NAME} by name in ${argv.join(" ")}`);
        }
        const digest = createHash("sha256").update(VALUE).digest("hex");
        assert.ok(log.includes(`"${NAME}":"${digest}"`), "the container received the value itself");
    });

    it("a step not given the secret says which one is missing", async () => {
        const t = await server.kongDatabase("secretenv-missing");
        const r = await runStep({ step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3", { secretEnv: [NAME] }) },
            { ...t, env: { FAKE_DOCKER_STATE: fakeDockerState(), KONG_UPGRADE_KONG_COMMAND: "" } });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, new RegExp(`${NAME} is not set: kong\\.secretEnv\\.${NAME} must reach the step`));
    });
});

describe("password step", () => {
    const step = (db: DbTarget, env: Record<string, string>, extra: Partial<Extract<StepSpec, { step: "password" }>> = {}) =>
        runStep({ step: "password", db, hint: "database.password", ...extra }, { password: "unused", env });

    it("created without a password: generates one, once, and prints it only on stdout (a secret output)", async () => {
        const t = await server.kongDatabase("pw-generate");
        const r = await step(t.db, {});
        ok(r);
        const generated = String(r.result?.password);
        assert.ok(generated.length >= 32, "a long random password");
        assert.equal(r.result?.rotated, false);
        assert.ok(!r.stderr.includes(generated));
        // Run again (an update with nothing new): the same password, nothing changed.
        const again = await step(t.db, { PULUMI_COMMAND_STDOUT: r.stdout });
        ok(again);
        assert.equal(again.result?.password, generated);
    });

    it("rotation: the role changes its own password with the old one; old refused, open sessions kept, rerun harmless", async () => {
        const t = await server.kongDatabase("pw-rotate");
        const created = await step(t.db, { KONG_UPGRADE_ROLE_PASSWORD: t.password }, { verifyOnCreate: "always" });
        ok(created);
        const open = await login(t.db, t.password); // a node's pooled connection, opened before
        const next = `rotated-${process.pid}-Qw8`;
        const r = await step(t.db, { KONG_UPGRADE_ROLE_PASSWORD: next, PULUMI_COMMAND_STDOUT: created.stdout });
        ok(r);
        assert.equal(r.result?.rotated, true);
        assert.ok(!r.stderr.includes(next) && !r.stderr.includes(t.password), "a password in the step's log");
        await (await login(t.db, next)).end();
        assert.equal(await refused(t.db, t.password), "28P01", "the old password is refused");
        assert.equal((await open.query("SELECT 1 AS one")).rows[0].one, 1, "a session opened with the old password stays");
        await open.end();
        const admin = await server.admin();
        const stored = (await admin.query("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [t.db.user])).rows[0].rolpassword as string;
        await admin.end();
        assert.match(stored, /^SCRAM-SHA-256\$4096:/, "the server got a verifier, never the password");
        // Killed after the change, before Pulumi recorded it: the same update again succeeds.
        const rerun = await step(t.db, { KONG_UPGRADE_ROLE_PASSWORD: next, PULUMI_COMMAND_STDOUT: created.stdout });
        ok(rerun);
        assert.match(rerun.stderr, /already accepts the new password/);
    });

    it("neither the old nor the new password accepted: says what to do, changes nothing", async () => {
        const t = await server.kongDatabase("pw-neither");
        const r = await step(t.db, { KONG_UPGRADE_ROLE_PASSWORD: "new-one", PULUMI_COMMAND_STDOUT: JSON.stringify({ password: "not-the-old-one" }) });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /accepts neither the previous nor the new password of role .*ALTER ROLE/);
        await (await login(t.db, t.password)).end();
    });

    it("first run against a server that has another password: refused with the setting to fix; no server yet is fine when if-running", async () => {
        const t = await server.kongDatabase("pw-create");
        const wrong = await step(t.db, { KONG_UPGRADE_ROLE_PASSWORD: "not-it" }, { verifyOnCreate: "always", hint: "database.adminPassword" });
        assert.notEqual(wrong.code, 0);
        assert.match(wrong.stderr, /exists with another password than the one configured \(database\.adminPassword\)/);
        const nothing = await step({ ...t.db, port: 1 }, { KONG_UPGRADE_ROLE_PASSWORD: "first" }, { verifyOnCreate: "if-running" });
        ok(nothing);
        assert.equal(nothing.result?.password, "first");
    });
});
