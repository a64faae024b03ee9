// A fresh machine needs only Node.js and Docker: bin/pulumi-local.sh runs the project's own Pulumi
// CLI (the pinned `pulumi` npm package) unless told otherwise, says which, and every dev-stack
// script fails clearly, before touching anything, when no CLI can run or Docker does not answer.
// Each case runs the real scripts in a copy of the project (bin/, package.json, Pulumi*.yaml, the
// real node_modules) with fake `pulumi` and `docker` executables and a PATH of only what they need.
import { strict as assert } from "assert";
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { after, describe, it } from "node:test";

const repo = path.join(__dirname, "..");
const pinned: string = JSON.parse(fs.readFileSync(path.join(repo, "node_modules/pulumi/package.json"), "utf8")).version;
const sdk: string = JSON.parse(fs.readFileSync(path.join(repo, "node_modules/@pulumi/pulumi/package.json"), "utf8")).version;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kong-upgrade-setup-"));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
let made = 0;
const dir = (name: string) => fs.mkdtempSync(path.join(scratch, `${name}-${made++}-`));

/** Which `docker` the PATH holds: the real CLI, none, or none at all on PATH. */
const realDocker = (() => { try { return execFileSync("sh", ["-c", "command -v docker"], { encoding: "utf8" }).trim(); } catch { return ""; } })();

/** A folder of links to the tools the scripts use (and nothing else, so no stray `pulumi`). */
function toolbox(withDocker: boolean): string {
    const box = dir("tools");
    fs.symlinkSync(process.execPath, path.join(box, "node"));
    const npm = execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim();
    fs.symlinkSync(fs.realpathSync(npm), path.join(box, "npm"));
    for (const tool of ["bash", "sh", "env", "dirname", "sort", "head", "tail", "tr", "find", "wc", "mkdir", "chmod", "cat", "timeout", "base64"]) {
        const at = execFileSync("sh", ["-c", `command -v ${tool} || true`], { encoding: "utf8" }).trim();
        if (at) fs.symlinkSync(at, path.join(box, tool));
    }
    if (withDocker && realDocker) fs.symlinkSync(realDocker, path.join(box, "docker"));
    return box;
}
const tools = toolbox(true);
const toolsWithoutDocker = toolbox(false);

/** A copy of the project with the real node_modules (or one without the `pulumi` package). */
function project(opts: { withoutPulumiPackage?: boolean } = {}): string {
    const root = dir("project");
    fs.cpSync(path.join(repo, "bin"), path.join(root, "bin"), { recursive: true });
    for (const f of ["package.json", "Pulumi.yaml", "Pulumi.dev.yaml"]) fs.copyFileSync(path.join(repo, f), path.join(root, f));
    if (opts.withoutPulumiPackage) {
        fs.mkdirSync(path.join(root, "node_modules/@pulumi"), { recursive: true });
        fs.symlinkSync(path.join(repo, "node_modules/@pulumi/pulumi"), path.join(root, "node_modules/@pulumi/pulumi"));
    } else {
        fs.symlinkSync(path.join(repo, "node_modules"), path.join(root, "node_modules"));
    }
    return root;
}

/** A fake Pulumi CLI: logs "<name> <args>" to $FAKE_LOG, answers `version`, fails `config get`
 * (nothing is set yet), swallows `config set`'s stdin, and prints what it was run with. */
function fakePulumi(at: string, name: string, version: string, opts: { broken?: boolean } = {}): string {
    fs.mkdirSync(at, { recursive: true });
    const file = path.join(at, "pulumi");
    fs.writeFileSync(file, opts.broken ? "#!/bin/sh\necho 'exec format error' >&2\nexit 2\n" : `#!/bin/sh
echo "${name} $*" >> "$FAKE_LOG"
case "$1" in
  version) echo "v${version}"; exit 0 ;;
  config) [ "$2" = get ] && exit 1; cat >> "$FAKE_LOG.stdin"; exit 0 ;;
  destroy) exit "\${FAKE_DESTROY_EXIT:-0}" ;;
esac
echo "ran ${name}: $*"
echo "backend: $PULUMI_BACKEND_URL"
echo "first on PATH: \${PATH%%:*}"
`, { mode: 0o755 });
    return file;
}

/** A fake docker CLI that answers `info` and `volume inspect`, logging to $FAKE_LOG. */
function fakeDocker(): string {
    const at = dir("fake-docker");
    fs.writeFileSync(path.join(at, "docker"), `#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$1" in info) echo 28.2.2 ;; esac
exit 0
`, { mode: 0o755 });
    return at;
}

/** Exit code, output, the fake CLIs' calls in order, and what `config set` read on stdin. */
interface Run { code: number; stdout: string; stderr: string; log: string[]; stdinOfConfigSet: string }

/** Runs `command` in `root` with only `env` (plus HOME, LOG and a PATH ending in the toolbox). */
function run(root: string, command: string[], opts: { path?: string[]; env?: Record<string, string>; noDocker?: boolean; timeoutMs?: number; stdin?: string } = {}): Promise<Run> {
    const log = path.join(dir("log"), "calls");
    const env: Record<string, string> = {
        HOME: dir("home"),
        FAKE_LOG: log,
        npm_config_update_notifier: "false",
        PATH: [...(opts.path ?? []), opts.noDocker ? toolsWithoutDocker : tools].join(":"),
        ...opts.env,
    };
    return new Promise((resolve) => {
        const child = execFile(command[0], command.slice(1), { cwd: root, env, timeout: opts.timeoutMs ?? 60_000, encoding: "utf8" },
            (err, stdout, stderr) => {
                const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
                const calls = fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n").filter(Boolean) : [];
                const stdinOfConfigSet = fs.existsSync(`${log}.stdin`) ? fs.readFileSync(`${log}.stdin`, "utf8") : "";
                resolve({ code, stdout, stderr, log: calls, stdinOfConfigSet });
            });
        child.stdin?.end(opts.stdin ?? "");
    });
}
const bash = (root: string, script: string, ...args: string[]) => ["bash", path.join(root, "bin", script), ...args];

/** PULUMI_HOME holding the project's CLI as the `pulumi` package caches it (a fake). */
function cachedProjectCli(version = pinned): { home: string; cli: string } {
    const home = dir("pulumi-home");
    return { home, cli: fakePulumi(path.join(home, "versions", version, "bin"), "project", version) };
}
const oneLine = (stderr: string) => stderr.trim().split("\n");

describe("bin/pulumi-local.sh: which Pulumi CLI it runs", () => {
    it("runs the project's own CLI, the pinned package's version from its cache, even with another pulumi on PATH", async () => {
        const root = project();
        const { home, cli } = cachedProjectCli();
        const system = path.dirname(fakePulumi(dir("system"), "system", "3.260.0"));
        const r = await run(root, bash(root, "pulumi-local.sh", "stack", "ls"), { path: [system], env: { PULUMI_HOME: home } });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(oneLine(r.stderr), [`kong-upgrade: Pulumi CLI v${pinned}, the project's own (npm package pulumi@${pinned}): ${cli}`]);
        assert.match(r.stdout, /^ran project: stack ls$/m);
        assert.deepEqual(r.log, ["project version", "project stack ls"]);
        // The project's local backend, and the CLI's own folder first on PATH (its language hosts).
        assert.match(r.stdout, new RegExp(`^backend: file://${root}/\\.pulumi-state$`, "m"));
        assert.match(r.stdout, new RegExp(`^first on PATH: ${path.dirname(cli)}$`, "m"));
    });

    it("finds the cache under ~/.pulumi when PULUMI_HOME is unset, as the package does", async () => {
        const root = project();
        const home = dir("home");
        const cli = fakePulumi(path.join(home, ".pulumi/versions", pinned, "bin"), "project", pinned);
        const r = await run(root, bash(root, "pulumi-local.sh", "whoami"), { env: { HOME: home } });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`the project's own \\(npm package pulumi@${pinned}\\): ${cli}\n$`));
        assert.match(r.stdout, /^ran project: whoami$/m);
    });

    it("KONG_UPGRADE_PULUMI=system: the pulumi on PATH, skipping node_modules/.bin where npm run puts the project's", async () => {
        const root = project();
        const system = path.dirname(fakePulumi(dir("system"), "system", "3.260.0"));
        const r = await run(root, bash(root, "pulumi-local.sh", "whoami"),
            { path: [path.join(root, "node_modules/.bin"), system], env: { KONG_UPGRADE_PULUMI: "system", PULUMI_HOME: dir("empty-home") } });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(oneLine(r.stderr), [`kong-upgrade: Pulumi CLI v3.260.0, from PATH (KONG_UPGRADE_PULUMI=system): ${system}/pulumi`]);
        assert.deepEqual(r.log, ["system version", "system whoami"]);
    });

    it("npm run pulumi with KONG_UPGRADE_PULUMI=system runs the PATH's CLI, not the package npm put first", async () => {
        const root = project();
        const system = path.dirname(fakePulumi(dir("system"), "system", "3.260.0"));
        const r = await run(root, ["npm", "run", "--silent", "pulumi", "--", "whoami"],
            { path: [system], env: { KONG_UPGRADE_PULUMI: "system", PULUMI_HOME: dir("empty-home") } });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^ran system: whoami$/m);
        assert.doesNotMatch(r.stderr, /Downloading/);
    });

    it("KONG_UPGRADE_PULUMI=<path>: that executable (a file, a folder, or relative to where npm was run)", async () => {
        const root = project();
        const where = dir("opt");
        const cli = fakePulumi(path.join(where, "pulumi-3.255"), "explicit", "3.255.0");
        for (const [given, initCwd] of [[cli, undefined], [path.dirname(cli), undefined], ["pulumi-3.255/pulumi", where]] as const) {
            const r = await run(root, bash(root, "pulumi-local.sh", "whoami"),
                { env: { KONG_UPGRADE_PULUMI: given, ...(initCwd ? { INIT_CWD: initCwd } : {}) } });
            assert.equal(r.code, 0, r.stderr);
            assert.deepEqual(oneLine(r.stderr), [`kong-upgrade: Pulumi CLI v3.255.0, as KONG_UPGRADE_PULUMI says: ${cli}`], given);
            assert.match(r.stdout, /^ran explicit: whoami$/m);
        }
    });

    it("warns when the chosen CLI is older than the @pulumi/pulumi SDK, and still runs it", async () => {
        const root = project();
        const cli = fakePulumi(dir("old"), "old", "3.100.0");
        const r = await run(root, bash(root, "pulumi-local.sh", "whoami"), { env: { KONG_UPGRADE_PULUMI: cli } });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(oneLine(r.stderr).length, 2);
        assert.match(r.stderr, new RegExp(`warning: this CLI is older than the @pulumi/pulumi SDK ${sdk.replace(/\./g, "\\.")} the program uses`));
    });
});

describe("bin/pulumi-local.sh: when no CLI can run, it says why and what to do", () => {
    const cases: { name: string; env: (root: string) => Record<string, string>; withoutPackage?: boolean; message: RegExp }[] = [
        {
            name: "KONG_UPGRADE_PULUMI=system with no pulumi on PATH (only the project's in node_modules/.bin)",
            env: () => ({ KONG_UPGRADE_PULUMI: "system" }),
            message: /^kong-upgrade: KONG_UPGRADE_PULUMI=system but there is no pulumi on PATH \(node_modules\/\.bin skipped\): install the Pulumi CLI, give its path in KONG_UPGRADE_PULUMI, or unset KONG_UPGRADE_PULUMI to use the project's own$/,
        },
        {
            name: "KONG_UPGRADE_PULUMI naming a file that does not exist",
            env: () => ({ KONG_UPGRADE_PULUMI: "/opt/nowhere/pulumi" }),
            message: /^kong-upgrade: KONG_UPGRADE_PULUMI=\/opt\/nowhere\/pulumi: \/opt\/nowhere\/pulumi is not an executable file; give the path of a Pulumi CLI \(or its folder\), "system" for the pulumi on your PATH, or unset it for the project's own$/,
        },
        {
            name: "KONG_UPGRADE_PULUMI naming a CLI that does not run",
            env: () => ({ KONG_UPGRADE_PULUMI: fakePulumi(dir("broken"), "broken", "0", { broken: true }) }),
            message: /^kong-upgrade: the Pulumi CLI \S+\/pulumi does not run \(`pulumi version` failed: exec format error\)$/,
        },
        {
            name: "the project's CLI package not installed",
            env: () => ({}),
            withoutPackage: true,
            message: /^kong-upgrade: the project's Pulumi CLI \(npm package `pulumi`\) is not installed: run `npm ci` first, or point KONG_UPGRADE_PULUMI at an installed CLI/,
        },
    ];
    for (const c of cases) {
        it(c.name, async () => {
            const root = project({ withoutPulumiPackage: c.withoutPackage });
            const r = await run(root, bash(root, "pulumi-local.sh", "up", "--yes"),
                { path: [path.join(root, "node_modules/.bin")], env: { PULUMI_HOME: dir("empty-home"), ...c.env(root) } });
            assert.equal(r.code, 1);
            assert.match(oneLine(r.stderr).pop() ?? "", c.message, r.stderr);
            assert.equal(r.stdout, "");
            assert.ok(!fs.existsSync(path.join(root, ".pulumi-state")), "nothing written before a CLI is chosen");
        });
    }

    it("the real `pulumi` package cannot download its CLI here: its own error, then ours naming KONG_UPGRADE_PULUMI", async (t) => {
        // A fresh PULUMI_HOME, so a CLI cached on this machine is never found. Where the download
        // server answers, the package would fetch the whole CLI: this case is for machines without.
        const reachable = await fetch("https://get.pulumi.com/install.sh", { method: "HEAD", signal: AbortSignal.timeout(5000) }).then(() => true, () => false);
        if (reachable) { t.skip("get.pulumi.com answers here: the package would download its CLI"); return; }
        const root = project();
        const home = dir("empty-home");
        const system = path.dirname(fakePulumi(dir("system"), "system", "3.260.0"));
        const started = Date.now();
        const r = await run(root, bash(root, "pulumi-local.sh", "up", "--yes"), { path: [system], env: { PULUMI_HOME: home }, timeoutMs: 30_000 });
        assert.equal(r.code, 1, r.stderr);
        assert.ok(Date.now() - started < 30_000, "fails fast");
        assert.deepEqual(r.log, [], "the pulumi on PATH is not used unless asked for");
        const lines = oneLine(r.stderr);
        assert.equal(lines[0], `kong-upgrade: first use of the project's Pulumi CLI v${pinned}: downloading it into ${home}/versions/${pinned} (once)`);
        assert.ok(lines.includes(`Downloading pulumi v${pinned}...`), r.stderr); // the package's own words
        assert.match(r.stderr, /^pulumi: /m);
        assert.equal(lines.pop(), `kong-upgrade: could not download the Pulumi CLI v${pinned}: no internet? point KONG_UPGRADE_PULUMI at an installed CLI (KONG_UPGRADE_PULUMI=system for the pulumi on your PATH, or its path); there is one on your PATH: ${system}/pulumi`);
        assert.ok(!fs.existsSync(path.join(home, "versions", pinned, "bin", "pulumi")));
    });
});

describe("npm run up:dev, preview:dev, down:dev", () => {
    it("up:dev, preview:dev and down:dev fail before touching anything when Docker does not answer (DOCKER_HOST at a dead socket)", { skip: realDocker ? false : "no docker CLI on this machine" }, async () => {
        const root = project();
        const { home } = cachedProjectCli();
        const dead = `unix://${dir("dead")}/docker.sock`;
        const before = fs.readFileSync(path.join(root, "Pulumi.dev.yaml"), "utf8");
        for (const script of ["up:dev", "preview:dev", "down:dev"]) {
            const r = await run(root, ["npm", "run", "--silent", script], { env: { PULUMI_HOME: home, DOCKER_HOST: dead } });
            assert.equal(r.code, 1, script);
            assert.match(r.stderr, new RegExp(`^kong-upgrade: Docker is not answering at DOCKER_HOST=${dead}: start Docker \\(or fix DOCKER_HOST\\) and run this again; nothing was changed\\.\n  docker info: .+`, "m"), script);
            assert.deepEqual(r.log, [], `${script}: no Pulumi CLI was run`);
            assert.ok(!fs.existsSync(path.join(root, ".pulumi-state")), `${script}: no state written`);
            assert.equal(fs.readFileSync(path.join(root, "Pulumi.dev.yaml"), "utf8"), before);
        }
    });

    it("up:dev without any docker command says Docker is not installed, before anything else", async () => {
        const root = project();
        const { home } = cachedProjectCli();
        const r = await run(root, bash(root, "up-dev.sh"), { noDocker: true, env: { PULUMI_HOME: home } });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^kong-upgrade: Docker is not installed \(no docker command on PATH\): the dev stack runs Kong and PostgreSQL in Docker\. Install Docker and run this again; nothing was changed\.$/m);
        assert.deepEqual(r.log, []);
    });

    it("up:dev creates the dev stack and its password through stdin (never argv), then runs up with the extra arguments", async () => {
        const root = project();
        const { home } = cachedProjectCli();
        const r = await run(root, ["npm", "run", "--silent", "up:dev", "--", "--yes"], { path: [fakeDocker()], env: { PULUMI_HOME: home } });
        assert.equal(r.code, 0, r.stderr);
        const calls = r.log.filter((l) => !l.startsWith("docker "));
        assert.deepEqual(calls, [
            "project version", "project stack select --create dev",
            "project config get --path database.password --stack dev",
            "project config set --secret --path database.password --stack dev",
            "project up --stack dev --yes",
        ]);
        assert.ok(r.log.includes("docker info --format {{.ServerVersion}}"));
        assert.match(r.stderr, /generated the dev database password/);
        assert.equal(oneLine(r.stderr).filter((l) => l.includes("Pulumi CLI v")).length, 1, "says once which CLI it runs");
        assert.match(r.stdinOfConfigSet, /^[A-Za-z0-9_-]{24}$/, "a random password, handed over on stdin");
        assert.ok(!r.log.some((l) => l.includes(r.stdinOfConfigSet)), "the password is on no command line");
        assert.equal(fs.statSync(path.join(root, ".pulumi-state/passphrase")).mode & 0o777, 0o600);
    });

    it("preview:dev runs preview, not up", async () => {
        const root = project();
        const { home } = cachedProjectCli();
        const r = await run(root, bash(root, "preview-dev.sh", "--diff"), { path: [fakeDocker()], env: { PULUMI_HOME: home } });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.log.filter((l) => l.startsWith("project ")).pop(), "project preview --stack dev --diff");
        assert.ok(!r.log.some((l) => / up /.test(` ${l} `)));
    });

    it("down:dev destroys the dev stack, then lists what it kept (data volume, dump files, images) and how to remove it", async () => {
        const root = project();
        const { home } = cachedProjectCli();
        fs.mkdirSync(path.join(root, "snapshots"));
        for (const f of ["kong_snap_3_4_2_to_3_7_1_20261127T1000.dump", "kong_snap_3_4_2_to_3_7_1_20261127T1000.json"]) fs.writeFileSync(path.join(root, "snapshots", f), "x");
        const r = await run(root, ["npm", "run", "--silent", "down:dev", "--", "--yes"], { path: [fakeDocker()], env: { PULUMI_HOME: home } });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.log.includes("project destroy --stack dev --yes"));
        assert.ok(!r.log.some((l) => /stack rm/.test(l)), "the stack and its config stay");
        const said = r.stderr.slice(r.stderr.indexOf("The dev stack is destroyed"));
        assert.match(said, /Docker volume kong-upgrade-dev-pgdata: Kong's database kong, its snapshots \(kong_snap_\*\) and the databases rollbacks set aside \(kong_failed_\*\)\n +remove it \(all of that, for good\): docker volume rm kong-upgrade-dev-pgdata/);
        assert.match(said, /2 file\(s\) in \.\/snapshots: dump snapshots with their \.json records, declarative exports\n +remove them: rm -r \.\/snapshots/);
        assert.match(said, /the Docker images it pulled/);
        assert.ok(fs.existsSync(path.join(root, "snapshots")), "down:dev itself removes nothing it kept");
    });

    it("down:dev whose destroy fails stops there, without claiming anything was destroyed", async () => {
        const root = project();
        const { home } = cachedProjectCli();
        const r = await run(root, bash(root, "down-dev.sh", "--yes"), { path: [fakeDocker()], env: { PULUMI_HOME: home, FAKE_DESTROY_EXIT: "255" } });
        assert.notEqual(r.code, 0);
        assert.doesNotMatch(r.stderr, /destroyed/);
    });
});
