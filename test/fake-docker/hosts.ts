/** The fake docker's state file for one DOCKER_HOST. */
export function fakeHostState(base: string, host: string): string {
    return `${base}@${host.replace(/[^A-Za-z0-9.-]+/g, "_")}`;
}
