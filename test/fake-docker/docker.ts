// A test double of the docker CLI for the step programs: containers live in a JSON file
// ($FAKE_DOCKER_STATE; with DOCKER_HOST set, one file per host: $FAKE_DOCKER_STATE@<host>). It
// answers the calls the steps make (container inspect, ps with label filters, stop, start) and
// logs every argv to <that file>.log.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "fs";
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
    default:
        process.stderr.write(`fake docker: unsupported ${args.join(" ")}\n`);
        process.exit(2);
}
