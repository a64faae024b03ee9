import * as docker from "@pulumi/docker";
import * as postgresql from "@pulumi/postgresql";
import * as pulumi from "@pulumi/pulumi";
import { DatabaseSettings, EMBEDDED_DATABASE_ALIAS } from "./config";

export interface SharedDatabaseArgs {
    /** Validated database settings (see config.ts for every default). */
    settings: DatabaseSettings;
    /** Kong's password; must be a secret Output. */
    password: pulumi.Input<string>;
    /** Embedded only: the superuser's password; must be a secret Output. */
    adminPassword: pulumi.Input<string>;
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
            this.ready = [];
            this.registerOutputs({});
            return;
        }
        const on = { parent: this, provider: args.provider };
        const image = new docker.RemoteImage(`${name}-image`, { name: s.image, keepLocally: true }, on);
        const volume = new docker.Volume(`${name}-data`, { name: `kong-upgrade-${args.stack}-pgdata` },
            { ...on, retainOnDelete: true });
        const server = new docker.Container(`${name}-server`, {
            name: `${args.stack}-kong-database`,
            image: image.imageId,
            envs: [
                "POSTGRES_USER=postgres",
                pulumi.interpolate`POSTGRES_PASSWORD=${args.adminPassword}`,
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
        }, on);
        const provider = new postgresql.Provider(`${name}-provider`, {
            host: "127.0.0.1",
            port: s.port,
            username: "postgres",
            password: args.adminPassword,
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
