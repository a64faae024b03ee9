// Waiting for a node that is still starting behind a port Docker publishes. docker-proxy accepts
// the connection at once and holds it without an answer while nothing listens in the container.
// Such a held fetch does not keep Node's event loop alive: before the fix, verify's step program
// simply ended, exit 0, no result, and the Command recorded a success before Y served (seen in
// the rehearsal once Y's nodes were no longer created with Docker's wait).
import { strict as assert } from "assert";
import * as net from "net";
import { after, before, describe, it } from "node:test";
import { TestServer, startPostgres } from "./helpers/postgres";
import { fakeDockerState, kongRun, runStep, STANDIN } from "./helpers/steps";
import { writeFileSync } from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { catalogFromStatus, catalogFingerprint } from "../steps/lib/migrationstate";
import { CATALOG_ENV } from "../steps/lib/spec";

let server: TestServer;
before(async () => { server = await startPostgres(); });
after(async () => { await server?.stop(); });

/**
 * A port that behaves as docker-proxy in front of a node ready `readyAfterMs` after the first
 * connection (never: Infinity); before that it holds each connection, or with `notYet` answers
 * at once that the database is not reachable (Kong up, its database not yet).
 */
function proxyLike(readyAfterMs: number, notYet = false): Promise<{ port: number; held: () => number; requests: () => number; close: () => void }> {
    let opened: number | undefined; // the first connection: the step program's start-up is not the node's
    const sockets = new Set<net.Socket>();
    let held = 0;
    let requests = 0;
    const s = net.createServer((sock) => {
        opened ??= Date.now();
        sockets.add(sock);
        sock.on("close", () => sockets.delete(sock));
        requests++;
        const ready = Date.now() - opened < readyAfterMs ? false : true;
        if (!ready && !notYet) { held++; return; } // accepted, never answered
        sock.once("data", () => {
            const body = JSON.stringify({ database: { reachable: ready }, server: {} });
            sock.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        });
    });
    return new Promise((resolve) => s.listen(0, "127.0.0.1", () => resolve({
        port: (s.address() as net.AddressInfo).port, held: () => held, requests: () => requests,
        close: () => { for (const k of sockets) k.destroy(); s.close(); },
    })));
}

/** A bootstrapped 3.7.1 database, and the catalog preflight would have learnt (verify then starts no Kong at all). */
async function bootstrapped(label: string) {
    const t = await server.kongDatabase(label);
    const kong = (args: string[]) => spawnSync(STANDIN, args, {
        env: { ...process.env, KONG_VERSION: "3.7.1", KONG_PLUGINS: "bundled", KONG_PG_HOST: t.db.host, KONG_PG_PORT: String(t.db.port),
            KONG_PG_USER: t.db.user, KONG_PG_PASSWORD: t.password, KONG_PG_DATABASE: t.db.database },
        encoding: "utf8",
    });
    const boot = kong(["migrations", "bootstrap"]);
    assert.equal(boot.status, 0, boot.stderr);
    const status = kong(["migrations", "status"]);
    const subsystems = catalogFromStatus(JSON.parse(status.stdout.split("\n").find((l) => l.startsWith("{"))!) as Record<string, unknown>);
    const catalogs = JSON.stringify({ catalogs: [{ version: "3.7.1", fingerprint: catalogFingerprint(kongRun(t.db, "3.7.1")), subsystems }] });
    return { ...t, env: { [CATALOG_ENV]: catalogs } };
}

/** The fake docker's world: Y's node as Docker would report it while it starts (running) or after Kong exited. */
function container(state: { running: boolean; restarting?: boolean; exitCode?: number; restarts?: number; restartsGrow?: boolean; log?: string }): string {
    const file = fakeDockerState();
    let log: string | undefined;
    if (state.log) {
        log = path.join(path.dirname(file), "node.log");
        writeFileSync(log, state.log);
    }
    writeFileSync(file, JSON.stringify({ "rd-kong-3-7-1-node-0": { health: "", labels: {}, ...state, log } }));
    return file;
}

describe("verify waits for a node that starts behind docker-proxy", () => {
    const verify = (t: Awaited<ReturnType<typeof bootstrapped>>, port: number, timeoutSeconds: number, docker = container({ running: true }),
        env: Record<string, string> = {}) => runStep({
        step: "verify", db: t.db, kong: kongRun(t.db, "3.7.1"), timeoutSeconds,
        cluster: { stack: "rd", version: "3.7.1", nodes: [{ container: "rd-kong-3-7-1-node-0", statusUrl: `http://127.0.0.1:${port}`, adminUrl: "", proxyUrl: "" }] },
    }, { ...t, env: { ...t.env, FAKE_DOCKER_STATE: docker, ...env } });

    it("takes Docker not answering the node check for a hiccup, not for the node failing", async () => {
        const t = await bootstrapped("dockerdown");
        const node = await proxyLike(2500);
        const unreachable = path.join(path.dirname(fakeDockerState()), "docker");
        writeFileSync(unreachable, "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n", { mode: 0o755 });
        try {
            const r = await verify(t, node.port, 60, undefined, { KONG_UPGRADE_DOCKER: unreachable });
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stderr, /Cannot connect to the Docker daemon.*; still waiting for rd-kong-3-7-1-node-0's \/status/);
        } finally {
            node.close();
        }
    });

    it("passes once the node answers, though earlier connections are still held", async () => {
        const t = await bootstrapped("late");
        const node = await proxyLike(1500);
        try {
            const r = await verify(t, node.port, 60);
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.result?.nodes, 1, "a result, not a silent exit");
            assert.equal(r.result?.kongContainers, 0, "the migration state from schema_meta: nothing else keeps the step alive");
            assert.match(r.stderr, /1 node\(s\) report the database reachable/);
            assert.ok(node.held() > 1, `requests kept starting while earlier ones were held (${node.held()} held)`);
        } finally {
            node.close();
        }
    });

    it("asks every 50 ms, not as fast as answers come back, while Kong says its database is not reachable yet", async () => {
        const t = await bootstrapped("cadence");
        const node = await proxyLike(2000, true);
        try {
            const r = await verify(t, node.port, 60);
            assert.equal(r.code, 0, r.stderr);
            // 2 s at one request per 50 ms is about 40; a loop without a pause makes hundreds
            // (each a database connection Kong opens for /status).
            assert.ok(node.requests() >= 10 && node.requests() <= 80, `${node.requests()} requests in 2 s`);
        } finally {
            node.close();
        }
    });

    it("fails, exit 1, naming the node, when it never answers: never a success without a result", async () => {
        const t = await bootstrapped("never");
        const node = await proxyLike(Infinity);
        try {
            const r = await verify(t, node.port, 3);
            assert.equal(r.code, 1, `exit ${r.code}, stdout ${r.stdout}`);
            assert.equal(r.result, undefined);
            assert.match(r.stderr, /rd-kong-3-7-1-node-0: http:\/\/127\.0\.0\.1:\d+\/status not ready in time/);
        } finally {
            node.close();
        }
    });
    // A container keeps its restart count for life: X's old nodes, started again by a rollback, may carry many.
    for (const [what, restarts] of [["a single restart", 1], ["restarts from the container's earlier life", 7]] as const) {
        it(`waits out ${what}: only restarts while it starts count, and two of them`, async () => {
            const t = await bootstrapped(`restarted${restarts}`);
            const node = await proxyLike(2500);
            try {
                const r = await verify(t, node.port, 60, container({ running: true, restarts }));
                assert.equal(r.code, 0, r.stderr);
                assert.equal(r.result?.nodes, 1);
            } finally {
                node.close();
            }
        });
    }

    // Y's nodes are created without Docker's wait: a node whose Kong exits at start-up (a bad
    // setting) must fail verify at once, with Kong's words, not after the whole health timeout.
    for (const [what, state, words] of [
        ["exited", { running: false, exitCode: 1 }, /exited \(exit code 1\) instead of starting/],
        // Docker shows a node its restart policy is about to start again as Restarting, with the code it exited with.
        ["keeps failing under its restart policy", { running: true, restarting: true, exitCode: 1, restarts: 3, restartsGrow: true }, /exited \(exit code 1\) and was restarted 2 times instead of starting/],
    ] as const) {
        it(`fails within seconds, with Kong's output, when the node ${what}`, async () => {
            const t = await bootstrapped(`dead${what.length}`);
            const node = await proxyLike(Infinity);
            const started = Date.now();
            try {
                const r = await verify(t, node.port, 60, container({ ...state, log: "Error: invalid value for KONG_PROXY_LISTEN\n" }));
                assert.equal(r.code, 1, r.stderr);
                assert.match(r.stderr, words);
                assert.match(r.stderr, /Kong's output \(docker logs --tail 30\):\nError: invalid value for KONG_PROXY_LISTEN/);
                assert.ok(Date.now() - started < 40_000, `failed after ${Date.now() - started} ms, not at the 60 s timeout`);
            } finally {
                node.close();
            }
        });
    }
});
