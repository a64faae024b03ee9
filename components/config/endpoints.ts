// Addresses and Docker endpoints: what the configuration accepts as an address, a host name or a
// Docker host, and how a Docker endpoint breaks down.
import { isIP } from "net";

/** docker.hosts[].name: part of resource names. */
export const HOST_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,30}$/;

/** An IPv4 address (four numbers 0-255) or an IPv6 address, written without brackets. */
export function isIpAddress(address: string): boolean {
    return isIP(address) !== 0;
}

/**
 * A DNS host name (RFC 1123): dot-separated labels of letters, digits and "-", none starting or
 * ending with "-", at most 253 characters. The last label is not all digits, so a mistyped IPv4
 * address such as 999.1.1.1 is not taken for a name.
 */
export function isHostName(name: string): boolean {
    if (name.length > 253) return false;
    const labels = name.replace(/\.$/, "").split(".");
    return labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) && !/^\d+$/.test(labels[labels.length - 1]);
}

/** What to write instead of an address that is not one: the accepted forms, with examples. */
export const IP_ADDRESS_FORMS = "write an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface) or an IPv6 address without brackets (e.g. ::1, or :: for every interface)";
export const HOST_ADDRESS_FORMS = "write an IPv4 address (e.g. 10.0.0.7), an IPv6 address without brackets (e.g. fd00::7) or a host name (e.g. db.internal)";

/** Problem with an address the stack publishes ports on (docker needs an IP there), or undefined. */
export function ipAddressProblem(key: string, address: string): string | undefined {
    if (isIpAddress(address)) return undefined;
    return `${key} "${address}" is not an IP address, which Docker needs to publish ports on: ${IP_ADDRESS_FORMS}`;
}

/** Problem with an address some machine or container connects to (IP or host name), or undefined. */
export function hostAddressProblem(key: string, address: string): string | undefined {
    if (isIpAddress(address) || isHostName(address)) return undefined;
    return `${key} "${address}" is neither an IP address nor a host name: ${HOST_ADDRESS_FORMS}`;
}

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
