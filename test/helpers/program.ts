// Evaluates the Pulumi program under mocks in a child process (Pulumi's runtime is process-wide)
// and offers graph queries over what it registered.
import { execFile } from "child_process";
import { strict as assert } from "assert";
import { before, it } from "node:test";
import * as path from "path";
import { Evaluation, Registration } from "../../bin/evaluate";

const ROOT = path.join(__dirname, "..", "..");

export interface ProgramConfig {
    kong?: unknown;
    upgrade?: unknown;
    database?: unknown;
    docker?: unknown;
    [other: string]: unknown;
}

export function evaluate(config: ProgramConfig, opts: { preview?: boolean; stack?: string; revealSecrets?: boolean } = {}): Promise<Evaluation> {
    const full = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)
        .map(([k, v]) => [`kong-upgrade:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
    const env = { ...process.env, KONG_UPGRADE_EVALUATE: JSON.stringify({
        stack: opts.stack ?? "test", preview: opts.preview ?? true, config: full, revealSecrets: opts.revealSecrets, secretKeys: ["kong-upgrade:database", "kong-upgrade:kong"],
    }) };
    return new Promise((resolve, reject) => {
        execFile(process.execPath, ["--require", "ts-node/register/transpile-only", "bin/evaluate.ts"], { cwd: ROOT, env, maxBuffer: 64 << 20 },
            (err, stdout, stderr) => {
                if (err && !stdout) { reject(new Error(`${err.message}\n${stderr}`)); return; }
                resolve(JSON.parse(stdout) as Evaluation);
            });
    });
}

export class Graph {
    readonly byName = new Map<string, Registration>();
    private readonly byUrn = new Map<string, Registration>();

    constructor(readonly registrations: Registration[], readonly outputs: Record<string, unknown> = {}) {
        for (const r of registrations) {
            if (this.byName.has(r.name)) throw new Error(`two resources named ${r.name}`);
            this.byName.set(r.name, r);
            this.byUrn.set(r.urn, r);
        }
    }

    static of(ev: Evaluation): Graph {
        if (!ev.ok) throw new Error(`program failed: ${ev.error}`);
        return new Graph(ev.registrations, ev.outputs);
    }

    get(name: string): Registration {
        const r = this.byName.get(name);
        if (!r) throw new Error(`no resource named ${name}; have ${[...this.byName.keys()].join(", ")}`);
        return r;
    }

    has(name: string): boolean {
        return this.byName.has(name);
    }

    names(filter: (r: Registration) => boolean = () => true): string[] {
        return this.registrations.filter(filter).map((r) => r.name);
    }

    /** Every resource `name` waits for, directly or through others. */
    ancestors(name: string): Set<string> {
        const seen = new Set<string>();
        const stack = [...this.get(name).deps];
        while (stack.length > 0) {
            const urn = stack.pop()!;
            const r = this.byUrn.get(urn);
            if (!r || seen.has(r.name)) continue;
            seen.add(r.name);
            stack.push(...r.deps);
        }
        return seen;
    }

    /** True when `later` cannot start before `earlier` finished. */
    waitsFor(later: string, earlier: string): boolean {
        return this.ancestors(later).has(earlier);
    }

    /** The spec a step Command hands its program. */
    spec(name: string): Record<string, unknown> {
        const env = this.get(name).inputs.environment as Record<string, string>;
        return JSON.parse(env.KONG_UPGRADE_SPEC) as Record<string, unknown>;
    }
}

/**
 * Inside a describe: each configuration is evaluated once (in parallel) and must be refused with a
 * message matching its pattern, one test per case.
 */
export function itRefuses(cases: Array<[string, ProgramConfig, RegExp]>): void {
    const results = new Map<string, Evaluation>();
    before(async () => {
        const all = await Promise.all(cases.map(([, config]) => evaluate(config)));
        cases.forEach(([label], i) => results.set(label, all[i]));
    });
    for (const [label, , message] of cases) {
        it(label, () => {
            const ev = results.get(label)!;
            assert.equal(ev.ok, false, `${label} was accepted`);
            if (!ev.ok) assert.match(ev.error, message);
        });
    }
}
