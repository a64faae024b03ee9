// A PostgreSQL role's password, owned by the stack: created once (given, or generated), and
// rotated by the role itself, authenticated with the password it had, so no superuser is needed
// and the new password is accepted by the server before anything else uses it.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "crypto";
import { Client } from "pg";
import { connect, quoteLiteral } from "./lib/db";
import { StepError, parseStepResult, progress } from "./lib/log";
import { PREVIOUS_STDOUT_ENV, SECRET_ENV, StepSpec } from "./lib/spec";

type PasswordSpec = Extract<StepSpec, { step: "password" }>;

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, 4096 iterations,
 * as psql's \password sends it): the server, and any statement log, never sees the password.
 * ASCII passwords only: for others PostgreSQL applies SASLprep first, so they are sent as is.
 */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4096): string {
    const salted = pbkdf2Sync(Buffer.from(password, "utf8"), salt, iterations, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

const isAuthFailure = (e: unknown) => e instanceof StepError && e.message.includes("password authentication failed");
const isUnreachable = (e: unknown) => e instanceof StepError && e.message.startsWith("cannot reach PostgreSQL");

async function login(spec: PasswordSpec, password: string): Promise<Client> {
    return connect(spec.db, password, spec.db.database);
}

export async function password(spec: PasswordSpec): Promise<{ password: string; rotated: boolean }> {
    const who = `role ${spec.db.user} at ${spec.db.host}:${spec.db.port}`;
    const given = process.env[SECRET_ENV.rolePassword];
    const previous = parseStepResult<{ password?: string }>(process.env[PREVIOUS_STDOUT_ENV])?.password;
    const next = given ?? previous ?? randomBytes(24).toString("base64url");
    if (previous === undefined || previous === next) {
        if (spec.verifyOnCreate && previous === undefined) await checkExisting(spec, next, who);
        progress(`${who}: password ${given === undefined && previous === undefined ? "generated" : "unchanged"}`);
        return { password: next, rotated: false };
    }
    let client: Client;
    try {
        client = await login(spec, previous);
    } catch (e) {
        if (!isAuthFailure(e)) throw e;
        // A rerun after the change, or an operator who changed it first: the new one must work.
        await login(spec, next).then((c) => c.end()).catch((e2: unknown) => {
            if (isAuthFailure(e2)) throw new StepError(`PostgreSQL accepts neither the previous nor the new password of ${who}; ` +
                `change the role's password in the server to the new one (ALTER ROLE ${spec.db.user} PASSWORD …), then run again`);
            throw e2;
        });
        progress(`${who}: the server already accepts the new password`);
        return { password: next, rotated: false };
    }
    try {
        const secret = /^[\x20-\x7e]*$/.test(next) ? scramVerifier(next) : next;
        // The role changes its own password: no superuser needed. Sessions already open stay open.
        await client.query(`ALTER ROLE CURRENT_USER PASSWORD ${quoteLiteral(secret)}`);
    } finally {
        await client.end();
    }
    await login(spec, next).then((c) => c.end()).catch((e: unknown) => {
        throw new StepError(`${who}: the password was changed but the new one is refused (${(e as Error).message}); ` +
            `check the server's password_encryption and pg_hba.conf`);
    });
    progress(`${who}: password changed; the server accepts the new one`);
    return { password: next, rotated: true };
}

/**
 * First run of the step: the password it is about to record must be the one the server has, or
 * every later step would fail with it. "if-running": a server not yet created is fine (the
 * embedded server is created after this step, with this password).
 */
async function checkExisting(spec: PasswordSpec, next: string, who: string): Promise<void> {
    try {
        await (await login(spec, next)).end();
    } catch (e) {
        if (isUnreachable(e) && spec.verifyOnCreate === "if-running") return;
        if (isAuthFailure(e)) {
            throw new StepError(`${who} exists with another password than the one configured (${spec.hint}); ` +
                `set the current one first, then change it to rotate`);
        }
        throw e;
    }
}
