// A test double of the docker CLI for the step programs: containers live in a JSON file
// ($FAKE_DOCKER_STATE; with DOCKER_HOST set, one file per host: $FAKE_DOCKER_STATE@<host>). It
// answers the calls the steps make (container inspect, ps with label filters, stop, start, and
// `run` of a Kong image with $FAKE_DOCKER_KONG, or else the stand-in, as its `kong`) and logs every
// argv to <that file>.log. `run -d` (the canary's node) starts the Kong stand-in of the image's
// version as a local process, its listeners moved to the published host ports; `rm -f`, `logs` and
// `stop` act on that process.
import { spawn, spawnSync } from "child_process";
import { createHash } from "crypto";
import { appendFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";
import { fakeHostState } from "./hosts";

interface Container {
    running: boolean; health: string; labels: Record<string, string>; pid?: number; log?: string;
    /** As Docker reports a container that exited: its code, whether its restart policy is about to start it again, how often it did */
    exitCode?: number; restarting?: boolean; restarts?: number;
    /** A crash loop: each inspect finds it restarted once more */
    restartsGrow?: boolean;
}
type World = Record<string, Container>;

const base = process.env.FAKE_DOCKER_STATE;
if (!base) { process.stderr.write("FAKE_DOCKER_STATE is not set\n"); process.exit(2); }
const file = process.env.DOCKER_HOST ? fakeHostState(base, process.env.DOCKER_HOST) : base;
const load = (): World => existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) as World : {};
const save = (w: World) => writeFileSync(file, JSON.stringify(w, null, 2));
const args = process.argv.slice(2);
appendFileSync(`${file}.log`, `${JSON.stringify(args)}\n`);
const world = load();
const names = (from: number) => args.slice(from).filter((a, i, all) => !a.startsWith("-") && !(all[i - 1] ?? "").startsWith("--"));

function missing(name: string): never {
    process.stderr.write(`Error response from daemon: No such container: ${name}\n`);
    process.exit(1);
}

/** The stand-in's launcher in the source tree, whether this runs from test/ or compiled into build/test/. */
const STANDIN = path.join(__dirname, ...(__dirname.split(path.sep).includes("build") ? ["..", "..", "..", "test"] : [".."]), "kong-standin", "kong");

function alive(pid: number): boolean {
    try { process.kill(pid, 0); return true; } catch { return false; }
}

for (const c of Object.values(world)) if (c.pid && c.running && !alive(c.pid)) c.running = false;

/** `run -d --name n [--network x] [--label k=v]… [-p addr:host:inside]… [-e K[=V]]… image`: the stand-in, locally. */
function run(): void {
    const labels: Record<string, string> = {};
    const env: Record<string, string> = {};
    const publish: Array<{ addr: string; host: string; inside: string }> = [];
    let name = "";
    let i = 1;
    for (; i < args.length && args[i].startsWith("-"); i++) {
        const a = args[i];
        if (a === "-d" || a === "--rm" || a === "-i") continue;
        const v = args[++i];
        if (a === "--name") name = v;
        else if (a === "--label") labels[v.slice(0, v.indexOf("="))] = v.slice(v.indexOf("=") + 1);
        else if (a === "-p") { const [addr, host, inside] = v.split(":"); publish.push({ addr, host, inside }); }
        else if (a === "-e") { const eq = v.indexOf("="); env[eq < 0 ? v : v.slice(0, eq)] = eq < 0 ? (process.env[v] ?? "") : v.slice(eq + 1); }
    }
    const image = args[i];
    if (world[name]) { process.stderr.write(`docker: Error response from daemon: Conflict. The container name "/${name}" is already in use.\n`); process.exit(125); }
    for (const [k, v] of Object.entries(env)) {
        if (!k.endsWith("_LISTEN") || v === "off") continue;
        const inside = v.split(":").pop();
        const p = publish.find((x) => x.inside === inside);
        env[k] = p ? `${p.addr}:${p.host}` : "127.0.0.1:0";
    }
    const log = `${file}.${name}.log`;
    const out = openSync(log, "a");
    // The stand-in's launcher, from test/fake-docker or its compiled copy in build/test/fake-docker.
    const standin = path.join(__dirname.replace(/[\\/](build[\\/])?test[\\/]fake-docker$/, ""), "test", "kong-standin", "kong");
    const child = spawn(standin, ["docker-start"], {
        detached: true, stdio: ["ignore", out, out],
        env: { PATH: process.env.PATH, ...env, KONG_VERSION: image.split(":").pop(), KONG_PREFIX: mkdtempSync(path.join(os.tmpdir(), "fake-kong-")) },
    });
    child.unref();
    world[name] = { running: true, health: "", labels, pid: child.pid, log };
    save(world);
    process.stdout.write(`${name}\n`);
}

function kill(c: Container, signal: NodeJS.Signals, waitMs: number): void {
    if (!c.pid || !alive(c.pid)) return;
    try { process.kill(c.pid, signal); } catch { /* gone */ }
    const until = Date.now() + waitMs;
    while (alive(c.pid) && Date.now() < until) spawnSync("sleep", ["0.05"]);
    if (alive(c.pid)) try { process.kill(c.pid, "SIGKILL"); } catch { /* gone */ }
}

/** `run -d`: a flag before the image, not an argument of the command after it (pg_dump's `-d`). */
function detached(): boolean {
    for (let j = 1; j < args.length && args[j].startsWith("-"); j++) {
        if (args[j] === "-d") return true;
        if (["--name", "--network", "--label", "-p", "-e", "-v", "--user", "--entrypoint"].includes(args[j])) j++;
    }
    return false;
}

switch (args[0]) {
    case "rm": {
        for (const name of names(1)) {
            const c = world[name] ?? missing(name);
            kill(c, "SIGKILL", 2000);
            delete world[name];
            process.stdout.write(`${name}\n`);
        }
        save(world);
        break;
    }
    case "logs": {
        const name = args[args.length - 1];
        const c = world[name] ?? missing(name);
        process.stdout.write(c.log && existsSync(c.log) ? readFileSync(c.log, "utf8") : "");
        break;
    }
    case "container": {
        const name = args[args.length - 1];
        const c = world[name] ?? missing(name);
        const state = { Running: c.running, Restarting: c.restarting ?? false, ExitCode: c.exitCode ?? 0, Health: c.health ? { Status: c.health } : undefined };
        process.stdout.write(`${JSON.stringify(state)}\n${JSON.stringify(c.labels)}\n${c.restarts ?? 0}\n`);
        if (c.restartsGrow) { c.restarts = (c.restarts ?? 0) + 1; save(world); }
        break;
    }
    case "ps": {
        const filters = args.flatMap((a, i) => args[i - 1] === "--filter" ? [a.replace(/^label=/, "")] : []);
        const all = args.includes("-a");
        const out = Object.entries(world).filter(([, c]) => (all || c.running) && filters.every((f) => {
            const [k, v] = f.split("=");
            return c.labels[k] === v;
        })).map(([n]) => n);
        process.stdout.write(out.map((n) => `${n}\n`).join(""));
        break;
    }
    case "stop":
    case "start": {
        for (const name of names(1)) {
            const c = world[name] ?? missing(name);
            if (c.pid && args[0] === "stop") kill(c, "SIGQUIT", 10_000);
            c.running = args[0] === "start";
            c.health = c.running ? "healthy" : "";
            process.stdout.write(`${name}\n`);
        }
        save(world);
        break;
    }
    case "run": {
        if (detached()) { run(); break; }
        // `run --rm [options] <image> <command…>`: the command runs here, with the settings given by
        // -e, the image's tag as Kong's version and the stand-in as `kong` on its PATH. `-e NAME`
        // copies NAME from docker's own environment (a secret passed by name): the fake logs a
        // digest of each, so tests see the value arrived without it being written.
        const env: Record<string, string> = {};
        const byName: Record<string, string> = {};
        let i = 1;
        for (; i < args.length; i++) {
            const a = args[i];
            if (a === "-e") {
                const kv = args[++i];
                const at = kv.indexOf("=");
                if (at >= 0) { env[kv.slice(0, at)] = kv.slice(at + 1); continue; }
                const v = process.env[kv];
                if (v === undefined) { process.stderr.write(`fake docker: -e ${kv} is not in docker's environment\n`); process.exit(125); }
                env[kv] = v;
                byName[kv] = createHash("sha256").update(v).digest("hex");
            } else if (["--network", "--label", "-v", "--user", "--name"].includes(a)) {
                i++;
            } else if (!a.startsWith("-")) {
                break;
            }
        }
        appendFileSync(`${file}.log`, `${JSON.stringify({ byName })}\n`);
        const image = args[i];
        const kong = process.env.FAKE_DOCKER_KONG ?? STANDIN;
        const bin = mkdtempSync(path.join(os.tmpdir(), "fake-docker-bin-"));
        writeFileSync(path.join(bin, "kong"), `#!/bin/sh\nexec '${kong}' "$@"\n`, { mode: 0o755 });
        const r = spawnSync(args[i + 1], args.slice(i + 2), {
            env: { PATH: `${bin}:${process.env.PATH}`, HOME: os.tmpdir(), KONG_VERSION: image.split(":").pop()!, ...env }, stdio: "inherit",
        });
        rmSync(bin, { recursive: true, force: true });
        process.exit(r.status ?? 125);
    }
    case "image": {
        // `image inspect -f {{.Id}} <image>`: every image has the id FAKE_DOCKER_IMAGE_ID, or none is present.
        if (args[1] !== "inspect") break;
        const id = process.env.FAKE_DOCKER_IMAGE_ID;
        if (!id) { process.stderr.write(`Error: No such image: ${args[args.length - 1]}\n`); process.exit(1); }
        process.stdout.write(`${id}\n`);
        process.exit(0);
    }
    default:
        process.stderr.write(`fake docker: unsupported ${args.join(" ")}\n`);
        process.exit(2);
}
