// The step runner: keeps step programs warm so that a step inside the downtime window starts in
// milliseconds, not in Node's own start-up (about 0.1 s each, seven of them in a 3-hop window).
//
// `node build/step-programs/steps/runner.js` (started in the background by run-step.sh the first
// time a step finds none) listens on 127.0.0.1 and keeps spare workers: Node processes that have
// loaded every step module and wait. run-step.sh, the command line of every step Command, hands
// its step, working folder and whole environment to the runner; a spare worker takes that one
// step, runs it exactly as `node steps/main.js <step>` would (steps/main.ts runStepProgram), and
// exits. Its stdout and stderr come back line by line, then its exit status.
//
// What stays as it was without the runner:
// - One process per step, and a step's process ends with it: module state, environment and
//   working folder are the step's own. A client that goes away (Pulumi cancelled, the Command
//   killed) takes its worker with it (SIGKILL, as a killed step program), so no step outlives its
//   Command and a rerun never runs beside the step it replaces.
// - Secrets: the environment travels over a loopback connection to this runner only. The client
//   says hello with a value from runner.info (mode 0600, in the build folder, 0700), the runner
//   answers with another, and only then is the environment sent; nothing of it is logged.
// - Nothing depends on it: a client that finds no runner, or one that does not prove itself in
//   2 s, runs the step directly (run-step.sh). KONG_UPGRADE_STEP_RUNNER=off runs every step directly.
//
// The runner exits after RUNNER_IDLE_MS without a step, or when its build folder is gone.
import { ChildProcess, fork, spawn } from "child_process";
import { randomBytes, timingSafeEqual, webcrypto } from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as path from "path";
import { flushCrashCount } from "./lib/crash";
import type { ConnectTarget } from "./lib/db";
import { markRunByRunner } from "./lib/launch";

/** Files of the runner, in the build's steps/ folder (private: the build folder is 0700). */
export const RUNNER_FILES = { info: "runner.info", log: "runner.log" } as const;
/** Without a step for this long (none running), the runner exits; KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS sets another. */
export const RUNNER_IDLE_MS = 15 * 60_000;
/** Workers kept loaded and waiting: two, so that parallel steps (nodes' status) rarely wait for one. */
const SPARES = 2;
/** The request a client sends after the runner's proof: this line, the step, its cwd, then the environment. */
export const REQUEST_MAGIC = "kong-upgrade-step 1";
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;
/** A step waits this long for a worker (all busy, or still loading); then its client runs it directly. */
const WORKER_WAIT_MS = 5000;

/**
 * Settings Node reads only when it starts. A worker has the runner's (those of the step that
 * started it); a step whose own differ is run directly, where Node reads them.
 */
export const START_TIME_ENV = ["NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "NODE_ICU_DATA", "NODE_PATH", "UV_THREADPOOL_SIZE", "OPENSSL_CONF", "SSL_CERT_FILE", "SSL_CERT_DIR"];

/** The start-time settings in which `env` differs from `mine` (a worker's). */
export function startTimeDifferences(env: Record<string, string | undefined>, mine: Record<string, string | undefined>): string[] {
    return START_TIME_ENV.filter((k) => (env[k] || undefined) !== (mine[k] || undefined));
}

/** Messages between the runner and a worker (IPC). */
export type ToWorker = { job: { step: string; cwd: string; env: Record<string, string> } } | { prepare: ConnectTarget; cwd: string };
export type FromWorker = { ready: true } | { started: true } | { out: 1 | 2; data: string } | { exit: number; connected?: ConnectTarget };

export interface Request { step: string; cwd: string; env: Record<string, string> }

/**
 * Parses a client's request: three lines, then NUL-terminated NAME=value entries, then an empty
 * entry. Undefined while incomplete; throws when it is not a request.
 */
export function parseRequest(buf: Buffer): Request | undefined {
    let at = 0;
    const lines: string[] = [];
    while (lines.length < 3) {
        const nl = buf.indexOf(0x0a, at);
        if (nl < 0) return undefined;
        lines.push(buf.subarray(at, nl).toString("utf8"));
        at = nl + 1;
    }
    if (lines[0] !== REQUEST_MAGIC) throw new Error("not a step request");
    const env: Record<string, string> = {};
    for (;;) {
        const nul = buf.indexOf(0, at);
        if (nul < 0) return undefined;
        const entry = buf.subarray(at, nul).toString("utf8");
        at = nul + 1;
        if (entry === "") break;
        const eq = entry.indexOf("=");
        if (eq <= 0) throw new Error("malformed environment entry");
        env[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
    return { step: lines[1], cwd: lines[2], env };
}

/** Splits a stream's text into complete lines for the client's frames; keeps the rest. */
export class LineFramer {
    private rest = "";
    constructor(private readonly tag: string, private readonly write: (frame: string) => void) {}
    push(data: string): void {
        const text = this.rest + data;
        const lines = text.split("\n");
        this.rest = lines.pop() ?? "";
        for (const l of lines) this.write(`${this.tag}${l}\n`);
    }
    flush(): void {
        if (this.rest !== "") this.write(`${this.tag}${this.rest}\n`);
        this.rest = "";
    }
}

const equal = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

function log(dir: string, line: string): void {
    try {
        fs.appendFileSync(path.join(dir, RUNNER_FILES.log), `[${new Date().toISOString()}] runner ${process.pid}: ${line}\n`, { mode: 0o600 });
    } catch { /* the log is a convenience */ }
}

/** runner.info: `<port> <hello> <proof> <pid>`. */
export function readInfo(file: string): { port: number; hello: string; proof: string; pid: number } | undefined {
    try {
        const [port, hello, proof, pid] = fs.readFileSync(file, "utf8").trim().split(" ");
        return hello && proof ? { port: Number(port), hello, proof, pid: Number(pid) } : undefined;
    } catch {
        return undefined;
    }
}

/** Whether a runner answers at the port runner.info names, as that file says it will (1 s at most). */
function runnerAnswers(infoFile: string): Promise<boolean> {
    const info = readInfo(infoFile);
    if (!info) return Promise.resolve(false);
    return new Promise((resolve) => {
        const s = net.connect(info.port, "127.0.0.1", () => s.write(`${info.hello}\n`));
        const done = (ok: boolean) => { s.destroy(); resolve(ok); };
        s.setTimeout(1000, () => done(false));
        s.on("error", () => done(false));
        s.on("data", (d) => done(d.toString().split("\n")[0] === info.proof));
        s.on("end", () => done(false));
    });
}

/** Kills a worker and everything it started (its own process group). */
function killGroup(w: ChildProcess): void {
    try {
        if (w.pid) process.kill(-w.pid, "SIGKILL");
    } catch {
        w.kill("SIGKILL");
    }
}

async function serve(dir: string): Promise<void> {
    const logFd = fs.openSync(path.join(dir, RUNNER_FILES.log), "a", 0o600);
    const infoFile = path.join(dir, RUNNER_FILES.info);
    const idleMs = Number(process.env.KONG_UPGRADE_STEP_RUNNER_IDLE_SECONDS ?? 0) * 1000 || RUNNER_IDLE_MS;
    // One runner per build: a second one started meanwhile (two steps found none at once) leaves.
    if (await runnerAnswers(infoFile)) return;
    // The client says hello (which only the owner of runner.info knows); only then does the runner
    // show its proof, and only then does the client send its environment. Whoever else connects
    // learns nothing; whoever holds the port after this runner is gone (runner.info left behind)
    // learns a hello that no runner answers any more, and the client runs its step directly.
    const hello = randomBytes(24).toString("hex");
    const proof = randomBytes(24).toString("hex");
    const mainJs = path.join(dir, "main.js");
    const spares: ChildProcess[] = [];
    const waiting: Array<(w: ChildProcess | undefined) => void> = [];
    const all = new Set<ChildProcess>();
    /** Workers given a step: they end with it. */
    const working = new Set<ChildProcess>();
    let busy = 0;
    let starting = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    let closing = false;

    const shutdown = (why: string) => {
        if (closing) return;
        closing = true;
        log(dir, `exits: ${why}`);
        // Every worker not running a step (spares, and those still loading) goes now.
        spares.splice(0);
        for (const w of all) if (!working.has(w)) killGroup(w);
        for (const waiter of waiting.splice(0)) waiter(undefined);
        server.close();
        if (ours()) fs.rmSync(infoFile, { force: true });
        leaveWhenDone();
    };
    // Workers running a step finish it first: they belong to their clients, and a worker whose
    // runner is gone kills itself.
    const leaveWhenDone = () => { if (closing && busy === 0) setTimeout(() => { if (busy === 0) process.exit(0); }, 50); };
    const idle = () => {
        if (idleTimer) clearTimeout(idleTimer);
        idleTimer = busy === 0 ? setTimeout(() => shutdown("idle"), idleMs) : undefined;
    };

    /** runner.info is this runner's (not a newer one's, not removed with its build). */
    const ours = () => { try { return fs.readFileSync(infoFile, "utf8").includes(proof); } catch { return false; } };

    const spawnSpare = () => {
        if (closing) return;
        let w: ChildProcess;
        try {
            // Each in a process group of its own: a step that goes (its client gone) takes what it
            // started with it. What a worker writes past its step's relay goes to runner.log.
            w = fork(__filename, ["worker"], { cwd: dir, stdio: ["ignore", "ignore", logFd, "ipc"], serialization: "json", detached: true });
        } catch (e) {
            shutdown(`cannot start a worker: ${(e as Error).message}`);
            return;
        }
        all.add(w);
        starting += 1;
        let ready = false;
        // A worker that cannot be started or written to ends in "exit"; the error itself must not end the runner.
        w.on("error", (e) => log(dir, `worker ${w.pid ?? "(not started)"}: ${e.message}`));
        w.on("exit", () => {
            all.delete(w);
            if (!ready) starting -= 1;
            const i = spares.indexOf(w);
            if (i >= 0) spares.splice(i, 1);
            // A worker that died before any step: the build is gone or broken. Its steps run directly.
            if (!ready || i >= 0) shutdown("a worker exited before it was given a step");
        });
        w.once("message", (m: FromWorker) => {
            if (!("ready" in m)) return;
            ready = true;
            starting -= 1;
            log(dir, `worker ${w.pid} ready`);
            if (pendingPrepare) {
                w.send(pendingPrepare);
                pendingPrepare = undefined;
            }
            const next = waiting.shift();
            if (next) next(w); else spares.push(w);
        });
    };

    /** The spare next in line prepares the connection; with none ready yet, the first that gets ready. */
    let pendingPrepare: ToWorker | undefined;
    const prepareNext = (m: ToWorker) => {
        if (spares[0]) spares[0].send(m);
        else pendingPrepare = m;
    };
    /** A step was given out (or told to run directly): a connection prepared later would be for nobody. */
    const forgetPrepare = () => { pendingPrepare = undefined; };

    /** Spares back to SPARES (and one per waiting step). Forking blocks this process ~10 ms: after a job is handed over. */
    const replenish = () => {
        while (spares.length + starting < SPARES + waiting.length && !closing) spawnSpare();
    };
    /** A spare for a step; undefined when none is ready within WORKER_WAIT_MS or the runner is leaving. */
    const take = () => new Promise<ChildProcess | undefined>((resolve) => {
        if (closing) return resolve(undefined);
        const w = spares.shift();
        if (w) return resolve(w);
        const waiter = (x: ChildProcess | undefined) => { clearTimeout(timer); resolve(x); };
        const timer = setTimeout(() => {
            waiting.splice(waiting.indexOf(waiter), 1);
            resolve(undefined);
        }, WORKER_WAIT_MS);
        waiting.push(waiter);
        replenish();
    });

    const handle = (socket: net.Socket) => {
        socket.setNoDelay(true);
        socket.on("error", () => undefined);
        let buf = Buffer.alloc(0);
        let greeted = false;
        let dispatched = false;
        const timer = setTimeout(() => socket.destroy(), 10_000);
        // From the hello on, the runner does not leave before this client has its answer.
        let counted = false;
        const release = () => {
            if (!counted) return;
            counted = false;
            busy -= 1;
            idle();
            leaveWhenDone();
        };
        socket.on("close", () => { if (!dispatched) release(); });
        const onData = (d: Buffer) => {
            buf = Buffer.concat([buf, d]);
            let req: Request | undefined;
            try {
                if (!greeted) {
                    // Before its hello a client has sent 49 bytes: anything longer is not one.
                    if (buf.length > 256) throw new Error("not a client of this runner");
                    const nl = buf.indexOf(0x0a);
                    if (nl < 0) return;
                    if (!equal(buf.subarray(0, nl).toString("utf8"), hello)) throw new Error("not a client of this runner");
                    greeted = true;
                    counted = true;
                    busy += 1;
                    idle();
                    buf = buf.subarray(nl + 1);
                    socket.write(`${proof}\n`);
                }
                if (buf.length > MAX_REQUEST_BYTES) throw new Error("request too large");
                // A whole request ends with the empty entry's NUL.
                req = buf.length > 0 && buf[buf.length - 1] === 0 ? parseRequest(buf) : undefined;
                // Not all there yet: answer at once, so that the client's system sends the rest now.
                // Bash writes a request in several writes; Nagle's algorithm holds each small one
                // until the last is acknowledged, and a receiver that sends nothing acknowledges
                // only after its delayed-ACK timer (40 ms on Linux): 40 ms per step, measured.
                if (!req) socket.write("a\n");
            } catch {
                socket.destroy();
                return;
            }
            if (!req) return;
            socket.off("data", onData);
            clearTimeout(timer);
            dispatched = true;
            void runJob(socket, req, release);
        };
        socket.on("data", onData);
    };

    const runJob = async (socket: net.Socket, req: Request, release: () => void) => {
        const differ = startTimeDifferences(req.env, process.env);
        if (differ.length > 0) {
            log(dir, `step ${req.step}: run directly (its ${differ.join(", ")} differ from the workers')`);
            socket.end("d\n");
            release();
            return;
        }
        const w = await take();
        forgetPrepare();
        if (!w || socket.destroyed) {
            // No worker (none ready in time, or the runner is leaving): nothing of the step ran,
            // so its client runs it directly. A client that left meanwhile: the worker stays a spare.
            if (w) spares.unshift(w);
            else socket.end("d\n");
            release();
            return;
        }
        working.add(w);
        const out = new LineFramer("1", (f) => socket.write(f));
        const err = new LineFramer("2", (f) => socket.write(f));
        let started = false;
        let status: number | undefined;
        let clientGone = false;
        socket.on("close", () => {
            // The client is gone before its step ended (its Command killed or cancelled): so is its
            // step, with what it started, as a killed step program.
            if (status !== undefined) return;
            clientGone = true;
            killGroup(w);
        });
        const end = (code: number) => {
            if (status !== undefined) return;
            status = code;
            if (clientGone) return;
            out.flush();
            err.flush();
            socket.end(`x${code}\n`);
        };
        // The worker's status ends the step at once: everything it printed came before it (IPC
        // keeps order), and the worker has nothing left but to exit.
        w.on("message", (m: FromWorker) => {
            if ("started" in m) {
                started = true;
                socket.write("s\n");
            } else if ("out" in m) (m.out === 1 ? out : err).push(m.data);
            else if ("exit" in m) {
                end(m.exit);
                // After a migration step the next step starts where it did (the next migration
                // step's gate read, or verify's): the next spare connects there while that step is
                // being started. Only then: a step that needs the database to itself (a snapshot's
                // template copy, a restore's rename) must never meet a session of ours.
                if (m.connected && req.step === "migrations") prepareNext({ prepare: m.connected, cwd: req.cwd });
            }
        });
        const t = Date.now();
        log(dir, `step ${req.step} in worker ${w.pid} starts`);
        w.once("exit", (code, signal) => {
            working.delete(w);
            release();
            if (!started && !clientGone && status === undefined) {
                // Died before its step began (nothing of it ran): the client runs it directly.
                status = -1;
                socket.end("d\n");
            }
            // Killed (a crash test's kill point, the OOM killer) or crashed: what a shell reports.
            end(signal ? 128 + (({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSEGV: 11, SIGABRT: 6 } as Record<string, number>)[signal] ?? 1) : code ?? 1);
            log(dir, `step ${req.step} in worker ${w.pid}: ${status === -1 ? "not started, run directly" : `exit ${status}`} after ${((Date.now() - t) / 1000).toFixed(2)}s${clientGone ? " (its client went away)" : ""}`);
        });
        w.send({ job: { step: req.step, cwd: req.cwd, env: req.env } } satisfies ToWorker);
        setImmediate(replenish);
    };

    const server = net.createServer(handle);
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    const tmp = `${infoFile}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${port} ${hello} ${proof} ${process.pid}\n`, { mode: 0o600 });
    fs.renameSync(tmp, infoFile);
    log(dir, `listens on 127.0.0.1:${port}`);
    for (let i = 0; i < SPARES; i++) spawnSpare();
    idle();
    // Two runners started at once: the one whose runner.info was replaced leaves. The build folder
    // removed (a newer build, ten minutes on): nothing here can start any more.
    setTimeout(() => { if (!ours()) shutdown("another runner took this build"); }, 1000).unref();
    setInterval(() => { if (!fs.existsSync(mainJs) || !ours()) shutdown("its build or its runner.info is gone"); }, 30_000).unref();
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    // A fault of the runner's own must not end it: its end would end every step running in its
    // workers (each kills itself when its runner is gone). It is logged; new steps still start.
    process.on("uncaughtException", (e) => log(dir, `error: ${e.stack ?? e.message}`));
    process.on("unhandledRejection", (e) => log(dir, `error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`));
    process.on("SIGINT", () => shutdown("SIGINT"));
}

/** A worker: loads every step module, then runs the one step it is given and exits. */
function work(): void {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const main = require("./main") as typeof import("./main");
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const db = require("./lib/db") as typeof import("./lib/db");
    for (const m of ["./bootstrap", "./preflight", "./cluster", "./snapshot", "./migrations", "./restore", "./verify", "./hybrid", "./password", "./canary"]) require(m);
    const send = (m: FromWorker) => { if (process.connected) process.send?.(m); };
    // The runner gone: before a step, nothing will come; during one, its client's connection went
    // with the runner, so the step goes too, as a killed step program.
    process.on("disconnect", () => process.kill(-process.pid, "SIGKILL"));
    let given = false;
    process.on("message", (m: ToWorker) => {
        if ("prepare" in m) {
            // In the previous step's folder: a CA file may be named relative to it.
            if (!given) {
                process.chdir(m.cwd);
                db.prepareConnection(m.prepare);
            }
            return;
        }
        if (given) return; // one step per worker
        given = true;
        send({ started: true });
        const { step, cwd, env } = m.job;
        // Only a migration step or verify starts with the prepared connection; any other step
        // starts once it is closed (a step that checks the database's sessions must see none of ours).
        const prepared = step === "migrations" || step === "verify" ? Promise.resolve() : db.dropPreparedConnection();
        void prepared.then(() => {
            for (const k of Object.keys(process.env)) delete process.env[k];
            Object.assign(process.env, env);
            process.chdir(cwd);
            process.argv = [process.execPath, path.join(__dirname, "main.js"), step];
            markRunByRunner();
            const forward = (stream: 1 | 2) => ((chunk: string | Uint8Array, ...rest: unknown[]) => {
                send({ out: stream, data: typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8") });
                const cb = rest.find((r) => typeof r === "function") as (() => void) | undefined;
                cb?.();
                return true;
            }) as typeof process.stdout.write;
            process.stdout.write = forward(1);
            process.stderr.write = forward(2);
            // What Node prints for a step program that throws outside its promise, and its status.
            const fatal = (e: unknown) => {
                process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
                process.send?.({ exit: 1 } satisfies FromWorker, () => process.exit(1));
            };
            process.on("uncaughtException", fatal);
            process.on("unhandledRejection", fatal);
            return main.runStepProgram(step);
        }).then((code) => {
            // What a step does at its exit (the crash test's count) is done before its status is sent.
            flushCrashCount();
            process.send?.({ exit: code, connected: code === 0 ? db.lastConnectTarget() : undefined } satisfies FromWorker, () => process.exit(code));
        });
    });
    void warmUp().finally(() => send({ ready: true }));
}

/**
 * What a step's first connection does once per process, done before it is given a step: the
 * SCRAM login's WebCrypto (PBKDF2, HMAC, SHA-256, as the pg driver calls them) and an HTTP
 * request (the Docker engine's socket, /status). Nothing is connected to.
 */
async function warmUp(): Promise<void> {
    const subtle = webcrypto.subtle;
    const key = await subtle.importKey("raw", Buffer.from("warm"), "PBKDF2", false, ["deriveBits"]);
    await subtle.deriveBits({ name: "PBKDF2", salt: Buffer.from("salt"), iterations: 4096, hash: "SHA-256" }, key, 256);
    const hmac = await subtle.importKey("raw", Buffer.from("warm"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    await subtle.sign("HMAC", hmac, Buffer.from("warm"));
    await subtle.digest("SHA-256", Buffer.from("warm"));
    await new Promise<void>((resolve) => {
        const req = http.request({ socketPath: path.join(__dirname, "no-such.sock"), path: "/" }, () => resolve());
        req.on("error", () => resolve());
        req.end();
    });
}

if (require.main === module) {
    if (process.argv[2] === "worker") work();
    else if (process.argv[2] === "serve") void serve(__dirname).catch((e: Error) => { log(__dirname, `failed: ${e.message}`); process.exit(1); });
    else {
        // Started by a step's client: the runner itself in a session of its own, so that no
        // terminal's Ctrl-C or hang-up (of the `pulumi up` that happened to start it) reaches it,
        // its workers or another run's steps.
        const logFd = fs.openSync(path.join(__dirname, RUNNER_FILES.log), "a", 0o600);
        spawn(process.execPath, [__filename, "serve"], { detached: true, stdio: ["ignore", logFd, logFd], env: process.env }).unref();
    }
}
