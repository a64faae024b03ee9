// Where snapshots live and what they record about themselves.
//
// A snapshot knows whose it is: its record names the stack, the server (system_identifier), the
// full source database, X, Y, the hops and the upgrade's own random id. The record lives in three
// places: Pulumi state (the snapshot step's stdout, secret), and at rest beside the snapshot — the
// COMMENT of a template snapshot database (a database of ours, which holds no operator comment),
// or `<name>.json` beside a dump. Rollback trusts the record in state first; the one at rest is
// only read to find a snapshot named with `upgrade.snapshot`, and checked against its own stack,
// server and database before it is used.
//
// Names: `<db>_<hash>_snap_<X>_to_<Y>_<UTC time>`, built to fit PostgreSQL's 63 bytes. `<hash>`
// is 8 hex digits of SHA-256(stack, database), so two databases sharing a long prefix (or two
// stacks sharing one database name) never share snapshot names, and `<db>` is cut to what fits.
import { createHash } from "crypto";
import { chmodSync, closeSync, createReadStream, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, writeSync } from "fs";
import * as path from "path";
import { crashPoint } from "./crash";
import type { DatabaseProps, SchemaMetaRow } from "./db";
import { progress } from "./log";

/** PostgreSQL cuts identifiers at 63 bytes (NAMEDATALEN - 1) with only a NOTICE. */
export const MAX_IDENT_BYTES = 63;

export interface SnapshotRecord {
    kind: "kong-upgrade-snapshot";
    /** Database name (template) or file stem (dump). */
    snapshot: string;
    strategy: "template" | "dump";
    stack: string;
    /** pg_control_system().system_identifier; undefined when the role could not read it (said in `serverNote`). */
    systemIdentifier?: string;
    serverNote?: string;
    /** Full name of the database it was taken of. */
    source: string;
    from: string;
    to: string;
    hops: string[];
    /** This upgrade's own id, random, made by the snapshot step. */
    upgradeId: string;
    takenAt: string;
    sizeBytes: number;
    schemaMeta: SchemaMetaRow[];
    /** Row count of every table of Kong's schema, as found in the catalog. */
    entityCounts: Record<string, number>;
    /** What the database carries outside itself (settings, ACL, comment…), re-applied on restore. */
    database: DatabaseProps;
    /** dump only: file and its SHA-256 (also kept in Pulumi state). */
    location?: string;
    sha256?: string;
    /** `kong config db_export` written beside the snapshot, when asked for */
    declarative?: { location: string; sha256: string };
}

/** What a restore writes on the database it set aside (that database's own comment is kept inside). */
export interface SetAsideNote {
    kind: "kong-upgrade-set-aside";
    was: string;
    replacedBy: string;
    upgradeId: string;
    at: string;
    /** The set-aside database's COMMENT before we wrote this note. */
    comment: string | null;
    snapshot: SnapshotRecord;
}

export function shortHash(...parts: string[]): string {
    return createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 8);
}

function slug(v: string): string {
    return v.replace(/[^0-9A-Za-z]+/g, "_");
}

/** Cuts `text` to at most `bytes` UTF-8 bytes without splitting a character. */
function cutBytes(text: string, bytes: number): string {
    let out = "";
    for (const ch of text) {
        if (Buffer.byteLength(out + ch) > bytes) break;
        out += ch;
    }
    return out;
}

/** Length of the UTC time that completes a snapshot name (stamp(): 20261127130745). */
export const STAMP_LENGTH = 14;

/**
 * The prefix of one upgrade's snapshots of one stack's database. The database part is cut so
 * that prefix + time fits 63 bytes; the hash keeps every (stack, database) apart whatever is cut.
 */
export function snapshotPrefix(stack: string, database: string, from: string, to: string): string {
    const tail = `_${shortHash(stack, database)}_snap_${slug(from)}_to_${slug(to)}_`;
    const room = MAX_IDENT_BYTES - STAMP_LENGTH - Buffer.byteLength(tail);
    if (room < 1) throw new Error(`internal: versions ${from}, ${to} leave no room in a 63-byte snapshot name`);
    return `${cutBytes(database, Math.min(room, 24))}${tail}`;
}

/** What the canary's trial of a template snapshot adds to its clone's name (steps/canary.ts trialName). */
export const CANARY_TRIAL_SUFFIX = "_snap";

/**
 * The canary's clone of one stack's database for one upgrade: `<db>_<hash>_canary_<X>_to_<Y>`,
 * the hash as in snapshot names, so two databases sharing a long prefix (or two stacks sharing a
 * database name) never share a clone. Leaves room for the trial suffix within 63 bytes.
 */
export function canaryCloneName(stack: string, database: string, from: string, to: string): string {
    const tail = `_${shortHash(stack, database)}_canary_${slug(from)}_to_${slug(to)}`;
    const room = MAX_IDENT_BYTES - CANARY_TRIAL_SUFFIX.length - Buffer.byteLength(tail);
    if (room < 1) throw new Error(`internal: versions ${from}, ${to} leave no room in a 63-byte canary name`);
    return `${cutBytes(database, Math.min(room, 24))}${tail}`;
}

/** A database name built from `base` and a suffix that must survive: the base is cut, never the suffix. */
export function fitName(base: string, suffix: string): string {
    const room = MAX_IDENT_BYTES - Buffer.byteLength(suffix);
    return `${cutBytes(base, room)}${suffix}`;
}

/** Refuses a name PostgreSQL would cut silently. */
export function checkNameLength(name: string): void {
    if (Buffer.byteLength(name) > MAX_IDENT_BYTES) {
        throw new Error(`database name ${name} is ${Buffer.byteLength(name)} bytes; PostgreSQL would cut it to 63`);
    }
}

/** The temporary database a copy or dump restore fills before the swap: derived from the snapshot, ours only. */
export function incomingName(snapshot: string): string {
    return snapshot.includes("_snap_") ? snapshot.replace("_snap_", "_rest_") : fitName(snapshot, "_rest");
}

/** The dump folder of one stack's database: `<dumpDirectory>/<stack>/<database>`; dumps of others never mix. */
export function dumpFolder(directory: string, stack: string, database: string): string {
    return path.join(path.resolve(directory), slug(stack) || "_", `${slug(database)}_${shortHash(stack, database)}`);
}

/** Creates the dump folder (and its parents we create) with mode 0700: dumps hold every credential in Kong's database. */
export function ensurePrivateFolder(folder: string): void {
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    chmodSync(folder, 0o700);
}

/** Writes `file` atomically with mode 0600: a temporary file, fsync, rename. A reader sees the old file or the whole new one. */
export function writePrivateFileAtomic(file: string, content: string): void {
    const tmp = `${file}.tmp-${process.pid}`;
    const fd = openSync(tmp, "w", 0o600);
    try {
        writeSync(fd, content);
        fsyncSync(fd);
    } finally {
        closeSync(fd);
    }
    crashPoint();
    renameSync(tmp, file);
    crashPoint();
}

/** The records in a dump folder; an unreadable one is skipped with a warning naming it. */
export function dumpRecords(folder: string): SnapshotRecord[] {
    if (!existsSync(folder)) return [];
    const out: SnapshotRecord[] = [];
    for (const f of readdirSync(folder).filter((n) => n.endsWith(".json")).sort()) {
        const file = path.join(folder, f);
        try {
            const r = JSON.parse(readFileSync(file, "utf8")) as SnapshotRecord;
            if (r.kind === "kong-upgrade-snapshot" && typeof r.snapshot === "string") out.push(r);
            else progress(`warning: ${file} is not a snapshot record; skipped`);
        } catch (e) {
            progress(`warning: snapshot record ${file} cannot be read (${(e as Error).message}); skipped`);
        }
    }
    return out;
}

export function sha256File(file: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const h = createHash("sha256");
        createReadStream(file).on("data", (d) => h.update(d)).on("end", () => resolve(h.digest("hex"))).on("error", reject);
    });
}
