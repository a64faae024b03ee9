// Kong's migration state read from the database instead of from a `kong migrations list`
// container. `list` starts Kong (a container and a Lua start-up: seconds) to compute a function of
// two things only: the migrations this Kong build loads (its catalog: per subsystem, the names in
// its code, for the plugins in KONG_PLUGINS) and the `schema_meta` rows. The catalog does not
// change while the database does, so it is learnt once before the downtime window (preflight's
// `kong migrations status` with each hop's image and settings) and the state inside the window
// is computed here, exactly as Kong 3.7.1 computes it:
//   - needs bootstrap: no table `schema_meta` in CURRENT_SCHEMA (postgres/connector.lua 738-761,
//     39-43: information_schema.tables);
//   - per loaded subsystem, per migration of its code (state.lua 232-286): executed if in the
//     row's `executed`, else pending if in `pending`, else — the row exists — missing if it is the
//     migration named `last_executed` (the only one for which `n` is set and `i >= n` is false),
//     else new; with no row for the subsystem, every migration is new. The code's order never
//     changes a result, so the catalog is kept as names per subsystem;
//   - `list`'s exit code (cmd/migrations.lua 105-152): 3 needs bootstrap, 4 any pending (pending
//     wins over new), 5 any new, 0 otherwise. Rows of subsystems not loaded, and names not in the
//     catalog, count for nothing, as in Kong.
import { createHash } from "crypto";
import type { Client } from "pg";
import type { KongRun } from "./spec";
import type { MigrationState } from "./kong";
import { parseStepResult, progress } from "./log";
import { imageId } from "./docker";

/** Migration names per subsystem, as one Kong build with one KONG_PLUGINS loads them. */
export type Catalog = Record<string, string[]>;

/** A catalog and what it was learnt with: it is valid only for a run with the same fingerprint. */
export interface LearntCatalog {
    version: string;
    fingerprint: string;
    /** The image's id when preflight learnt it: a tag rebuilt since then is another image. */
    imageId?: string;
    subsystems: Catalog;
}

/** One `schema_meta` row (key 'schema_meta'). */
export interface SchemaMetaRow {
    subsystem: string;
    last_executed: string | null;
    executed: string[] | null;
    pending: string[] | null;
}

export interface ClassifiedState {
    state: MigrationState;
    executed: Catalog;
    pending: Catalog;
    new: Catalog;
    missing: Catalog;
}

/**
 * What decides a catalog: the image (its code), KONG_PLUGINS (which plugin subsystems load) and
 * the other settings (a custom plugin's path). The database is not part of it.
 */
export function catalogFingerprint(run: Pick<KongRun, "image" | "plugins" | "env" | "secretEnv" | "license">): string {
    const env = Object.fromEntries(Object.keys(run.env).sort().map((k) => [k, run.env[k]]));
    // Secret settings by name only (their values never leave the step's environment); the
    // license switches an Enterprise image's own subsystems on.
    const secret = [...(run.secretEnv ?? [])].sort();
    return createHash("sha256").update(JSON.stringify({ image: run.image, plugins: run.plugins, env, secret, license: run.license ?? false }))
        .digest("hex").slice(0, 32);
}

/**
 * The id of the image a run's containers start from, or undefined where Kong runs locally (the
 * test seam KONG_UPGRADE_KONG_COMMAND) or the image is not there (then `docker run` says so).
 */
export async function imageIdOf(run: KongRun): Promise<string | undefined> {
    if (process.env.KONG_UPGRADE_KONG_COMMAND) return undefined;
    return imageId(run.image, run.docker);
}

/** The catalog in a `kong migrations status` result: every name it classified, whatever the class. */
export function catalogFromStatus(status: Record<string, unknown>): Catalog {
    const out: Catalog = {};
    for (const key of ["executed_migrations", "pending_migrations", "new_migrations", "missing_migrations"]) {
        const entries = status[key];
        if (!Array.isArray(entries)) continue;
        for (const e of entries as Array<{ subsystem?: unknown; migrations?: unknown }>) {
            if (typeof e.subsystem !== "string" || !Array.isArray(e.migrations)) continue;
            const names = (e.migrations as unknown[]).map((m) => typeof m === "string" ? m : (m as { name?: unknown })?.name)
                .filter((n): n is string => typeof n === "string");
            out[e.subsystem] = [...(out[e.subsystem] ?? []), ...names];
        }
    }
    return out;
}

/** Kong's classification of `rows` (undefined: no schema_meta table) against `catalog`. */
export function classify(rows: SchemaMetaRow[] | undefined, catalog: Catalog): ClassifiedState {
    const out: ClassifiedState = { state: "up-to-date", executed: {}, pending: {}, new: {}, missing: {} };
    const bySubsystem = new Map((rows ?? []).map((r) => [r.subsystem, r]));
    const put = (bucket: Catalog, subsystem: string, name: string) => { (bucket[subsystem] ??= []).push(name); };
    for (const [subsystem, names] of Object.entries(catalog)) {
        const row = bySubsystem.get(subsystem);
        for (const name of names) {
            if (!row) put(out.new, subsystem, name);
            else if ((row.executed ?? []).includes(name)) put(out.executed, subsystem, name);
            else if ((row.pending ?? []).includes(name)) put(out.pending, subsystem, name);
            else if (name === row.last_executed) put(out.missing, subsystem, name);
            else put(out.new, subsystem, name);
        }
    }
    const any = (c: Catalog) => Object.keys(c).length > 0;
    out.state = rows === undefined ? "needs-bootstrap" : any(out.pending) ? "pending" : any(out.new) ? "new" : "up-to-date";
    return out;
}

/** The gate read's statements: whether `schema_meta` exists as Kong looks for it, then its rows. */
export const SCHEMA_META_EXISTS_SQL = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema AND table_name = 'schema_meta'";
export const SCHEMA_META_ROWS_SQL = "SELECT subsystem, last_executed, executed, pending FROM schema_meta WHERE key = 'schema_meta'";

/** The rows Kong reads, or undefined where Kong would say the database needs bootstrapping. */
export async function readMigrationRows(c: Client): Promise<SchemaMetaRow[] | undefined> {
    const t = await c.query(SCHEMA_META_EXISTS_SQL);
    if ((t.rowCount ?? 0) === 0) return undefined;
    const r = await c.query<SchemaMetaRow>(SCHEMA_META_ROWS_SQL);
    return r.rows;
}

/** A state in `list`'s words, for messages (what `kong migrations list` would have printed, in short). */
export function describeState(s: ClassifiedState): string {
    const part = (label: string, c: Catalog) => Object.keys(c).length === 0 ? []
        : [`${label}: ${Object.entries(c).map(([k, v]) => `${k}: ${v.join(", ")}`).join("; ")}`];
    return [...part("executed", s.executed), ...part("pending", s.pending), ...part("new", s.new), ...part("missing", s.missing)].join("\n")
        || (s.state === "needs-bootstrap" ? "no schema_meta table: the database needs bootstrapping" : "no migrations");
}

/** The catalog preflight learnt for this run's version and settings, before the image is checked. */
export function learntCatalogFor(learnt: LearntCatalog[] | undefined, run: KongRun): LearntCatalog | undefined {
    const fp = catalogFingerprint(run);
    return learnt?.find((c) => c.version === run.version && c.fingerprint === fp);
}

/**
 * This run's catalog, if preflight learnt it with these settings and the image is still the one
 * it learnt it from; undefined otherwise (then the step asks Kong itself, with `list`).
 */
export async function usableCatalog(learnt: LearntCatalog[] | undefined, run: KongRun): Promise<LearntCatalog | undefined> {
    const catalog = learntCatalogFor(learnt, run);
    if (!catalog?.imageId) return catalog;
    const now = await imageIdOf(run);
    if (now === catalog.imageId) return catalog;
    progress(`${run.image} is not the image preflight learnt its migrations from (${catalog.imageId.slice(0, 19)}, now ${now?.slice(0, 19) ?? "absent"})`);
    return undefined;
}

/** The catalogs in the upgrade preflight's result (KONG_UPGRADE_CATALOGS), if any. */
export function learntCatalogs(raw: string | undefined): LearntCatalog[] | undefined {
    return raw ? parseStepResult<{ catalogs?: LearntCatalog[] }>(raw)?.catalogs : undefined;
}
