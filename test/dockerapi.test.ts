// The image id check of each migration step asks the Docker engine's socket directly where the
// CLI would talk to a local socket (no CLI start in the downtime window), and the CLI otherwise.
import { strict as assert } from "assert";
import * as http from "http";
import { mkdtempSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { describe, it } from "node:test";
import { containerFromSocket, imageIdFromSocket, localDockerSocket } from "../steps/lib/docker";

describe("which Docker engine a step may ask through its socket", () => {
    const cases: Array<{ name: string; endpoint?: { host: string; certPath?: string }; env: NodeJS.ProcessEnv; context?: string; want: string | undefined }> = [
        { name: "the CLI's default", env: {}, want: "/var/run/docker.sock" },
        { name: "the default context named", env: {}, context: "default", want: "/var/run/docker.sock" },
        { name: "DOCKER_HOST on another socket", env: { DOCKER_HOST: "unix:///run/user/1000/docker.sock" }, want: "/run/user/1000/docker.sock" },
        { name: "DOCKER_HOST over TCP", env: { DOCKER_HOST: "tcp://10.0.0.5:2376" }, want: undefined },
        { name: "DOCKER_HOST over ssh", env: { DOCKER_HOST: "ssh://ops@gw" }, want: undefined },
        { name: "a context chosen in the CLI's config", env: {}, context: "colima", want: undefined },
        { name: "DOCKER_CONTEXT", env: { DOCKER_CONTEXT: "remote" }, want: undefined },
        { name: "a step's own host (docker.hosts)", endpoint: { host: "tcp://10.0.0.6:2376", certPath: "/certs" }, env: {}, want: undefined },
        { name: "a step's own host on a socket", endpoint: { host: "unix:///var/run/docker-b.sock" }, env: { DOCKER_HOST: "tcp://elsewhere:2375" }, want: "/var/run/docker-b.sock" },
        { name: "the test double of the CLI", env: { KONG_UPGRADE_DOCKER: "/tmp/fake-docker" }, want: undefined },
    ];
    for (const c of cases) it(c.name, () => assert.equal(localDockerSocket(c.endpoint, c.env, c.context), c.want));
});

describe("an image's id from the engine's socket", () => {
    async function engine(answer: (url: string) => { status: number; body: string } | "hang"): Promise<{ socket: string; urls: string[]; close: () => void }> {
        const dir = mkdtempSync(path.join(os.tmpdir(), "docker-api-"));
        const socket = path.join(dir, "docker.sock");
        const urls: string[] = [];
        const server = http.createServer((req, res) => {
            urls.push(req.url ?? "");
            const a = answer(req.url ?? "");
            if (a === "hang") return;
            res.writeHead(a.status, { "content-type": "application/json" });
            res.end(a.body);
        });
        await new Promise<void>((r) => server.listen(socket, () => r()));
        return { socket, urls, close: () => { server.closeAllConnections(); server.close(); rmSync(dir, { recursive: true, force: true }); } };
    }
    const id = `sha256:${"ab".repeat(32)}`;
    const cases: Array<{ name: string; image: string; answer: (url: string) => { status: number; body: string } | "hang"; want: string | undefined; url?: string }> = [
        { name: "its id", image: "kong:3.7.1", answer: () => ({ status: 200, body: JSON.stringify({ Id: id, RepoTags: ["kong:3.7.1"] }) }), want: id, url: "/images/kong%3A3.7.1/json" },
        { name: "a registry with a port and a path", image: "registry.local:5000/team/kong:3.7.1", answer: () => ({ status: 200, body: JSON.stringify({ Id: id }) }), want: id, url: "/images/registry.local%3A5000/team/kong%3A3.7.1/json" },
        { name: "no such image", image: "kong:9.9", answer: () => ({ status: 404, body: JSON.stringify({ message: "No such image: kong:9.9" }) }), want: "absent" },
        { name: "an engine error: ask the CLI", image: "kong:3.7.1", answer: () => ({ status: 500, body: "{}" }), want: undefined },
        { name: "an answer without an id: ask the CLI", image: "kong:3.7.1", answer: () => ({ status: 200, body: "{\"Id\": 7}" }), want: undefined },
        { name: "no answer in time: ask the CLI", image: "kong:3.7.1", answer: () => "hang", want: undefined },
    ];
    for (const c of cases) {
        it(c.name, async () => {
            const e = await engine(c.answer);
            try {
                assert.equal(await imageIdFromSocket(e.socket, c.image, 300), c.want);
                if (c.url) assert.deepEqual(e.urls, [c.url]);
            } finally {
                e.close();
            }
        });
    }
    const inspected = { Name: "/kong-3-7-1-node-0", RestartCount: 2, Config: { Labels: { "kong-upgrade.stack": "dev" } },
        State: { Running: true, Restarting: false, ExitCode: 0, Health: { Status: "starting" } } };
    const containers: Array<{ name: string; answer: { status: number; body: string }; want: unknown }> = [
        { name: "a container's state, as docker container inspect gives it", answer: { status: 200, body: JSON.stringify(inspected) },
            want: { name: "kong-3-7-1-node-0", running: true, health: "starting", labels: { "kong-upgrade.stack": "dev" }, restarting: false, exitCode: 0, restartCount: 2 } },
        { name: "a container without labels or health check that exited", answer: { status: 200, body: JSON.stringify({ Config: { Labels: null }, State: { Running: false, ExitCode: 1 } }) },
            want: { name: "kong-3-7-1-node-0", running: false, health: "", labels: {}, restarting: false, exitCode: 1, restartCount: 0 } },
        { name: "no such container", answer: { status: 404, body: "{}" }, want: "absent" },
        { name: "a container answer without its state: ask the CLI", answer: { status: 200, body: "{}" }, want: undefined },
    ];
    for (const c of containers) {
        it(c.name, async () => {
            const e = await engine(() => c.answer);
            try {
                assert.deepEqual(await containerFromSocket(e.socket, "kong-3-7-1-node-0", 300), c.want);
                assert.deepEqual(e.urls, ["/containers/kong-3-7-1-node-0/json"]);
            } finally {
                e.close();
            }
        });
    }
    it("no engine on the socket: ask the CLI", async () => {
        assert.equal(await imageIdFromSocket(path.join(os.tmpdir(), "no-such-docker.sock"), "kong:3.7.1", 300), undefined);
    });
});
