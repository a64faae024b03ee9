// A model of what `pulumi up` would do to each resource, given the state an earlier run left
// (its registrations) and what the program registers now: the engine's and the providers' rules
// as pulumi-facts.md states them, applied to inputs and options captured under Pulumi's mocks.
//  - A provider reference that moves between the default and an explicit provider: replace (§1.4,
//    step_generator providerChanged).
//  - ignoreChanges: the stored value stands in for the new one before diffing (§1.4).
//  - command:local:Command: a `triggers` change is a replacement (the SDK's replaceOnChanges
//    triggers[*]); any other input change an update, which re-runs `create` (§2.2).
//  - docker.Container: ForceNew inputs replace (delete-first), the others update (§3.2).
//  - RemoteImage: name, pullTriggers, triggers replace; Network and Volume: any input replaces.
//  - A value taken from a resource being replaced (its id) is unknown until then: a change.
import { Registration } from "../../bin/evaluate";

export type Op = "create" | "same" | "update" | "replace";

const CONTAINER_FORCE_NEW = new Set(["name", "image", "envs", "command", "entrypoints", "hostname", "domainname", "user", "workingDir",
    "ports", "networksAdvanced", "networkMode", "volumes", "mounts", "labels", "logDriver", "logOpts", "dns", "dnsOpts", "dnsSearch",
    "hosts", "capabilities", "privileged", "readOnly", "publishAllPorts", "stopSignal", "stopTimeout", "shmSize", "sysctls", "ipcMode",
    "pidMode", "usernsMode", "uploads", "tty", "stdinOpen", "runtime", "securityOpts", "groupAdds", "devices"]);

function forceNew(type: string, key: string): boolean {
    switch (type) {
        case "command:local:Command": return key === "triggers";
        case "docker:index/container:Container": return CONTAINER_FORCE_NEW.has(key);
        case "docker:index/remoteImage:RemoteImage": return ["name", "pullTriggers", "triggers"].includes(key);
        case "docker:index/network:Network":
        case "docker:index/volume:Volume":
        case "pulumi:providers:docker": return true;
        case "postgresql:index/database:Database":
        case "postgresql:index/role:Role": return key === "name";
        default: return false;
    }
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
/** The provider's URN without its id ("" for the default provider). */
const providerUrn = (ref: string) => (ref ? ref.slice(0, ref.lastIndexOf("::")) : "");
/** What others take from a resource, as the mocks give it (bin/evaluate.ts): its id, an image's imageId. */
const mockIds = (r: Registration) => [`${r.name}-id`, ...(r.type === "docker:index/remoteImage:RemoteImage" ? [`sha256:${r.name}`] : [])];

export interface Change {
    op: Op;
    /** The inputs that differ (after ignoreChanges). */
    keys: string[];
}

/** What happens to each custom resource `next` registers, given the state `old` left. By logical name. */
export function planChanges(old: Registration[], next: Registration[]): Map<string, Change> {
    const stored = new Map(old.filter((r) => r.custom).map((r) => [r.urn, r]));
    const out = new Map<string, Change>();
    const replaced: Registration[] = [];
    // Registration order is dependency order: what a resource takes from another comes first.
    for (const r of next.filter((x) => x.custom)) {
        const was = stored.get(r.urn);
        if (!was) {
            out.set(r.name, { op: "create", keys: [] });
            continue;
        }
        const inputs = { ...r.inputs };
        for (const k of r.ignoreChanges) if (k in was.inputs) inputs[k] = was.inputs[k];
        const keys = [...new Set([...Object.keys(inputs), ...Object.keys(was.inputs)])].filter((k) => !same(inputs[k], was.inputs[k]));
        // Ids of resources replaced earlier in this run are unknown: every input holding one changes.
        for (const gone of replaced) {
            for (const [k, v] of Object.entries(inputs)) {
                if (mockIds(gone).some((id) => JSON.stringify(v).includes(JSON.stringify(id).slice(1, -1))) && !keys.includes(k)) keys.push(k);
            }
        }
        const providerMoved = providerUrn(r.provider) !== providerUrn(was.provider);
        const op: Op = providerMoved || keys.some((k) => forceNew(r.type, k)) ? "replace" : keys.length > 0 ? "update" : "same";
        if (op === "replace") replaced.push(r);
        out.set(r.name, { op, keys: providerMoved ? [...keys, "provider"] : keys });
    }
    return out;
}

/** The state after a run that failed at `failed`: what `before` held, updated by every resource of `run` that completed. */
export function stateAfterFailure(before: Registration[], run: Registration[], completed: (name: string) => boolean): Registration[] {
    const byUrn = new Map(before.map((r) => [r.urn, r]));
    for (const r of run) if (completed(r.name)) byUrn.set(r.urn, r);
    return [...byUrn.values()];
}
