// The Docker rehearsal (test/rehearsal/rehearse.ts) as part of `npm test`, where a Docker engine
// answers. Without one it is reported as skipped with the reason; .ci/run installs and starts one.
import { strict as assert } from "assert";
import { it } from "node:test";
import { dockerReachable, rehearse } from "./rehearsal/rehearse";

const docker = dockerReachable();
if (!docker) process.stdout.write("rehearsal: no Docker engine reachable (docker info failed); start dockerd to run it\n");

it("rehearsal: upgrade, promote and rollback on a real Docker engine (6 chains)", { skip: docker ? false : "no Docker engine reachable", timeout: 40 * 60_000 }, async () => {
    const window = await rehearse();
    assert.match(window, /^downtime window \(X stopped → Y verified\): \d+\.\ds/);
    process.stdout.write(`${window}\n`);
});
