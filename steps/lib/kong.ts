// Running `kong …` of one version against the shared database: in a one-off container of that
// version's image (the product), or through KONG_UPGRADE_KONG_COMMAND, a local executable
// (test seam: the Kong stand-in). Either way the password travels by name in the environment.
import { exec, ExecResult } from "./exec";
import { dockerBinary, dockerEnv } from "./docker";
import { StepError } from "./log";
import { databasePassword, kongSecretEnv } from "./secrets";
import { KongRun, PG_CA_MOUNT, SECRET_ENV } from "./spec";

/** KONG_PG_* for a run; the password is never among them (it is passed by name). */
export function kongPgEnv(run: KongRun): Record<string, string> {
    const env: Record<string, string> = {
        KONG_PG_HOST: run.pg.host,
        KONG_PG_PORT: String(run.pg.port),
        KONG_PG_USER: run.pg.user,
        KONG_PG_DATABASE: run.pg.database,
        KONG_PG_SSL: run.pg.ssl ? "on" : "off",
    };
    // verify-ca/verify-full: Kong checks the server's certificate against the mounted CA.
    if (run.pg.sslRootCert) env.KONG_PG_SSL_VERIFY = "on";
    if (run.pg.schema) env.KONG_PG_SCHEMA = run.pg.schema;
    return env;
}

/** Every non-secret KONG_* setting of a run: the same as Y's nodes get. */
export function kongEnv(run: KongRun): Record<string, string> {
    const env: Record<string, string> = { KONG_DATABASE: "postgres", ...kongPgEnv(run), KONG_PLUGINS: run.plugins, ...run.env };
    if (run.pg.sslRootCert) env.KONG_LUA_SSL_TRUSTED_CERTIFICATE = trustedCertificates(run);
    return env;
}

/**
 * lua_ssl_trusted_certificate with the database's CA added: to the operator's own list if set,
 * else to `system` (3.x's default, kept so upstream TLS checks still trust the system CAs; 2.x
 * had no default).
 */
function trustedCertificates(run: KongRun): string {
    const own = run.env.KONG_LUA_SSL_TRUSTED_CERTIFICATE;
    if (own) return `${own},${PG_CA_MOUNT}`;
    return Number(run.version.split(".")[0]) >= 3 ? `system,${PG_CA_MOUNT}` : PG_CA_MOUNT;
}

/** Read-only mount of the database's CA file, for every container that connects with verification. */
export function caMount(run: KongRun): string[] {
    return run.pg.sslRootCert ? ["-v", `${run.pg.sslRootCert}:${PG_CA_MOUNT}:ro`] : [];
}

/**
 * The `docker run` argv of `kong <args>` with `run`'s image, network and settings. Secrets are
 * named (`-e KONG_PG_PASSWORD`), so docker copies them from its own environment; their values
 * are never on a command line.
 */
export function kongDockerArgv(run: KongRun, args: string[], mounts: Mount[] = []): string[] {
    const argv = [dockerBinary(), "run", "--rm", "--network", run.network, "--label", "kong-upgrade.role=migrations"];
    for (const m of mounts) argv.push("-v", `${m.host}:${m.container}`);
    argv.push(...caMount(run));
    if (mounts.length > 0 && process.getuid && process.getgid) {
        // Files written into a host folder belong to the user running the step; Kong then needs a
        // prefix it can write as that user (the image's own prefix belongs to user kong).
        argv.push("--user", `${process.getuid()}:${process.getgid()}`, "-e", "KONG_PREFIX=/tmp/kong-prefix");
    }
    for (const [k, v] of Object.entries(kongEnv(run))) argv.push("-e", `${k}=${v}`);
    argv.push("-e", SECRET_ENV.password);
    if (run.license) argv.push("-e", SECRET_ENV.license);
    for (const name of run.secretEnv ?? []) argv.push("-e", name);
    argv.push(run.image, "kong", ...args);
    return argv;
}

function secretEnv(run: KongRun): Record<string, string> {
    const env: Record<string, string> = { [SECRET_ENV.password]: databasePassword() };
    if (run.license) env[SECRET_ENV.license] = process.env[SECRET_ENV.license] ?? "";
    return { ...env, ...kongSecretEnv(run.secretEnv ?? []) };
}

/** A host folder made visible to the kong container. */
export interface Mount {
    host: string;
    container: string;
}

/**
 * Runs `kong <args>` for `run`. Arguments that name a path inside a mount are given as the
 * container path; run locally, they are translated to the host folder.
 */
export async function runKong(run: KongRun, args: string[], timeoutSeconds = 0, mounts: Mount[] = []): Promise<ExecResult> {
    const local = process.env.KONG_UPGRADE_KONG_COMMAND;
    try {
        if (local) {
            const hostArgs = args.map((a) => mounts.reduce((acc, m) => acc.startsWith(`${m.container}/`) ? m.host + acc.slice(m.container.length) : acc, a));
            return await exec([local, ...hostArgs], { ...kongEnv(run), KONG_VERSION: run.version, ...secretEnv(run) }, timeoutSeconds);
        }
        return await exec(kongDockerArgv(run, args, mounts), { ...secretEnv(run), ...dockerEnv(run.docker) }, timeoutSeconds);
    } catch (e) {
        if (e instanceof StepError) throw e;
        throw new StepError(`cannot run kong ${args.join(" ")} (${run.image}): ${(e as Error).message}`);
    }
}

/** What `kong migrations list` reports through its exit code (kong-facts §1.2). */
export type MigrationState = "up-to-date" | "needs-bootstrap" | "pending" | "new";

export async function migrationsList(run: KongRun): Promise<{ state: MigrationState; output: string }> {
    const r = await runKong(run, ["migrations", "list"], 120);
    const output = (r.stdout + r.stderr).trim();
    const state = listState(r.code);
    if (!state) throw new StepError(`kong migrations list (${run.image}) failed with exit ${r.code}:\n${output}`);
    return { state, output };
}

export interface MigrationStatus {
    needs_bootstrap: boolean;
    executed_migrations?: Array<{ subsystem: string; migrations: string[] }>;
    pending_migrations?: Array<{ subsystem: string; migrations: string[] }>;
    new_migrations?: Array<{ subsystem: string; migrations: string[] }>;
}

/** `kong migrations status` (3.0+): the same state as JSON, with pending and new told apart. */
export async function migrationsStatus(run: KongRun): Promise<MigrationStatus> {
    const r = await runKong(run, ["migrations", "status"], 120);
    if (r.code !== 0) throw new StepError(`kong migrations status (${run.image}) failed with exit ${r.code}:\n${(r.stdout + r.stderr).trim()}`);
    const line = r.stdout.split("\n").map((l) => l.trim()).find((l) => l.startsWith("{"));
    if (!line) throw new StepError(`kong migrations status (${run.image}) printed no JSON:\n${r.stdout}`);
    return JSON.parse(line) as MigrationStatus;
}

/**
 * One `kong` command of a sequence run in one container. It runs only when the command before it
 * ran and exited with one of `when` (the first always runs).
 */
export interface KongCall {
    args: string[];
    when?: number[];
}

/** What one command of a sequence printed, its exit code, and its seconds inside the container. */
export interface KongCallResult {
    args: string[];
    code: number;
    output: string;
    seconds: number;
}

/** A sequence's results, with the seconds the container itself cost (start, removal). */
export interface KongSequence {
    results: KongCallResult[];
    containerSeconds: number;
}

const MARK = "kong-upgrade:exit";
const START = "kong-upgrade:start";

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The shell script of a sequence: each command, then a marker line with its exit code on stdout
 * and stderr (its output is the text between markers). A leading newline keeps the marker on its
 * own line when Kong's last line has none. docker-kong's entrypoint hands a command other than
 * `kong …` straight to exec, skipping its `<VAR>_FILE` expansion, so the script does that itself.
 */
export function kongScript(kong: string, calls: KongCall[]): string {
    const lines = [
        `for v in $(env | grep -o '^KONG_[A-Z0-9_]*_FILE=' | tr -d =); do n=\${v%_FILE}; eval "export $n=\\"\\$(cat \\"\\$$v\\")\\"; unset $v"; done`,
        `echo ${START}`,
    ];
    let close = "";
    calls.forEach((c, i) => {
        const run = `${kong} ${c.args.map(shq).join(" ")}; s=$?; printf '\\n${MARK} ${i} %s\\n' $s; printf '\\n${MARK} ${i} %s\\n' $s >&2`;
        if (i > 0 && c.when) {
            lines.push(`if ${c.when.map((w) => `[ $s -eq ${w} ]`).join(" || ")}; then`);
            close += "fi; ";
        }
        lines.push(run);
    });
    if (close) lines.push(close.trim());
    lines.push("exit 0");
    return lines.join("\n");
}

/** Splits a stream by the markers: the text before marker i is command i's. */
function segments(stream: string): Map<number, { code: number; text: string }> {
    const out = new Map<number, { code: number; text: string }>();
    let text: string[] = [];
    for (const line of stream.split("\n")) {
        const m = new RegExp(`^${MARK} (\\d+) (\\d+)$`).exec(line);
        if (m) {
            out.set(Number(m[1]), { code: Number(m[2]), text: text.join("\n") });
            text = [];
        } else if (line !== START) {
            text.push(line);
        }
    }
    return out;
}

/**
 * Runs `kong <args>` for each call in ONE container (one Kong image start, one container
 * created and removed), or one local shell with KONG_UPGRADE_KONG_COMMAND. Each command's output
 * and exit code come back apart; each is timed as its marker arrives.
 */
export async function runKongSequence(run: KongRun, calls: KongCall[], timeoutSeconds = 0): Promise<KongSequence> {
    const local = process.env.KONG_UPGRADE_KONG_COMMAND;
    const script = kongScript(local ? shq(local) : "kong", calls);
    const t0 = Date.now();
    const marks: number[] = [];
    let pending = "";
    const onStdout = (chunk: string) => {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const l of lines) if (l === START || l.startsWith(`${MARK} `)) marks.push(Date.now());
    };
    let r: ExecResult;
    try {
        r = local
            ? await exec(["/bin/sh", "-c", script], { ...kongEnv(run), KONG_VERSION: run.version, ...secretEnv(run) }, timeoutSeconds, onStdout)
            : await exec(kongShellArgv(run, script), { ...secretEnv(run), ...dockerEnv(run.docker) }, timeoutSeconds, onStdout);
    } catch (e) {
        throw new StepError(`cannot run kong (${run.image}): ${(e as Error).message}`);
    }
    const end = Date.now();
    const out = segments(r.stdout);
    const err = segments(r.stderr);
    const results: KongCallResult[] = [];
    for (let i = 0; i < calls.length && out.has(i); i++) {
        const text = `${out.get(i)!.text}\n${err.get(i)?.text ?? ""}`.trim();
        results.push({ args: calls[i].args, code: out.get(i)!.code, output: text, seconds: (marks[i + 1] - marks[i]) / 1000 });
    }
    if (results.length === 0 || r.code !== 0) {
        // The container did not get through the script: docker's own error (no such image, network).
        throw new StepError(`cannot run kong ${calls[0].args.join(" ")} (${run.image}): exit ${r.code}:\n${(r.stdout + r.stderr).trim()}`);
    }
    const inside = results.reduce((a, x) => a + x.seconds, 0);
    return { results, containerSeconds: Math.max(0, (end - t0) / 1000 - inside) };
}

/** `docker run … <image> sh -c <script>`: kongDockerArgv's container with a shell as its command. */
export function kongShellArgv(run: KongRun, script: string): string[] {
    const argv = kongDockerArgv(run, []);
    argv.pop(); // "kong"
    return [...argv, "sh", "-c", script];
}

/** A `kong migrations list` result read as a state (kong-facts §1.2); undefined for any other exit. */
export function listState(code: number): MigrationState | undefined {
    return ({ 0: "up-to-date", 3: "needs-bootstrap", 4: "pending", 5: "new" } as Record<number, MigrationState>)[code];
}
