// Evaluates the Pulumi program (index.ts) with Pulumi's mocks, without the Pulumi CLI, and
// captures every resource it registers: type, name, inputs, options and declared dependencies.
// Used by `npm run plan` and by the graph tests. One evaluation per process: Pulumi's runtime
// settings are process-wide and the program registers its resources when it is imported.
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";

export interface Registration {
    type: string;
    name: string;
    urn: string;
    parent: string;
    custom: boolean;
    /** Inputs as the program passed them, secrets shown as "[secret]". */
    inputs: Record<string, unknown>;
    /** Input names whose value is (or contains) a secret. */
    secretInputs: string[];
    /** URNs of every direct dependency: dependsOn plus inputs from other resources. */
    deps: string[];
    /** The explicit provider reference (`urn::id`), "" for the default provider. */
    provider: string;
    retainOnDelete: boolean;
    protect: boolean;
    ignoreChanges: string[];
    additionalSecretOutputs: string[];
}

export type Evaluation =
    | { ok: true; registrations: Registration[]; outputs: Record<string, unknown> }
    | { ok: false; error: string };

export interface EvaluateOptions {
    stack: string;
    /** Full config keys ("kong-upgrade:kong") to their JSON strings. */
    config: Record<string, string>;
    secretKeys: string[];
    preview: boolean;
    /** Tests only: show secret inputs as {"[secret]": value} instead of "[secret]". */
    revealSecrets?: boolean;
    /**
     * What registering a resource does. Default: nothing, the inputs become the state (a plan).
     * The rehearsal passes one that performs the resource's real effect.
     */
    newResource?: (args: pulumi.runtime.MockResourceArgs, registration: Registration) => Promise<{ id: string; state: Record<string, unknown> }>;
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Replaces Pulumi's serialised secrets and unknowns by readable markers; reports secret paths. */
function readable(value: unknown, secret: { found: boolean; reveal?: boolean }): unknown {
    if (value === UNKNOWN) return "[unknown]";
    if (Array.isArray(value)) return value.map((v) => readable(v, secret));
    if (value && typeof value === "object") {
        const o = value as Record<string, unknown>;
        if (o[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270") {
            secret.found = true;
            return secret.reveal ? { "[secret]": readable(o.value, secret) } : "[secret]";
        }
        return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, readable(v, secret)]));
    }
    return value;
}

interface RegisterRequest {
    getType(): string;
    getName(): string;
    getParent(): string;
    getCustom(): boolean;
    getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
    getDependenciesList(): string[];
    getProvider(): string;
    getRetainondelete(): boolean;
    getProtect(): boolean;
    getIgnorechangesList(): string[];
    getAdditionalsecretoutputsList(): string[];
}

interface RegisterResponse {
    getUrn(): string;
}

type Callback = (err: unknown, res: RegisterResponse) => void;

/** Stand-in state for each resource type, as the providers would report it. */
function mockState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
    switch (type) {
        case "docker:index/remoteImage:RemoteImage":
            return { ...inputs, imageId: `sha256:${name}`, repoDigest: `${String(inputs.name)}@sha256:0` };
        case "docker:index/volume:Volume":
        case "docker:index/network:Network":
            return { ...inputs, name: inputs.name ?? name };
        default:
            return inputs;
    }
}

export async function evaluateProgram(opts: EvaluateOptions): Promise<Evaluation> {
    const registrations: Registration[] = [];
    const pending = new Map<string, Registration>();
    await pulumi.runtime.setMocks({
        newResource: (args) => {
            const registration = pending.get(`${args.type}::${args.name}`)!;
            return opts.newResource
                ? opts.newResource(args, registration)
                : { id: `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) };
        },
        call: (args) => args.inputs,
    }, "kong-upgrade", opts.stack, opts.preview);
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource(req: RegisterRequest, cb: Callback): Promise<void>;
        newUrn(parent: string, type: string, name: string): string;
    };
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: RegisterRequest, cb: Callback) => {
        const secretInputs: string[] = [];
        const raw = req.getObject()?.toJavaScript() ?? {};
        const inputs = Object.fromEntries(Object.entries(raw).map(([k, v]) => {
            const s = { found: false, reveal: opts.revealSecrets };
            const r = readable(v, s);
            if (s.found) secretInputs.push(k);
            return [k, r];
        }));
        const registration: Registration = {
            type: req.getType(), name: req.getName(), urn: monitor.newUrn(req.getParent(), req.getType(), req.getName()),
            parent: req.getParent(), custom: req.getCustom(), inputs, secretInputs, deps: req.getDependenciesList(), provider: req.getProvider(),
            retainOnDelete: req.getRetainondelete(), protect: req.getProtect(), ignoreChanges: req.getIgnorechangesList(),
            additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
        };
        pending.set(`${registration.type}::${registration.name}`, registration);
        return register(req, (err, res) => {
            if (!err) registrations.push(registration);
            cb(err, res);
        });
    };
    pulumi.runtime.setAllConfig(opts.config, opts.secretKeys);

    let program: Record<string, unknown>;
    try {
        program = require(path.join(__dirname, "..", "index.ts")) as Record<string, unknown>;
    } catch (e) {
        return { ok: false, error: (e as Error).message };
    }
    const outputs: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(program)) {
        outputs[key] = pulumi.Output.isInstance(value) ? await settle(value) : value;
    }
    await pulumi.runtime.disconnect();
    return { ok: true, registrations, outputs };
}

/** An output's value; unknown in preview resolves to "[unknown]" instead of never. */
async function settle(o: pulumi.Output<unknown>): Promise<unknown> {
    const known = await (o as unknown as { isKnown: Promise<boolean> }).isKnown;
    if (!known) return "[unknown]";
    return new Promise((resolve) => o.apply((v) => { resolve(v); return v; }));
}

if (require.main === module) {
    // CLI for tests: options as JSON in KONG_UPGRADE_EVALUATE, the evaluation as JSON on stdout.
    const opts = JSON.parse(process.env.KONG_UPGRADE_EVALUATE ?? "{}") as EvaluateOptions;
    evaluateProgram(opts).then((r) => {
        process.stdout.write(JSON.stringify(r));
    }).catch((e: unknown) => {
        process.stdout.write(JSON.stringify({ ok: false, error: String(e) }));
    });
}
