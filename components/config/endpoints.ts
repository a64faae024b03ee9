// Addresses and Docker endpoints: what the configuration accepts as an address, a host name or a
// Docker host, and how a Docker endpoint breaks down.

export const ADDRESS_PATTERN = /^(\d{1,3}\.){3}\d{1,3}$|^::1?$|^\[?[0-9a-fA-F:]+\]?$/;
export const HOST_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,30}$/;
export const HOSTNAME_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** Whether an address is this machine's loopback, which no other machine or container reaches. */
export function isLoopback(address: string): boolean {
    return /^(localhost|127\.|::1$|\[::1\]$)/.test(address);
}

/** Whether an address means every interface of the host. */
export function isWildcard(address: string): boolean {
    return address === "0.0.0.0" || address === "::";
}

/** The parts of a Docker endpoint that matter here; undefined when it is not one we support. */
export function parseDockerEndpoint(endpoint: string): { scheme: "unix" | "tcp" | "ssh"; host: string; rest: string } | undefined {
    const m = /^(unix|tcp|ssh):\/\/(.+)$/.exec(endpoint);
    if (!m) return undefined;
    const scheme = m[1] as "unix" | "tcp" | "ssh";
    if (scheme === "unix") return m[2].startsWith("/") ? { scheme, host: "", rest: m[2] } : undefined;
    // [user@]host[:port][/path]
    const hm = /^(?:[^@/]+@)?(\[[0-9A-Fa-f:]+\]|[^:/]+)(?::(\d+))?(\/.*)?$/.exec(m[2]);
    if (!hm) return undefined;
    return { scheme, host: hm[1].replace(/^\[|\]$/g, ""), rest: m[2] };
}

/** A host's default name: the socket file's or machine's name, in the characters names allow. */
export function defaultHostName(endpoint: string): string {
    const e = parseDockerEndpoint(endpoint);
    const base = !e ? "host" : e.scheme === "unix" ? (e.rest.split("/").pop() ?? "").replace(/\.sock$/, "") : e.host;
    const name = base.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 31);
    return name === "" || name === "docker" ? "local" : name;
}
