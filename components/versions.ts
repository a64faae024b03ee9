// Kong version arithmetic and upgrade paths. Pure functions: no Pulumi, no I/O.
// Paths follow Kong's upgrade-path table (kong-facts §5): patch releases, adjacent minors
// of one major and the LTS pairs are direct; anything longer goes through every hop.

/** A Kong release as written in an image tag: 3.4.3 (OSS) or 3.7.1.2 (Enterprise). */
export interface KongVersion {
    readonly major: number;
    readonly minor: number;
    /** patch and, for Enterprise, the fourth part */
    readonly rest: readonly number[];
    /** the text the operator wrote; it is also the image tag */
    readonly text: string;
}

export class VersionError extends Error {}

const VERSION_PATTERN = /^(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?$/;

/** Parses an exact Kong version; `what` names the config key in the error. */
export function parseVersion(text: unknown, what: string): KongVersion {
    if (typeof text !== "string" || !VERSION_PATTERN.test(text.trim())) {
        throw new VersionError(
            `${what} is ${JSON.stringify(text)}, which is not an exact Kong version: ` +
            `write the image tag, such as "3.4.3" (kong) or "3.7.1.2" (kong/kong-gateway)`);
    }
    const trimmed = text.trim();
    const parts = trimmed.split(".").map(Number);
    return { major: parts[0], minor: parts[1], rest: parts.slice(2), text: trimmed };
}

/** Negative when a < b, 0 when equal, positive when a > b. */
export function compareVersions(a: KongVersion, b: KongVersion): number {
    const pa = [a.major, a.minor, ...a.rest];
    const pb = [b.major, b.minor, ...b.rest];
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
        const d = (pa[i] ?? 0) - (pb[i] ?? 0);
        if (d !== 0) return d;
    }
    return 0;
}

export function minorOf(v: KongVersion): string {
    return `${v.major}.${v.minor}`;
}

/** "3.7.1" → "3-7-1": the form used in resource and container names. */
export function versionSlug(v: KongVersion): string {
    return v.text.replace(/\./g, "-");
}

/** Long-term-support pairs Kong documents as direct upgrades (kong-facts §5.1). */
const LTS_PAIRS: ReadonlyArray<readonly [string, string]> = [
    ["2.8", "3.4"],
    ["3.4", "3.10"],
    ["3.10", "3.14"],
];

/** The newest 2.x minor; 2.8 → 3.0 is the documented major jump (kong-facts §5.3). */
const LAST_MINOR_OF_2 = 8;

/** True when Kong supports migrating the database from `from` to `to` in one step. */
export function isDirectUpgrade(from: KongVersion, to: KongVersion): boolean {
    if (compareVersions(to, from) <= 0) return false;
    if (from.major === to.major && (to.minor === from.minor || to.minor === from.minor + 1)) return true;
    if (from.major === 2 && from.minor === LAST_MINOR_OF_2 && to.major === 3 && to.minor === 0) return true;
    return LTS_PAIRS.some(([a, b]) => a === minorOf(from) && b === minorOf(to));
}

/** One step in the graph of minors that the path search walks. */
function nextMinors(major: number, minor: number, target: KongVersion): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    if (major === target.major && minor < target.minor) out.push([major, minor + 1]);
    if (major === 2 && minor === LAST_MINOR_OF_2 && target.major >= 3) out.push([3, 0]);
    for (const [a, b] of LTS_PAIRS) {
        if (a === `${major}.${minor}`) {
            const [bm, bn] = b.split(".").map(Number);
            if (bm < target.major || (bm === target.major && bn <= target.minor)) out.push([bm, bn]);
        }
    }
    return out;
}

/**
 * The intermediate minors Kong routes `from` → `to` through, shortest first:
 * 3.4.3 → 3.7.1 gives ["3.5", "3.6"]; a direct upgrade gives []. Throws a VersionError
 * that says what to do when Kong offers no path at all.
 */
export function requiredHops(from: KongVersion, to: KongVersion): string[] {
    if (compareVersions(to, from) <= 0) {
        throw new VersionError(`Kong cannot migrate from ${from.text} to ${to.text}: the target must be newer`);
    }
    if (to.major >= 3 && (from.major < 2 || (from.major === 2 && from.minor < LAST_MINOR_OF_2))) {
        const first = from.major < 2 ? "2.1, then to 2.8," : "2.8";
        throw new VersionError(
            `Kong ${minorOf(from)} cannot be upgraded to ${minorOf(to)} directly; upgrade to ${first} first ` +
            `(Kong's upgrade path for 3.x starts at 2.8)`);
    }
    if (isDirectUpgrade(from, to)) return [];
    // Breadth-first search over minors: every edge is a documented direct upgrade.
    const start = `${from.major}.${from.minor}`;
    const goal = `${to.major}.${to.minor}`;
    const previous = new Map<string, string>([[start, ""]]);
    let frontier: Array<[number, number]> = [[from.major, from.minor]];
    while (frontier.length > 0 && !previous.has(goal)) {
        const next: Array<[number, number]> = [];
        for (const [maj, min] of frontier) {
            for (const [nm, nn] of nextMinors(maj, min, to)) {
                const key = `${nm}.${nn}`;
                if (!previous.has(key)) {
                    previous.set(key, `${maj}.${min}`);
                    next.push([nm, nn]);
                }
            }
        }
        frontier = next;
    }
    if (!previous.has(goal)) {
        throw new VersionError(`Kong documents no upgrade path from ${from.text} to ${to.text}`);
    }
    const hops: string[] = [];
    for (let at = previous.get(goal)!; at !== start; at = previous.get(at)!) hops.unshift(at);
    return hops;
}

/**
 * Checks the whole chain from → via… → to: each link must be a direct upgrade. Returns the
 * chain's versions after `from` (the hops, then `to`). The error spells out the hops to add.
 */
export function upgradeChain(from: KongVersion, via: readonly KongVersion[], to: KongVersion): KongVersion[] {
    const chain = [from, ...via, to];
    for (let i = 1; i < chain.length; i++) {
        const a = chain[i - 1];
        const b = chain[i];
        if (isDirectUpgrade(a, b)) continue;
        const hops = requiredHops(a, b);
        const where = i === chain.length - 1 && via.length === 0 ? "" : ` (between ${a.text} and ${b.text})`;
        throw new VersionError(
            `Kong ${a.text} → ${b.text} is not a direct upgrade${where}: Kong routes it through ` +
            `${hops.length > 1 ? `${hops.slice(0, -1).join(", ")} and ${hops[hops.length - 1]}` : hops[0]}. Add the exact versions of those hops to upgrade.via, in order, ` +
            `e.g. upgrade.via: [${hops.map((h) => `"${h}.x"`).join(", ")}] with the patch release of each image`);
    }
    return chain.slice(1);
}
