import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as postgresql from "@pulumi/postgresql";
import * as pulumi from "@pulumi/pulumi";
import { DatabaseSettings, EMBEDDED_DATABASE_ALIAS } from "./config";
import { stepCommandLine } from "./step";
import { parseStepResult } from "../steps/lib/log";
import { DbTarget, SECRET_ENV, SPEC_ENV, StepSpec } from "../steps/lib/spec";

export interface SharedDatabaseArgs {
    /** Validated database settings (see config.ts for every default). */
    settings: DatabaseSettings;
    /** Kong's password; must be a secret Output. */
    password: pulumi.Input<string>;
    /**
     * Embedded only: the superuser's password, a secret Output, when configured. Default: generated
     * once by the `<name>-superuser` step and kept in state as a secret, never Kong's.
     */
    adminPassword?: pulumi.Input<string>;
    /** Docker network the embedded server joins (alias `kong-database`). */
    networkName: pulumi.Input<string>;
    /** Stack name, used in container and volume names. */
    stack: string;
    /** The Docker provider of the host it runs on. Default: the default provider. */
    provider?: docker.Provider;
}

/**
 * The PostgreSQL database clusters X and Y share. Embedded: a PostgreSQL container on the
 * stack's private network, published on 127.0.0.1 only, with Kong's role and database managed
 * through the postgresql provider. External: nothing to create; the server is the operator's.
 * The data volume and Kong's database are retained on delete: the program never drops data.
 */
export class SharedDatabase extends pulumi.ComponentResource {
    /** Resources later steps wait for: the database is ready once these exist. */
    public readonly ready: pulumi.Resource[];

    constructor(name: string, args: SharedDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kong-upgrade:index:SharedDatabase", name, {}, opts);
        const s = args.settings;
        if (s.mode === "external") {
            // The operator's server: Kong's role changes its own password when database.password changes.
            const target: DbTarget = { host: s.host, port: s.port, database: s.name, user: s.user, sslmode: s.sslmode, sslRootCert: s.sslRootCert };
            this.ready = [passwordStep(`${name}-password`, { step: "password", db: target, verifyOnCreate: "always", hint: "database.password" },
                args.password, { parent: this })];
            this.registerOutputs({});
            return;
        }
        const on = { parent: this, provider: args.provider };
        // The superuser's password, before the server: the server is initialised with it once; a
        // later change is made by this step, as the superuser, with the password it had.
        const superuser = passwordStep(`${name}-superuser`, {
            step: "password", verifyOnCreate: "if-running",
            db: { host: "127.0.0.1", port: s.port, database: "postgres", user: "postgres", sslmode: "disable" },
            hint: "database.adminPassword; stacks created before it was generated used database.password",
        }, args.adminPassword, { parent: this });
        const adminPassword = pulumi.secret(superuser.stdout.apply((out: string | undefined) => {
            if (out === undefined) return ""; // only under mocks, which run no command
            const p = parseStepResult<{ password?: string }>(out)?.password;
            if (!p) throw new Error("the database-superuser step printed no password");
            return p;
        }));
        const image = new docker.RemoteImage(`${name}-image`, { name: s.image, keepLocally: true }, on);
        const volume = new docker.Volume(`${name}-data`, { name: `kong-upgrade-${args.stack}-pgdata` },
            { ...on, retainOnDelete: true });
        const server = new docker.Container(`${name}-server`, {
            name: `${args.stack}-kong-database`,
            image: image.imageId,
            envs: [
                "POSTGRES_USER=postgres",
                pulumi.interpolate`POSTGRES_PASSWORD=${adminPassword}`,
                "POSTGRES_DB=postgres",
            ],
            networksAdvanced: [{ name: args.networkName, aliases: [EMBEDDED_DATABASE_ALIAS] }],
            ports: [{ internal: 5432, external: s.port, ip: "127.0.0.1" }],
            volumes: [{ volumeName: volume.name, containerPath: "/var/lib/postgresql/data" }],
            healthcheck: { tests: ["CMD-SHELL", "pg_isready -U postgres -d postgres"], interval: "2s", timeout: "5s", retries: 30 },
            wait: true,
            waitTimeout: 120,
            restart: "unless-stopped",
            destroyGraceSeconds: 30,
            labels: [{ label: "kong-upgrade.stack", value: args.stack }, { label: "kong-upgrade.role", value: "database" }],
        }, {
            ...on,
            // POSTGRES_PASSWORD acts only on an empty data folder, and the volume is kept: a new
            // password is set by the superuser step, and must not replace the server.
            ignoreChanges: ["envs"],
        });
        const provider = new postgresql.Provider(`${name}-provider`, {
            host: "127.0.0.1",
            port: s.port,
            username: "postgres",
            password: adminPassword,
            database: "postgres",
            sslmode: "disable",
            superuser: true,
        }, { parent: this, dependsOn: [server] });
        // CREATEDB lets Kong's role take and restore snapshots of the database it owns.
        const role = new postgresql.Role(`${name}-role`, {
            name: s.user,
            login: true,
            password: args.password,
            createDatabase: true,
        }, { parent: this, provider });
        const database = new postgresql.Database(`${name}-kong`, {
            name: s.name,
            owner: role.name,
        }, { parent: this, provider, retainOnDelete: true });
        this.ready = [database];
        this.registerOutputs({});
    }
}

/**
 * A role's password as a Command of the `password` step program. Created: records the password
 * (given, or generated when `password` is undefined) after checking the server accepts it.
 * Updated with another password: the role changes its own password, authenticated with the
 * previous one, which the step reads from its previous stdout (addPreviousOutputInEnv). The
 * stdout holds the password: it is a secret output, and never logged (logging: stderr).
 */
function passwordStep(name: string, spec: Extract<StepSpec, { step: "password" }>, password: pulumi.Input<string> | undefined,
    opts: pulumi.CustomResourceOptions): command.local.Command {
    const environment: Record<string, pulumi.Input<string>> = { [SPEC_ENV]: JSON.stringify(spec) };
    if (password !== undefined) environment[SECRET_ENV.rolePassword] = pulumi.secret(password);
    return new command.local.Command(name, {
        create: stepCommandLine("password"),
        update: stepCommandLine("password"),
        environment,
        logging: "stderr",
        addPreviousOutputInEnv: true,
    }, { ...opts, additionalSecretOutputs: ["stdout", "stderr"] });
}
