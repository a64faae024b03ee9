// Which KONG_* settings an operator may add (kong.env, kong.secretEnv), and where the others go:
// the program sets the database connection, plugins, role, cluster and listeners itself (its
// steps and checks rely on them), and a setting that looks secret belongs in kong.secretEnv,
// which never lands in plain state, step specs or command lines.

/** Kong's database settings and the database.* field that sets each. */
const PG_FIELDS: Record<string, string> = {
    KONG_PG_HOST: "database.host (and database.containerHost)",
    KONG_PG_PORT: "database.port",
    KONG_PG_USER: "database.user",
    KONG_PG_PASSWORD: "database.password (a secret)",
    KONG_PG_DATABASE: "database.name",
    KONG_PG_SCHEMA: "database.schema",
    KONG_PG_SSL: "database.sslmode",
    KONG_PG_SSL_VERIFY: "database.sslmode (verify-ca or verify-full) and database.sslRootCert",
    KONG_PG_SSL_REQUIRED: "database.sslmode",
};

/** Connection tuning Kong reads from pg_* settings; the program leaves these to the operator. */
const PG_TUNING = new Set(["KONG_PG_TIMEOUT", "KONG_PG_MAX_CONCURRENT_QUERIES", "KONG_PG_SEMAPHORE_TIMEOUT",
    "KONG_PG_KEEPALIVE_TIMEOUT", "KONG_PG_POOL_SIZE", "KONG_PG_BACKLOG"]);

/** Other settings the program derives from its own fields. */
const MANAGED: Record<string, string> = {
    KONG_DATABASE: "", // postgres; off on hybrid data planes
    KONG_PLUGINS: "kong.plugins",
    KONG_LICENSE_DATA: "kong.license (a secret)",
    KONG_ROLE: "kong.role",
    KONG_CLUSTER_CERT: "kong.clusterCert",
    KONG_CLUSTER_CERT_KEY: "kong.clusterCertKey",
    KONG_CLUSTER_CONTROL_PLANE: "kong.clusterControlPlane",
};

/** Names that hold a secret by Kong's naming: passwords, keys, tokens, session and auth configuration. */
const SECRET_NAME = /_(PASSWORD|KEY|SECRET|TOKEN|SESSION_CONF|AUTH_CONF)$/;

export function looksSecret(name: string): boolean {
    return SECRET_NAME.test(name);
}

/**
 * The problem with `name` under `field` ("kong.env" or "kong.secretEnv"), or undefined when the
 * program passes it through as given.
 */
export function kongSettingProblem(field: "kong.env" | "kong.secretEnv", name: string): string | undefined {
    const key = `${field}.${name}`;
    if (!/^KONG_[A-Z0-9_]+$/.test(name)) {
        return `${key}: only KONG_* settings belong here (Kong reads every kong.conf property as KONG_<NAME>, in upper case): rename or remove it`;
    }
    if (name in PG_FIELDS) return `${key} is managed by the program: remove it and set ${PG_FIELDS[name]} instead`;
    if (name.startsWith("KONG_PG_RO_")) {
        return `${key} configures a read-only replica for Kong, which this program does not manage (migrations, snapshots and ` +
            `restores act on the database.* server only): remove it`;
    }
    if (name.startsWith("KONG_PG_") && !PG_TUNING.has(name)) {
        return `${key} is managed by the program, which sets Kong's database connection from database.*: remove it ` +
            `(connection tuning such as ${[...PG_TUNING].slice(0, 2).join(", ")} is allowed)`;
    }
    if (name in MANAGED) {
        return MANAGED[name] === ""
            ? `${key} is managed by the program (postgres; off on hybrid data planes): remove it`
            : `${key} is managed by the program: remove it and set ${MANAGED[name]} instead`;
    }
    if (name.endsWith("_LISTEN")) {
        return `${key} is managed by the program: it sets Kong's listeners itself and publishes them on kong.ports, and its health ` +
            `checks and verify use them; remove it and choose host ports under kong.ports (and addresses with kong.adminAddress, kong.proxyAddress)`;
    }
    if (field === "kong.env" && looksSecret(name)) {
        return `${key} looks secret, and kong.env is kept in plain text (stack state, step specs, the preview): remove it from kong.env ` +
            `and set it in kong.secretEnv instead (pulumi config set --secret --path kong.secretEnv.${name} …)`;
    }
    return undefined;
}
