// A test double of the docker CLI for the step programs: containers live in a JSON file
// ($FAKE_DOCKER_STATE; with DOCKER_HOST set, one file per host: $FAKE_DOCKER_STATE@<host>). It
// answers the calls the steps make (container inspect, ps with label filters, stop, start) and
// logs every argv to <that file>.log.
import { spawnSync } from "child_process";
import { createHash } from "crypto";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { fakeHostState } from "./hosts";

interface Container { running: boolean; health: string; labels: Record<string, string> }
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

switch (args[0]) {
    case "container": {
        const name = args[args.length - 1];
        const c = world[name] ?? missing(name);
        process.stdout.write(`${JSON.stringify({ Running: c.running, Health: c.health ? { Status: c.health } : undefined })}|${JSON.stringify(c.labels)}\n`);
        break;
    }
    case "ps": {
        const filters = args.flatMap((a, i) => args[i - 1] === "--filter" ? [a.replace(/^label=/, "")] : []);
        const out = Object.entries(world).filter(([, c]) => c.running && filters.every((f) => {
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
            c.running = args[0] === "start";
            c.health = c.running ? "healthy" : "";
            process.stdout.write(`${name}\n`);
        }
        save(world);
        break;
    }
    case "run": {
        // `docker run … <image> kong …`: the Kong stand-in with the container's environment only.
        // `-e NAME` copies NAME from docker's own environment (a secret passed by name); the
        // fake logs a digest of each, so tests see the value arrived without it being written.
        const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/" };
        const byName: Record<string, string> = {};
        let i = 1;
        for (; i < args.length && args[i].startsWith("-"); i++) {
            if (args[i] === "--rm") continue;
            if (args[i] !== "-e") { i++; continue; }
            const e = args[++i];
            const eq = e.indexOf("=");
            if (eq >= 0) { env[e.slice(0, eq)] = e.slice(eq + 1); continue; }
            const v = process.env[e];
            if (v === undefined) { process.stderr.write(`fake docker: -e ${e} is not in docker's environment\n`); process.exit(125); }
            env[e] = v;
            byName[e] = createHash("sha256").update(v).digest("hex");
        }
        appendFileSync(`${file}.log`, `${JSON.stringify({ byName })}\n`);
        const [image, cmd, ...rest] = args.slice(i);
        if (cmd !== "kong") { process.stderr.write(`fake docker: run supports only kong, not ${cmd}\n`); process.exit(125); }
        const r = spawnSync(STANDIN, rest, { env: { ...env, KONG_VERSION: image.split(":").pop()! }, encoding: "utf8" });
        process.stdout.write(r.stdout ?? "");
        process.stderr.write(r.stderr ?? "");
        process.exit(r.status ?? 1);
    }
    default:
        process.stderr.write(`fake docker: unsupported ${args.join(" ")}\n`);
        process.exit(2);
}
