// Where snapshots live and what they record about themselves. A template snapshot is a
// database; its record is its COMMENT. A dump snapshot is `<name>.dump` in the dump folder; its
// record is `<name>.json` beside it. Names are `<prefix><UTC timestamp>`, so they never collide
// and sort oldest first.
import { createHash } from "crypto";
import { createReadStream, existsSync, readFileSync, readdirSync } from "fs";
import * as path from "path";
import { Client } from "pg";
import { SchemaMetaRow, databaseNote, databasesWithPrefix } from "./db";

export interface SnapshotNote {
    kind: "kong-upgrade-snapshot";
    snapshot: string;
    strategy: "template" | "dump";
    /** Database it was taken of. */
    source: string;
    from: string;
    to: string;
    takenAt: string;
    sizeBytes: number;
    schemaMeta: SchemaMetaRow[];
    entityCounts: Record<string, number>;
    /** dump only: file and its SHA-256 */
    location?: string;
    sha256?: string;
    /** `kong config db_export` written beside the snapshot, when asked for */
    declarative?: { location: string; sha256: string };
}

/** What a restore leaves on the live database. */
export interface RestoredNote {
    kind: "kong-upgrade-restored";
    restoredFrom: string;
    setAside: string;
    at: string;
    snapshot: SnapshotNote;
}

export async function templateSnapshots(c: Client, prefix: string): Promise<SnapshotNote[]> {
    const out: SnapshotNote[] = [];
    for (const name of await databasesWithPrefix(c, prefix)) {
        const note = await databaseNote<SnapshotNote>(c, name);
        if (note?.kind === "kong-upgrade-snapshot") out.push(note);
    }
    return out;
}

export function dumpSnapshots(directory: string, prefix: string): SnapshotNote[] {
    if (!existsSync(directory)) return [];
    return readdirSync(directory)
        .filter((f) => f.startsWith(prefix) && f.endsWith(".json"))
        .sort()
        .map((f) => JSON.parse(readFileSync(path.join(directory, f), "utf8")) as SnapshotNote)
        .filter((n) => n.kind === "kong-upgrade-snapshot");
}

export function sha256File(file: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const h = createHash("sha256");
        createReadStream(file).on("data", (d) => h.update(d)).on("end", () => resolve(h.digest("hex"))).on("error", reject);
    });
}
