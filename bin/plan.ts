// `npm run plan -- --stack <name> [--set upgrade.to=3.7.1 …]`: the runbook of a stack, for a
// change board, without the Pulumi CLI or credentials. Evaluates the program with Pulumi's mocks
// in preview mode for Pulumi.<name>.yaml (secrets shown as [secret]) and prints the numbered
// steps, what each waits for, and the deletions that come last. Invalid configuration: exit 1.
import { readFileSync, existsSync } from "fs";
import * as path from "path";
import { parse } from "yaml";
import { Evaluation, evaluateProgram } from "./evaluate";

const PROJECT = "kong-upgrade";

interface Args {
    stack: string;
    sets: Array<[string, unknown]>;
    json: boolean;
}

function parseArgs(argv: string[]): Args {
    const args: Args = { stack: "dev", sets: [], json: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--stack" || a === "-s") args.stack = argv[++i];
        else if (a === "--json") args.json = true;
        else if (a === "--set") {
            const [key, ...rest] = (argv[++i] ?? "").split("=");
            const text = rest.join("=");
            let value: unknown = text;
            try { value = JSON.parse(text); } catch { /* a plain string */ }
            args.sets.push([key, value]);
        } else {
            throw new Error(`unknown argument ${a}; usage: npm run plan -- --stack <name> [--set upgrade.to=3.7.1] [--json]`);
        }
    }
    return args;
}

/** Replaces `{secure: …}` values by "[secret]" and says whether any were found. */
function redact(value: unknown, found: { secret: boolean }): unknown {
    if (Array.isArray(value)) return value.map((v) => redact(v, found));
    if (value && typeof value === "object") {
        const o = value as Record<string, unknown>;
        if (Object.keys(o).length === 1 && "secure" in o) {
            found.secret = true;
            return "[secret]";
        }
        return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, redact(v, found)]));
    }
    return value;
}

/** The stack's config as the Pulumi CLI would hand it to the program, secrets redacted. */
export function stackConfig(file: string, sets: Array<[string, unknown]>): { config: Record<string, string>; secretKeys: string[]; notes: string[] } {
    const doc = (parse(readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    const values: Record<string, unknown> = {};
    const secretKeys: string[] = [];
    for (const [key, value] of Object.entries(doc.config ?? {})) {
        const found = { secret: false };
        values[key] = redact(value, found);
        if (found.secret) secretKeys.push(key);
    }
    for (const [dotted, value] of sets) {
        const [top, ...rest] = dotted.split(".");
        const key = `${PROJECT}:${top}`;
        if (rest.length === 0) { values[key] = value; continue; }
        let obj = (values[key] ??= {}) as Record<string, unknown>;
        for (const part of rest.slice(0, -1)) obj = (obj[part] ??= {}) as Record<string, unknown>;
        obj[rest[rest.length - 1]] = value;
    }
    const notes: string[] = [];
    const db = (values[`${PROJECT}:database`] ??= {}) as Record<string, unknown>;
    if (db.password === undefined) {
        db.password = "[secret]";
        notes.push("database.password is not set in the stack file yet; planned as [secret] (pulumi up needs it)");
    }
    if (!secretKeys.includes(`${PROJECT}:database`)) secretKeys.push(`${PROJECT}:database`);
    const config = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
    return { config, secretKeys, notes };
}

export function formatPlan(stack: string, ev: Evaluation, notes: string[]): { text: string; ok: boolean } {
    if (!ev.ok) return { text: `stack ${stack}: ${ev.error}`, ok: false };
    const lines = [`stack ${stack}`, ...notes.map((n) => `note: ${n}`), ...(ev.outputs.runbook as string[])];
    return { text: lines.join("\n"), ok: true };
}

async function main(): Promise<void> {
    const args = parseArgs(process.argv.slice(2));
    const file = path.join(__dirname, "..", `Pulumi.${args.stack}.yaml`);
    if (!existsSync(file)) throw new Error(`no Pulumi.${args.stack}.yaml beside Pulumi.yaml`);
    const { config, secretKeys, notes } = stackConfig(file, args.sets);
    const ev = await evaluateProgram({ stack: args.stack, config, secretKeys, preview: true });
    if (args.json) {
        process.stdout.write(`${JSON.stringify(ev, null, 2)}\n`);
        process.exit(ev.ok ? 0 : 1);
    }
    const { text, ok } = formatPlan(args.stack, ev, notes);
    (ok ? process.stdout : process.stderr).write(`${text}\n`);
    process.exit(ok ? 0 : 1);
}

if (require.main === module) {
    main().catch((e: unknown) => {
        process.stderr.write(`${(e as Error).message}\n`);
        process.exit(1);
    });
}
