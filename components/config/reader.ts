// The reader framework: reads one config object field by field, collecting every problem (with the
// key's full name) instead of stopping at the first, and falling back to the documented default.
import { KongVersion, VersionError, parseVersion } from "../versions";
import { closeEnough } from "./hints";

export type Obj = Record<string, unknown>;

/** Collects problems while reading one config object, so all of them are reported at once. */
export class Reader {
    constructor(private readonly problems: string[], private readonly prefix: string, private readonly obj: Obj) {}

    unknownKeys(known: readonly string[], hint = ""): void {
        for (const k of Object.keys(this.obj)) {
            if (!known.includes(k)) {
                const near = known.find((c) => closeEnough(c, k));
                this.problems.push(`unknown key ${this.prefix}.${k}` +
                    (near ? ` (did you mean ${this.prefix}.${near}?)` : `; known keys: ${known.join(", ")}`) + hint);
            }
        }
    }

    string(key: string, fallback?: string): string | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return fallback;
        if (typeof v !== "string" || v.trim() === "") {
            this.problems.push(`${this.prefix}.${key} must be a non-empty string, not ${JSON.stringify(v)}: set it as text, or remove it`);
            return fallback;
        }
        return v.trim();
    }

    oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
        const v = this.string(key);
        if (v === undefined) return fallback;
        if (!(allowed as readonly string[]).includes(v)) {
            this.problems.push(`${this.prefix}.${key} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, not "${v}"`);
            return fallback;
        }
        return v as T;
    }

    integer(key: string, fallback: number, min: number, max: number): number {
        let v = this.obj[key];
        if (v === undefined || v === null) return fallback;
        if (typeof v === "string" && /^\d+$/.test(v)) v = Number(v); // `pulumi config set` without --path typing
        if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
            this.problems.push(`${this.prefix}.${key} must be a whole number from ${min} to ${max}, not ${JSON.stringify(this.obj[key])}`);
            return fallback;
        }
        return v;
    }

    boolean(key: string, fallback: boolean): boolean {
        const v = this.obj[key];
        if (v === undefined || v === null) return fallback;
        if (v === "true" || v === "false") return v === "true";
        if (typeof v !== "boolean") {
            this.problems.push(`${this.prefix}.${key} must be true or false, not ${JSON.stringify(v)}`);
            return fallback;
        }
        return v;
    }

    object(key: string): Obj | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return undefined;
        if (!isObject(v)) {
            this.problems.push(`${this.prefix}.${key} must be an object, not ${JSON.stringify(v)}`);
            return undefined;
        }
        return v;
    }

    /**
     * A secret (password, secret setting): kept byte for byte, never trimmed, never empty, and
     * never repeated in a message.
     */
    secret(key: string): string | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return undefined;
        const problem = secretValueProblem(`${this.prefix}.${key}`, v);
        if (problem) {
            this.problems.push(problem);
            return undefined;
        }
        return v as string;
    }

    version(key: string): KongVersion | undefined {
        const v = this.obj[key];
        if (v === undefined || v === null) return undefined;
        try {
            return exactVersion(v, `${this.prefix}.${key}`);
        } catch (e) {
            this.problems.push((e as Error).message);
            return undefined;
        }
    }
}

/** Why a secret value is refused (its value never appears in the message), or undefined. */
export function secretValueProblem(key: string, v: unknown): string | undefined {
    if (typeof v === "number" || typeof v === "boolean") {
        // `pulumi config set --path` stores digits as a number (dropping leading zeros) and true/false as a boolean.
        return `${key} was stored as a ${typeof v}, not as text: set it again with --type string ` +
            `(pulumi config set --secret --type string --path ${key} …)`;
    }
    if (typeof v !== "string") return `${key} must be text, not ${Array.isArray(v) ? "a list" : `a ${typeof v}`}: pulumi config set --secret --path ${key} …`;
    if (v === "") return `${key} is empty: set it (pulumi config set --secret --path ${key} …), or remove it`;
    return undefined;
}

/**
 * parseVersion, and no part written with a leading zero: Kong's tags have none, so `3.04.2`
 * would name an image that does not exist while comparing equal to 3.4.2.
 */
export function exactVersion(v: unknown, what: string): KongVersion {
    const parsed = parseVersion(v, what);
    if (parsed.text.split(".").some((part) => /^0\d/.test(part))) {
        const fixed = parsed.text.split(".").map((part) => String(Number(part))).join(".");
        throw new VersionError(`${what} is "${parsed.text}", which has a leading zero, and Kong's image tags have none: write "${fixed}"`);
    }
    return parsed;
}

export function isObject(v: unknown): v is Obj {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function rootObject(problems: string[], key: string, raw: unknown, required: boolean): Obj | undefined {
    if (raw === undefined || raw === null) {
        if (required) problems.push(`kong-upgrade:${key} is not set; see README "Configuration"`);
        return required ? {} : undefined;
    }
    if (!isObject(raw)) {
        problems.push(`kong-upgrade:${key} must be an object (pulumi config set --path ${key}.<field> …), not ${JSON.stringify(raw)}`);
        return required ? {} : undefined;
    }
    return raw;
}
