// pg_dump / pg_restore for `dump` snapshots, in a container of a PostgreSQL image (the product),
// or with the local client tools when KONG_UPGRADE_PG_TOOLS=local (tests; same argv after the
// image). PGPASSWORD travels by name in the environment; PGSSLMODE (and PGSSLROOTCERT for
// verify-ca/verify-full) follow database.sslmode, since libpq's own default `prefer` verifies nothing.
import * as path from "path";
import { exec, ExecResult } from "./exec";
import { dockerBinary, dockerEnv } from "./docker";
import { StepError } from "./log";
import { databasePassword } from "./secrets";
import { DbTarget, DumpTarget, PG_CA_MOUNT } from "./spec";

const MOUNT = "/snapshots";

/** argv of `tool args…` where file arguments are relative to `folder` (the stack's dump folder). */
export function pgToolArgv(dump: DumpTarget, tool: "pg_dump" | "pg_restore", args: (string | { file: string })[], folder = dump.directory): string[] {
    const local = process.env.KONG_UPGRADE_PG_TOOLS === "local";
    const dir = path.resolve(folder);
    const resolved = args.map((a) => typeof a === "string" ? a : path.posix.join(local ? dir : MOUNT, a.file));
    if (local) return [tool, ...resolved];
    const ca = dump.sslRootCert ? ["-v", `${path.resolve(dump.sslRootCert)}:${PG_CA_MOUNT}:ro`] : [];
    const ssl = Object.keys(pgSslEnv(dump)).flatMap((k) => ["-e", k]);
    // As the user running the step: the dump belongs to it, so it can be made 0600 (it holds every credential in Kong's database).
    const user = process.getuid && process.getgid ? ["--user", `${process.getuid()}:${process.getgid()}`] : [];
    return [dockerBinary(), "run", "--rm", "--network", dump.network, "-v", `${dir}:${MOUNT}`, ...ca, ...user, "-e", "PGPASSWORD", ...ssl,
        dump.image, tool, ...resolved];
}

/** libpq's TLS settings for the tools: the CA as the tool sees it (its container's mount, or the local file). */
export function pgSslEnv(dump: DumpTarget): Record<string, string> {
    const env: Record<string, string> = { PGSSLMODE: dump.sslmode ?? "disable" };
    if (dump.sslRootCert) {
        env.PGSSLROOTCERT = process.env.KONG_UPGRADE_PG_TOOLS === "local" ? path.resolve(dump.sslRootCert) : PG_CA_MOUNT;
    }
    return env;
}

/** Connection flags as the tool sees the server: from its container, or locally. */
export function pgConnArgs(dump: DumpTarget, db: DbTarget, database: string): string[] {
    const local = process.env.KONG_UPGRADE_PG_TOOLS === "local";
    return ["-h", local ? db.host : dump.host, "-p", String(local ? db.port : dump.port), "-U", db.user, "-d", database];
}

export async function runPgTool(dump: DumpTarget, argv: string[]): Promise<ExecResult> {
    const r = await exec(argv, { PGPASSWORD: databasePassword(), ...pgSslEnv(dump), ...dockerEnv(dump.docker) });
    if (r.code !== 0) throw new StepError(`${argv.includes("pg_dump") ? "pg_dump" : "pg_restore"} failed (exit ${r.code}):\n${(r.stdout + r.stderr).trim()}`);
    return r;
}
