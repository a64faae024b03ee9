// The stand-in's migration catalog: per subsystem, ordered migrations, each with real DDL for
// `up` (run by `kong migrations up`) and, for some, a `teardown` (run by `finish`). A Kong of
// minor version V knows every migration whose `since` is at most V. Names follow Kong's scheme.

export interface Migration {
    name: string;
    /** First minor (major*100 + minor) that ships it. */
    since: number;
    up: string;
    teardown?: string;
}

export interface Subsystem {
    name: string;
    /** A plugin subsystem is loaded only when KONG_PLUGINS includes the plugin. */
    plugin: boolean;
    migrations: Migration[];
}

export const CATALOG: Subsystem[] = [
    {
        name: "core",
        plugin: false,
        migrations: [
            {
                name: "000_base", since: 300, up: `
                CREATE TABLE IF NOT EXISTS services (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
                    name text UNIQUE, protocol text NOT NULL DEFAULT 'http', host text NOT NULL, port integer NOT NULL DEFAULT 80,
                    path text, retries smallint DEFAULT 5, connect_timeout integer DEFAULT 60000, tags text[]);
                CREATE TABLE IF NOT EXISTS routes (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
                    name text UNIQUE, service_id uuid REFERENCES services (id) ON DELETE CASCADE,
                    protocols text[] DEFAULT '{http,https}', methods text[], hosts text[], paths text[],
                    strip_path boolean DEFAULT true, preserve_host boolean DEFAULT false, tags text[]);
                CREATE INDEX IF NOT EXISTS routes_service_id_idx ON routes (service_id);
                CREATE TABLE IF NOT EXISTS consumers (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(), username text UNIQUE, custom_id text UNIQUE, tags text[]);
                CREATE TABLE IF NOT EXISTS plugins (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(), name text NOT NULL,
                    consumer_id uuid REFERENCES consumers (id) ON DELETE CASCADE,
                    service_id uuid REFERENCES services (id) ON DELETE CASCADE,
                    route_id uuid REFERENCES routes (id) ON DELETE CASCADE,
                    config jsonb NOT NULL DEFAULT '{}', enabled boolean NOT NULL DEFAULT true, tags text[]);
                CREATE INDEX IF NOT EXISTS plugins_name_idx ON plugins (name);
                CREATE TABLE IF NOT EXISTS upstreams (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(), name text UNIQUE,
                    algorithm text DEFAULT 'round-robin', slots integer NOT NULL DEFAULT 10000, tags text[]);
                CREATE TABLE IF NOT EXISTS targets (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(),
                    upstream_id uuid REFERENCES upstreams (id) ON DELETE CASCADE, target text NOT NULL, weight integer NOT NULL DEFAULT 100, tags text[]);
                CREATE INDEX IF NOT EXISTS targets_upstream_id_idx ON targets (upstream_id);`,
            },
            { name: "017_300_to_310", since: 301, up: `ALTER TABLE upstreams ADD COLUMN IF NOT EXISTS use_srv_name boolean DEFAULT false;` },
            { name: "018_310_to_320", since: 302, up: `ALTER TABLE services ADD COLUMN IF NOT EXISTS enabled boolean DEFAULT true;` },
            { name: "019_320_to_330", since: 303, up: `ALTER TABLE routes ADD COLUMN IF NOT EXISTS request_buffering boolean DEFAULT true;` },
            { name: "020_330_to_340", since: 304, up: `ALTER TABLE routes ADD COLUMN IF NOT EXISTS expression text; ALTER TABLE routes ADD COLUMN IF NOT EXISTS priority bigint;` },
            {
                name: "021_340_to_350", since: 305,
                up: `ALTER TABLE services ADD COLUMN IF NOT EXISTS tls_verify boolean;`,
                teardown: `UPDATE services SET tls_verify = false WHERE tls_verify IS NULL;`,
            },
            {
                name: "022_350_to_360", since: 306,
                up: `ALTER TABLE consumers ADD COLUMN IF NOT EXISTS updated_at timestamptz;`,
                teardown: `UPDATE consumers SET updated_at = created_at WHERE updated_at IS NULL;`,
            },
            {
                name: "023_360_to_370", since: 307,
                up: `CREATE TABLE IF NOT EXISTS clustering_rpc_requests (id bigserial PRIMARY KEY, node_id uuid NOT NULL, payload json NOT NULL);
                     ALTER TABLE plugins ADD COLUMN IF NOT EXISTS instance_name text;`,
                teardown: `UPDATE plugins SET instance_name = name || '-' || left(id::text, 8) WHERE instance_name IS NULL;`,
            },
            // 3.8 ships no core migration: upgrading 3.7 → 3.8 finds nothing new in core.
            { name: "024_380_to_390", since: 309, up: `ALTER TABLE targets ADD COLUMN IF NOT EXISTS failover boolean DEFAULT false;` },
        ],
    },
    {
        name: "key-auth",
        plugin: true,
        migrations: [
            {
                name: "000_base_key_auth", since: 300, up: `
                CREATE TABLE IF NOT EXISTS keyauth_credentials (
                    id uuid PRIMARY KEY, created_at timestamptz DEFAULT now(), ttl timestamptz,
                    consumer_id uuid REFERENCES consumers (id) ON DELETE CASCADE, key text UNIQUE, tags text[]);
                CREATE INDEX IF NOT EXISTS keyauth_credentials_consumer_id_idx ON keyauth_credentials (consumer_id);`,
            },
        ],
    },
    {
        name: "rate-limiting",
        plugin: true,
        migrations: [
            {
                name: "000_base_rate_limiting", since: 300, up: `
                CREATE TABLE IF NOT EXISTS ratelimiting_metrics (
                    identifier text NOT NULL, period text NOT NULL, period_date timestamptz NOT NULL,
                    service_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
                    route_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000', value integer,
                    PRIMARY KEY (identifier, period, period_date, service_id, route_id));`,
            },
            {
                name: "006_350_to_360", since: 306,
                up: `ALTER TABLE ratelimiting_metrics ADD COLUMN IF NOT EXISTS ttl timestamptz;`,
                teardown: `UPDATE ratelimiting_metrics SET ttl = period_date + interval '1 day' WHERE ttl IS NULL;`,
            },
        ],
    },
];

/** major*100 + minor of "3.7.1" or "3.7.1.2". */
export function minorCode(version: string): number {
    const [major, minor] = version.split(".").map(Number);
    return major * 100 + minor;
}

/** Subsystems a Kong of `version` with KONG_PLUGINS=`plugins` loads, with the migrations it knows. */
export function knownSubsystems(version: string, plugins: string): Subsystem[] {
    const code = minorCode(version);
    const list = plugins.split(",").map((p) => p.trim());
    const loaded = (s: Subsystem) => !s.plugin || list.includes("bundled") || list.includes(s.name);
    return CATALOG.filter(loaded).map((s) => ({ ...s, migrations: s.migrations.filter((m) => m.since <= code) }));
}
