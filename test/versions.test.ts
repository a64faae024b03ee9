import { strict as assert } from "assert";
import { describe, it } from "node:test";
import { compareVersions, isDirectUpgrade, parseVersion, requiredHops, upgradeChain } from "../components/versions";

const v = (t: string) => parseVersion(t, "v");

describe("parseVersion", () => {
    for (const ok of ["3.4.3", "3.7.1.2", "2.8.4.1", " 3.9.0 "]) {
        it(`accepts ${JSON.stringify(ok)}`, () => assert.equal(v(ok).text, ok.trim()));
    }
    for (const bad of ["3.4", "latest", "3.4.x", "v3.4.3", "", "3.4.3-alpine", 3.4]) {
        it(`refuses ${JSON.stringify(bad)} with the key and an example`, () => {
            assert.throws(() => parseVersion(bad, "kong.version"), /kong\.version is .* not an exact Kong version: write the image tag, such as "3\.4\.3"/);
        });
    }
});

describe("compareVersions", () => {
    const table: Array<[string, string, number]> = [
        ["3.4.3", "3.4.3", 0], ["3.4.3", "3.4.10", -1], ["3.10.0", "3.9.9", 1], ["3.7.1.2", "3.7.1", 1], ["3.7.1.2", "3.7.1.10", -1],
    ];
    for (const [a, b, sign] of table) it(`${a} vs ${b}`, () => assert.equal(Math.sign(compareVersions(v(a), v(b))), sign));
});

describe("upgrade paths (Kong's table, kong-facts §5)", () => {
    const direct: Array<[string, string, boolean]> = [
        ["3.4.1", "3.4.3", true],      // patch
        ["3.6.1", "3.7.1", true],      // adjacent minor
        ["3.7.1.2", "3.8.0.0", true],  // Enterprise, adjacent minor
        ["2.8.4", "3.4.3", true],      // LTS
        ["3.4.3", "3.10.0", true],     // LTS
        ["3.10.0", "3.14.1", true],    // LTS
        ["2.8.1", "3.0.0", true],      // last 2.x to 3.0
        ["3.4.3", "3.6.0", false],
        ["3.4.3", "3.7.1", false],
        ["3.7.1", "3.4.3", false],     // down
        ["3.4.3", "3.4.3", false],
    ];
    for (const [a, b, expected] of direct) it(`${a} → ${b} direct: ${expected}`, () => assert.equal(isDirectUpgrade(v(a), v(b)), expected));

    const hops: Array<[string, string, string[]]> = [
        ["3.4.3", "3.7.1", ["3.5", "3.6"]],
        ["3.5.0", "3.7.1", ["3.6"]],
        ["3.0.1", "3.4.3", ["3.1", "3.2", "3.3"]],
        ["2.8.4", "3.7.1", ["3.4", "3.5", "3.6"]],
        ["3.4.3", "3.12.0", ["3.10", "3.11"]],
        ["3.6.1", "3.7.1", []],
    ];
    for (const [a, b, expected] of hops) it(`${a} → ${b} goes through [${expected.join(", ")}]`, () => assert.deepEqual(requiredHops(v(a), v(b)), expected));

    it("2.7 cannot go to 3.x: upgrade to 2.8 first", () => {
        assert.throws(() => requiredHops(v("2.7.0"), v("3.7.1")), /Kong 2\.7 cannot be upgraded to 3\.7 directly; upgrade to 2\.8 first/);
    });
    it("1.x cannot go to 3.x", () => assert.throws(() => requiredHops(v("1.5.0"), v("3.4.3")), /upgrade to 2\.1, then to 2\.8, first/));

    it("a chain with the hops listed is accepted, in order", () => {
        assert.deepEqual(upgradeChain(v("3.4.3"), [v("3.5.0"), v("3.6.1")], v("3.7.1")).map((x) => x.text), ["3.5.0", "3.6.1", "3.7.1"]);
    });
    it("a chain missing a hop names the hop and where", () => {
        assert.throws(() => upgradeChain(v("3.4.3"), [v("3.5.0")], v("3.7.1")), /Kong 3\.5\.0 → 3\.7\.1 is not a direct upgrade \(between 3\.5\.0 and 3\.7\.1\): Kong routes it through 3\.6/);
    });
    it("a chain with hops out of order is refused", () => {
        assert.throws(() => upgradeChain(v("3.4.3"), [v("3.6.1"), v("3.5.0")], v("3.7.1")), /not a direct upgrade/);
    });
});
