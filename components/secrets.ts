// Rules for Kong settings that hold secrets: which `kong.env` names look secret (refused there,
// pointed to `kong.secretEnv`), and which names `kong.secretEnv` may carry. Pure functions.

/**
 * Kong settings whose value is a credential: passwords, keys, secrets, tokens, and the session
 * configurations that embed a secret (`KONG_ADMIN_GUI_SESSION_CONF`, `KONG_PORTAL_SESSION_CONF`).
 * `KONG_*_CERT_KEY`/`KONG_SSL_CERT_KEY` hold a PEM private key (or its path: then secretEnv costs nothing).
 */
const SECRET_LOOKING = /(_PASSWORD|_PASSWD|_KEY|_SECRET|_SECRETS|_TOKEN|_CREDENTIALS?|_SESSION_CONF|_LICENSE_DATA)$/;

export function looksSecret(name: string): boolean {
    return SECRET_LOOKING.test(name);
}

/**
 * Names the program manages itself or the step programs use; a secret setting of the same name
 * would be overwritten or would collide with the steps' own environment.
 */
const RESERVED = /^KONG_(PG_|DATABASE$|PLUGINS$|LICENSE_DATA$|UPGRADE_|LUA_SSL_TRUSTED_CERTIFICATE$|CLUSTER_CERT(_KEY)?$|ROLE$)/;

/** Problems with `kong.secretEnv` (names only; values are secrets and never quoted). */
export function secretEnvProblems(secretEnv: Record<string, unknown>, env: Record<string, unknown>): string[] {
    const problems: string[] = [];
    for (const [name, value] of Object.entries(secretEnv)) {
        if (!/^KONG_[A-Z0-9_]+$/.test(name)) {
            problems.push(`kong.secretEnv.${name}: only KONG_* settings belong here (Kong reads every kong.conf property as KONG_<NAME>)`);
        } else if (RESERVED.test(name)) {
            problems.push(`kong.secretEnv.${name} is managed by the program; set it through database.*, kong.license or kong.clusterCert instead`);
        } else if (name in env) {
            problems.push(`kong.${name} is set in both kong.env and kong.secretEnv; keep it in kong.secretEnv only`);
        } else if (typeof value !== "string" || value === "") {
            problems.push(`kong.secretEnv.${name} must be a non-empty string`);
        }
    }
    return problems;
}

/** The message for a secret-looking `kong.env` key. */
export function secretInEnvProblem(name: string): string {
    return `kong.env.${name} looks like a secret, and kong.env is plain text in every step spec, docker command line and the state; ` +
        `move it to kong.secretEnv: pulumi config set --secret --path kong.secretEnv.${name} <value> ` +
        `(and pulumi config rm --path kong.env.${name})`;
}
