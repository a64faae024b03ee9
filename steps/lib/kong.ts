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
    const states: Record<number, MigrationState> = { 0: "up-to-date", 3: "needs-bootstrap", 4: "pending", 5: "new" };
    const state = states[r.code];
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
