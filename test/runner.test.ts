// The step runner (steps/runner.ts, steps/run-step.sh): a step run through it must be the step
// run directly — same output, status, environment, working folder, database effect — and it must
// not add a way to lose a step's secrets or leave a step running without its Command.
import { strict as assert } from "assert";
import { ChildProcess, spawn } from "child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync, chmodSync } from "fs";
import * as net from "net";
import * as path from "path";
import { after, before, describe, it } from "node:test";
import { ensureStepPrograms } from "../components/stepbuild";
import { LineFramer, REQUEST_MAGIC, START_TIME_ENV, parseRequest, readInfo } from "../steps/runner";
import { TestServer, startPostgres } from "./helpers/postgres";
import { ROOT, STANDIN, kongRun, runStep } from "./helpers/steps";
import { spawnSync } from "child_process";
import { catalogFingerprint, catalogFromStatus } from "../steps/lib/migrationstate";
import { CATALOG_ENV } from "../steps/lib/spec";
import { StepSpec } from "../steps/lib/spec";
import { Client } from "pg";
import * as db from "../steps/lib/db";
import { SchemaMetaReads } from "../steps/migrations";

describe("the runner's request and frames", () => {
    const req = (env: string[], head = `${REQUEST_MAGIC}\nmigrations\n/work\n`) => Buffer.concat([Buffer.from(head), ...env.map((e) => Buffer.from(`${e}\0`)), Buffer.from("\0")]);
    const cases: Array<{ name: string; buf: Buffer; want: ReturnType<typeof parseRequest> | "throws" }> = [
        { name: "whole", buf: req(["A=1", "B=x=y"]), want: { step: "migrations", cwd: "/work", env: { A: "1", B: "x=y" } } },
        { name: "a value over several lines, quotes and $", buf: req(["SPEC={\n  \"a\": '$x'\n}"]), want: { step: "migrations", cwd: "/work", env: { SPEC: "{\n  \"a\": '$x'\n}" } } },
        { name: "an empty value", buf: req(["E="]), want: { step: "migrations", cwd: "/work", env: { E: "" } } },
        { name: "lines not all there yet", buf: Buffer.from(`${REQUEST_MAGIC}\nmigrations\n`), want: undefined },
        { name: "environment not ended yet", buf: req(["A=1"]).subarray(0, -1), want: undefined },
        { name: "not a request", buf: req([], "GET / HTTP/1.1\nHost: x\n\n\n"), want: "throws" },
        { name: "an entry without a name", buf: req(["=1"]), want: "throws" },
    ];
    for (const c of cases) {
        it(c.name, () => {
            if (c.want === "throws") assert.throws(() => parseRequest(c.buf));
            else assert.deepEqual(parseRequest(c.buf), c.want);
        });
    }
    it("the client passes a new runner exactly the start-time settings the runner compares", () => {
        const script = readFileSync(path.join(ROOT, "steps", "run-step.sh"), "utf8");
        const listed = /for __kus_var in KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS ([A-Z_ ]+); do/.exec(script)?.[1].trim().split(/\s+/);
        assert.deepEqual(listed, START_TIME_ENV);
    });
    it("frames whole lines as they complete, the rest at the end", () => {
        const frames: string[] = [];
        const f = new LineFramer("2", (x) => frames.push(x));
        f.push("[t] one\n[t] tw");
        f.push("o\n");
        f.push("no newline");
        assert.deepEqual(frames, ["2[t] one\n", "2[t] two\n"]);
        f.flush();
        assert.deepEqual(frames, ["2[t] one\n", "2[t] two\n", "2no newline\n"]);
    });
});

/** A private copy of the built step programs: its own runner, not the one other tests may start. */
function privateBuild(): string {
    ensureStepPrograms();
    // Under the project, so the copy finds node_modules (pg) as the build does.
    const dir = mkdtempSync(path.join(ROOT, "build", "runner-test-"));
    // Without a runner's files: those name the build's own runner.
    cpSync(realpathSync(path.join(ROOT, "build", "step-programs")), dir, { recursive: true, filter: (f) => !/runner\.(info|log)$/.test(f) });
    return dir;
}

const client = (dir: string, step: string) => ["/bin/sh", "-c", `exec env -u BASH_ENV -u POSIXLY_CORRECT bash ${path.join(dir, "steps", "run-step.sh")} ${step}`];
const direct = (dir: string, step: string) => [process.execPath, path.join(dir, "steps", "main.js"), step];
const info = (dir: string) => path.join(dir, "steps", "runner.info");
const runnerLog = (dir: string) => { try { return readFileSync(path.join(dir, "steps", "runner.log"), "utf8"); } catch { return ""; } };
const runnerPid = (dir: string) => readInfo(info(dir))?.pid;
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

async function until(what: string | (() => string), cond: () => boolean, ms = 15_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > end) throw new Error(`not within ${ms} ms: ${typeof what === "string" ? what : what()}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

/** Starts the runner the way a step does (its first step runs directly), and waits until it answers. */
async function warm(dir: string, env: Record<string, string> = {}, workersReady = true): Promise<number> {
    const r = await runStep(NOOP, { password: "", argv: client(dir, "stop"), env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /started the step runner for the steps after this one/);
    await until("runner.info written", () => existsSync(info(dir)));
    const pid = runnerPid(dir)!;
    // Its spares loaded: the first step through it then takes one at once.
    if (workersReady) await until("two workers ready", () => (runnerLog(dir).match(/worker \d+ ready/g) ?? []).length >= 2, 30_000);
    return pid;
}

async function stopRunner(dir: string): Promise<void> {
    const pid = runnerPid(dir);
    if (pid && alive(pid)) {
        process.kill(pid, "SIGTERM");
        await until("runner gone", () => !alive(pid), 10_000);
    }
    rmSync(dir, { recursive: true, force: true });
}

/** A `kong` for the steps that writes what it was given to `out` (cwd, a test value), then does `then`. */
function fakeKong(dir: string, name: string, then: string): { command: string; out: string } {
    const command = path.join(dir, `${name}-kong`);
    const out = path.join(dir, `${name}-kong.out`);
    writeFileSync(command, `#!/bin/sh\n{ pwd; printf '%s' "$KONG_UPGRADE_TEST_VALUE"; } > '${out}'\n${then}\n`);
    chmodSync(command, 0o755);
    return { command, out };
}

/** A step that does nothing: a stop of a cluster of no node (no docker, no database). */
const NOOP: StepSpec = { step: "stop", cluster: { stack: "", version: "", nodes: [] }, drainSeconds: 0 };

const bootstrapSpec = (): StepSpec => ({
    step: "bootstrap", db: { host: "127.0.0.1", port: 1, database: "kong", user: "kong", sslmode: "disable" },
    kong: kongRun({ host: "127.0.0.1", port: 1, database: "kong", user: "kong", sslmode: "disable" }, "3.4.3"),
});

describe("a step through the runner is the step run directly", () => {
    let server: TestServer;
    let dir: string;
    before(async () => {
        server = await startPostgres();
        dir = privateBuild();
        await warm(dir);
    });
    after(async () => {
        await stopRunner(dir);
        await server?.stop();
    });

    it("migrates a real database the same way, with its spec over several lines and its password", async () => {
        const ways = { runner: (s: string) => client(dir, s), direct: (s: string) => direct(dir, s) };
        const seen: Record<string, unknown[]> = {};
        for (const [way, argv] of Object.entries(ways)) {
            const t = await server.kongDatabase(`runner-${way}`);
            const run = (spec: StepSpec) => runStep(spec, { ...t, argv: argv(spec.step), specText: (s) => JSON.stringify(s, null, 2) });
            const steps: StepSpec[] = [
                { step: "bootstrap", db: t.db, kong: kongRun(t.db, "3.4.3") },
                { step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0") },
                { step: "migrations", phase: "finish", db: t.db, kong: kongRun(t.db, "3.5.0") },
            ];
            seen[way] = [];
            for (const spec of steps) {
                const r = await run(spec);
                assert.equal(r.code, 0, `${way} ${spec.step}: ${r.stderr}`);
                const { seconds: _s, startedAt: _a, stateSeconds: _t, listSeconds: _l, kongSeconds: _k, containerSeconds: _c, ...what } = r.result!;
                seen[way].push(what);
                assert.doesNotMatch(r.stdout + r.stderr, new RegExp(t.password));
            }
            // The same step with a password that is wrong: the same failure, word for word.
            const bad = await runStep(steps[1], { password: "wrong-password", argv: argv("migrations") });
            assert.equal(bad.code, 1);
            seen[way].push(bad.stderr.split("\n").filter((l) => l.startsWith("error:")).join("\n").replace(/kong_runner_\w+/g, "<db>"));
        }
        assert.deepEqual(seen.runner, seen.direct);
        assert.match(runnerLog(dir), /step migrations in worker \d+: exit 0/);
        assert.match(runnerLog(dir), /step migrations in worker \d+: exit 1/);
        assert.doesNotMatch(runnerLog(dir), /pw-kong_runner/, "no password in the runner's log");
    });

    it("after a migration step the next worker connects ahead, and a step other than migrations or verify meets no session of ours", async () => {
        const t = await server.kongDatabase("runner-prepared");
        const kong = (version: string, args: string[]) => spawnSync(STANDIN, args, {
            env: { ...process.env, KONG_VERSION: version, KONG_PLUGINS: "bundled", KONG_PG_HOST: t.db.host, KONG_PG_PORT: String(t.db.port),
                KONG_PG_USER: t.db.user, KONG_PG_PASSWORD: t.password, KONG_PG_DATABASE: t.db.database },
            encoding: "utf8",
        });
        assert.equal(kong("3.4.3", ["migrations", "bootstrap"]).status, 0);
        const status = kong("3.5.0", ["migrations", "status"]);
        const subsystems = catalogFromStatus(JSON.parse(status.stdout.split("\n").find((l) => l.startsWith("{"))!) as Record<string, unknown>);
        const catalogs = JSON.stringify({ catalogs: [{ version: "3.5.0", fingerprint: catalogFingerprint(kongRun(t.db, "3.5.0")), subsystems }] });
        const ours = async () => {
            const admin = await server.admin();
            try {
                return (await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'kong-upgrade'", [t.db.database])).rows[0].n as number;
            } finally {
                await admin.end();
            }
        };
        const up = await runStep({ step: "migrations", phase: "up", db: t.db, kong: kongRun(t.db, "3.5.0") },
            { ...t, argv: client(dir, "migrations"), env: { [CATALOG_ENV]: catalogs } });
        assert.equal(up.code, 0, up.stderr);
        let seen = 0;
        for (let i = 0; i < 40 && seen === 0; i++) { seen = await ours(); await new Promise((r) => setTimeout(r, 50)); }
        assert.equal(seen, 1, "one connection prepared for the next step");
        // A step that is not a migration step: the prepared connection is closed before it runs.
        // (bootstrap, whose `kong` here waits: the sessions are looked at while it runs.)
        const waiting = fakeKong(dir, "waiting", "sleep 3; exit 3");
        const other = runStep(bootstrapSpec(), { password: "unused", argv: client(dir, "bootstrap"), env: { KONG_UPGRADE_KONG_COMMAND: waiting.command } });
        await until("the other step running", () => existsSync(waiting.out));
        assert.equal(await ours(), 0, "no session of ours on the database while another step runs");
        await other;
    });

    it("gives the step its environment and working folder exactly", async () => {
        const kong = fakeKong(dir, "env", "exit 3");
        const value = "a=b\nsecond line 'single' \"double\" $HOME `x` \\ \t end";
        const r = await runStep(bootstrapSpec(), { password: "", argv: client(dir, "bootstrap"), env: { KONG_UPGRADE_KONG_COMMAND: kong.command, KONG_UPGRADE_TEST_VALUE: value } });
        assert.equal(r.code, 1, r.stderr); // the fake kong says "needs bootstrap", then fails the bootstrap itself
        const [cwd, ...rest] = readFileSync(kong.out, "utf8").split("\n");
        assert.equal(cwd, ROOT);
        assert.equal(rest.join("\n"), value);
    });

    it("a kill point in its worker ends the step as a killed program: status 137, nothing more", async () => {
        const t = await server.kongDatabase("runner-kill");
        // verify of a cluster of no node: its first SQL statement (the entity counts) is the kill point.
        const r = await runStep({ step: "verify", db: t.db, kong: kongRun(t.db, "3.4.3"), cluster: { stack: "", version: "3.4.3", nodes: [] }, timeoutSeconds: 30 },
            { ...t, argv: client(dir, "verify"), env: { KONG_UPGRADE_CRASH_AFTER: "1" } });
        assert.equal(r.code, 137, r.stderr);
        assert.equal(r.result, undefined);
    });

    it("a client that goes away takes its step with it", async () => {
        const kong = fakeKong(dir, "sleeping", "exec sleep 60");
        const logged = runnerLog(dir).length;
        const child: ChildProcess = spawn(client(dir, "bootstrap")[0], client(dir, "bootstrap").slice(1), {
            cwd: ROOT, env: { ...process.env, KONG_UPGRADE_SPEC: JSON.stringify(bootstrapSpec()), KONG_PG_PASSWORD: "unused", KONG_UPGRADE_KONG_COMMAND: kong.command }, stdio: "ignore",
        });
        let worker = 0;
        await until("the step started in a worker", () => {
            const m = /step bootstrap in worker (\d+) starts/.exec(runnerLog(dir).slice(logged));
            worker = m ? Number(m[1]) : 0;
            return worker > 0 && existsSync(kong.out);
        });
        child.kill("SIGKILL");
        await until("the worker gone with its client", () => !alive(worker), 5000);
        await until(() => `logged:\n${runnerLog(dir)}`, () => new RegExp(`worker ${worker}: exit 137 .*its client went away`).test(runnerLog(dir)), 5000);
    });

    it("whoever connects learns nothing, and whoever holds a gone runner's port learns only a hello no runner answers", async () => {
        const real = readInfo(info(dir))!;
        // A connection to the live runner that does not say its hello: nothing comes back.
        const heard = await new Promise<string>((resolve) => {
            const s = net.connect(real.port, "127.0.0.1", () => s.write("hello?\n"));
            let got = "";
            s.on("data", (d) => { got += d.toString(); });
            s.on("close", () => resolve(got));
            s.on("error", () => undefined);
        });
        assert.equal(heard, "");
        // The port held by someone else, runner.info left behind (a runner killed with -9, a reboot).
        const received: Buffer[] = [];
        const impostor = net.createServer((s) => {
            s.on("data", (d) => received.push(d));
            s.write(`${"0".repeat(48)}\n`);
        });
        await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", () => r()));
        const saved = readFileSync(info(dir), "utf8");
        try {
            writeFileSync(info(dir), `${(impostor.address() as net.AddressInfo).port} ${real.hello} ${real.proof} ${real.pid}\n`);
            const r = await runStep(NOOP, { password: "secret-never-sent", argv: client(dir, "stop") });
            assert.equal(r.code, 0, r.stderr);
            assert.ok(r.result, "the step ran directly");
            assert.equal(Buffer.concat(received).toString(), `${real.hello}\n`, "the impostor got the hello alone: no step, no environment");
        } finally {
            writeFileSync(info(dir), saved);
            impostor.close();
        }
    });
});

describe("the runner's life", () => {
    it("KONG_UPGRADE_STEP_RUNNER=off runs the step directly and starts none", async () => {
        const dir = privateBuild();
        try {
            const r = await runStep(NOOP, { password: "", argv: client(dir, "stop"), env: { KONG_UPGRADE_STEP_RUNNER: "off" } });
            assert.equal(r.code, 0, r.stderr);
            await new Promise((r) => setTimeout(r, 1000));
            assert.equal(existsSync(info(dir)), false);
        } finally {
            await stopRunner(dir);
        }
    });

    it("leaves when idle, and holds none of the environment of the step that started it", async () => {
        const dir = privateBuild();
        try {
            const pid = await warm(dir, { KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS: "3", KONG_PG_PASSWORD: "pw-of-the-first-step" });
            const environ = readFileSync(`/proc/${pid}/environ`, "utf8");
            assert.doesNotMatch(environ, /pw-of-the-first-step/);
            await until("the idle runner gone", () => !alive(pid), 15_000);
            assert.equal(existsSync(info(dir)), false, "runner.info removed");
            assert.match(runnerLog(dir), /exits: idle/);
        } finally {
            await stopRunner(dir);
        }
    });

    it("a step that no worker takes in time runs directly, and nothing of it runs twice", async () => {
        const dir = privateBuild();
        try {
            // Workers that never get ready: one module a worker loads (and this step does not) blocks.
            writeFileSync(path.join(dir, "steps", "canary.js"), "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);\n");
            const kong = fakeKong(dir, "counted", "echo ran >> '" + path.join(dir, "runs") + "'; exit 3");
            await warm(dir, {}, false);
            const t = Date.now();
            const r = await runStep(bootstrapSpec(), { password: "unused", argv: client(dir, "bootstrap"), env: { KONG_UPGRADE_KONG_COMMAND: kong.command } });
            const seconds = (Date.now() - t) / 1000;
            assert.equal(r.code, 1); // the fake kong fails the bootstrap: what matters is who ran it, and how often
            assert.match(r.stderr, /kong migrations bootstrap failed/);
            assert.ok(seconds >= 4.5 && seconds < 30, `waited ${seconds}s for a worker, then ran directly`);
            assert.doesNotMatch(runnerLog(dir), /step bootstrap in worker/);
            // `list` (needs bootstrap), then bootstrap: once each, by the direct run alone.
            assert.equal(readFileSync(path.join(dir, "runs"), "utf8"), "ran\nran\n");
        } finally {
            await stopRunner(dir);
        }
    });

    it("a runner.info whose runner is gone: the step runs directly and starts another, whatever the user's bash settings", async () => {
        const dir = privateBuild();
        try {
            // A port nothing listens on, and a user's BASH_ENV that prints, and POSIX mode (where a
            // failed connection would end the script): the Command's line keeps both away.
            const closed = await new Promise<number>((resolve) => {
                const srv = net.createServer().listen(0, "127.0.0.1", () => {
                    const port = (srv.address() as net.AddressInfo).port;
                    srv.close(() => resolve(port));
                });
            });
            writeFileSync(info(dir), `${closed} ${"1".repeat(48)} ${"2".repeat(48)} 999999\n`);
            const rc = path.join(dir, "bashrc");
            writeFileSync(rc, "echo from-the-users-BASH_ENV\n");
            const r = await runStep(NOOP,
                { password: "", argv: client(dir, "stop"), env: { BASH_ENV: rc, POSIXLY_CORRECT: "1" } });
            assert.equal(r.code, 0, r.stderr);
            assert.ok(r.result, "the step ran directly");
            assert.doesNotMatch(r.stdout, /from-the-users-BASH_ENV/);
            assert.match(r.stderr, /started the step runner/);
            await until("a new runner", () => (runnerPid(dir) ?? 999999) !== 999999);
        } finally {
            await stopRunner(dir);
        }
    });

    it("two runners started at once: one stays, and it answers", async () => {
        const dir = privateBuild();
        try {
            // The runner itself, as its launcher starts it (`serve`), twice at once.
            const start = () => spawn(process.execPath, [path.join(dir, "steps", "runner.js"), "serve"], { stdio: "ignore", env: { PATH: process.env.PATH ?? "" } });
            const a = start();
            const b = start();
            const gone = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null;
            await until("one of the two left", () => gone(a) || gone(b), 15_000);
            await new Promise((r) => setTimeout(r, 1500));
            assert.notEqual(gone(a), gone(b), "exactly one stays");
            const stayed = gone(a) ? b : a;
            assert.equal(runnerPid(dir), stayed.pid);
            const r = await runStep(NOOP, { password: "", argv: client(dir, "stop") });
            assert.equal(r.code, 0, r.stderr);
            assert.doesNotMatch(r.stderr, /started the step runner/);
        } finally {
            await stopRunner(dir);
        }
    });
});

describe("connections kept between reads and between steps", () => {
    let server: TestServer;
    before(async () => { server = await startPostgres(); });
    after(async () => { await server?.stop(); });

    const pidOf = async (c: { query: (q: string) => Promise<{ rows: Array<{ pid: number }> }> }) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    const terminate = async (pid: number) => {
        const admin = await server.admin();
        try { await admin.query("SELECT pg_terminate_backend($1)", [pid]); } finally { await admin.end(); }
    };

    it("a step takes the connection prepared for it only when it is to the same database, role and password, and answers", async () => {
        const t = await server.kongDatabase("prepared");
        const other = await server.kongDatabase("prepared-other");
        const target = { db: t.db, password: t.password, database: t.db.database };
        /** The server process of the connection prepared now: the one of the role that appears. */
        const preparedPid = async () => {
            let pid: number | undefined;
            for (let i = 0; i < 100 && pid === undefined; i++) {
                const admin = await server.admin();
                const rows = (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE usename = $1 AND state = 'idle'", [t.db.user])).rows;
                await admin.end();
                pid = rows[0]?.pid;
                if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
            }
            return pid;
        };
        const cases: Array<{ name: string; connect: () => Promise<Client>; takes: boolean; kill?: boolean; fails?: RegExp }> = [
            { name: "same target", connect: () => db.connect(t.db, t.password), takes: true },
            { name: "another database", connect: () => db.connect(other.db, other.password), takes: false },
            { name: "the same database with another password", connect: () => db.connect(t.db, "not-the-password"), takes: false, fails: /password authentication failed/ },
            { name: "the server ended it meanwhile", connect: () => db.connect(t.db, t.password), takes: false, kill: true },
        ];
        for (const c of cases) {
            db.prepareConnection(target);
            const pid = await preparedPid();
            assert.ok(pid, `${c.name}: a connection was prepared`);
            if (c.kill) await terminate(pid);
            if (c.fails) {
                await assert.rejects(c.connect(), c.fails, c.name);
            } else {
                const got = await c.connect();
                try {
                    assert.equal((await pidOf(got)) === pid, c.takes, c.name);
                    assert.equal((await got.query("SELECT 1 AS one")).rows[0].one, 1, `${c.name}: the connection works`);
                } finally {
                    await got.end();
                }
            }
            // The next case starts with none prepared, and none of this one left.
            await db.dropPreparedConnection();
            const admin = await server.admin();
            await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [t.db.user]);
            await admin.end();
        }
    });

    it("the read after the command reads on a new connection when the one kept since the read before was ended", async () => {
        const t = await server.kongDatabase("held");
        const spec = { step: "migrations" as const, phase: "up" as const, db: t.db, kong: kongRun(t.db, "3.5.0") };
        const saved = process.env.KONG_PG_PASSWORD;
        process.env.KONG_PG_PASSWORD = t.password;
        const reads = new SchemaMetaReads(spec, 500);
        try {
            assert.equal(await reads.read(), undefined); // no schema_meta: needs bootstrap
            const admin = await server.admin();
            await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [t.db.user]);
            await admin.end();
            // Created by Kong's role on its database after the kill: the read after must see it.
            const c = await db.connect(t.db, t.password);
            await c.query("CREATE TABLE schema_meta (key text, subsystem text, last_executed text, executed text[], pending text[], PRIMARY KEY (key, subsystem))");
            await c.query("INSERT INTO schema_meta VALUES ('schema_meta', 'core', '000_base', '{000_base}', '{}')");
            await c.end();
            const rows = await reads.read();
            assert.deepEqual(rows?.map((r) => r.subsystem), ["core"]);
        } finally {
            reads.close();
            process.env.KONG_PG_PASSWORD = saved;
        }
    });
});
