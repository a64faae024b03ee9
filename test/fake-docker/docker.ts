// A test double of the docker CLI for the step programs: containers live in a JSON file
// ($FAKE_DOCKER_STATE; with DOCKER_HOST set, one file per host: $FAKE_DOCKER_STATE@<host>). It
// answers the calls the steps make (container inspect, ps with label filters, stop, start, and
// `run` of a Kong image with $FAKE_DOCKER_KONG, or else the stand-in, as its `kong`) and logs every
// argv to <that file>.log.
import { spawnSync } from "child_process";
import { createHash } from "crypto";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as os from "os";
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
    default:
        process.stderr.write(`fake docker: unsupported ${args.join(" ")}\n`);
        process.exit(2);
}
