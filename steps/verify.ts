// verify: the cluster really serves on the shared database. Every node's /status says the
// database is reachable, `kong migrations list` exits 0, the entities recorded at snapshot time
// are all there, and an optional request through each proxy gets a non-5xx answer.
import { RUNTIME_TABLES, countDifferences, entityCounts, withDatabase } from "./lib/db";
import { migrationsList } from "./lib/kong";
import { classify, describeState, learntCatalogs, readMigrationRows, usableCatalog } from "./lib/migrationstate";
import { StepError, parseStepResult, progress } from "./lib/log";
import { databaseReachable, untilAnswers } from "./lib/http";
import { startingWatch } from "./lib/docker";
import { CATALOG_ENV, EXPECT_ENV, NodeRef, StepSpec } from "./lib/spec";
import { databasePassword } from "./lib/secrets";

type Verify = Extract<StepSpec, { step: "verify" }>;

/**
 * Waits until the node's /status says database.reachable: true (Kong answers 200 either way,
 * kong-facts §3.4), noticed within 50 ms: Y's nodes are created without Docker's wait, and the
 * moment Y answers closes the downtime window.
 */
async function waitForStatus(node: NodeRef, deadline: number): Promise<void> {
    await untilAnswers(`${node.statusUrl}/status`, deadline, databaseReachable, (last) => `${node.container}: ${node.statusUrl}/status not ready in time (${last}); see docker logs ${node.container}`,
    // A node that exits at start-up (a bad setting) fails verify within a second, with Kong's output.
    { alive: startingWatch(node.container, node.docker), everyMs: 50 });
}

/** Entity counts the verify compares with: the snapshot's (upgrade) or the restored snapshot's (rollback). */
export function expectedCounts(raw: string | undefined): Record<string, number> | undefined {
    if (!raw) return undefined;
    const r = parseStepResult<{ entityCounts?: Record<string, number> }>(raw);
    if (!r) throw new StepError(`${EXPECT_ENV} is not a step result`);
    return r.entityCounts;
}

/** `expected`: the counts to find again; by default the snapshot's or restore's result in KONG_UPGRADE_EXPECT. */
export async function verify(spec: Verify, expected = expectedCounts(process.env[EXPECT_ENV])): Promise<object> {
    const deadline = Date.now() + spec.timeoutSeconds * 1000;
    // The three checks are independent: side by side, verify takes the longest of them, not
    // their sum (it runs inside the downtime window).
    // `kong migrations list` exits 0: computed from schema_meta against Y's catalog when preflight
    // learnt it (exactly Kong's classification, no Kong container in the window), else Kong's own list.
    const catalog = await usableCatalog(learntCatalogs(process.env[CATALOG_ENV]), spec.kong);
    const migrationState = catalog
        ? withDatabase(spec.db, databasePassword(), readMigrationRows).then((rows) => {
            const s = classify(rows, catalog.subsystems);
            return { state: s.state, output: describeState(s), containers: 0 };
        })
        : migrationsList(spec.kong).then((l) => ({ ...l, containers: 1 }));
    const [, list, counts] = await Promise.all([
        Promise.all(spec.cluster.nodes.map((n) => waitForStatus(n, deadline)))
            .then(() => progress(`${spec.cluster.nodes.length} node(s) report the database reachable`)),
        migrationState,
        withDatabase(spec.db, databasePassword(), entityCounts),
    ]);
    if (list.state !== "up-to-date") {
        throw new StepError(`kong migrations list with ${spec.kong.image} ${catalog ? "would report" : "reports"} ${list.state}, not up to date:\n${list.output}`);
    }
    if (expected) {
        // Every entity table that exists both at snapshot time and now (migrations add and drop
        // tables); Kong's own runtime tables (events, locks, counters, tokens) come and go.
        const runtime: readonly string[] = RUNTIME_TABLES;
        const lost = countDifferences(counts, expected, (t) => t in counts && t in expected && !runtime.includes(t))
            .filter((d) => { const [t, got] = d.split(" "); return Number(got) < expected[t]; });
        if (lost.length > 0) {
            throw new StepError(`entities recorded at snapshot time are missing: ${lost.join(", ")}. ` +
                `The snapshot is intact; roll back with upgrade.rollback: true`);
        }
        progress(`entity counts match the snapshot in every table present before and after: ${JSON.stringify(counts)}`);
    }
    const smoke: Record<string, number> = {};
    if (spec.smokePath) {
        // Every proxy at once: verify closes the downtime window.
        await Promise.all(spec.cluster.nodes.map(async (n) => {
            const r = await fetch(`${n.proxyUrl}${spec.smokePath}`, { signal: AbortSignal.timeout(5000) }).catch((e: Error) => {
                throw new StepError(`${n.container}: GET ${spec.smokePath} through the proxy failed: ${e.message}`);
            });
            await r.arrayBuffer().catch(() => undefined);
            if (r.status >= 500) throw new StepError(`${n.container}: GET ${spec.smokePath} through the proxy answered ${r.status}`);
            smoke[n.container] = r.status;
        }));
        progress(`smoke request ${spec.smokePath} answered on every proxy`);
    }
    return { version: spec.cluster.version, nodes: spec.cluster.nodes.length, entityCounts: counts, smoke, kongContainers: list.containers };
}
