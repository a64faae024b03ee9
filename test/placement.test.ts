import { strict as assert } from "assert";
import { describe, it } from "node:test";
import { placeNodes } from "../components/placement";

const hosts = (...spec: Array<[string, number]>) => spec.map(([name, first]) => ({ name, first }));

describe("placeNodes", () => {
    const table: Array<[string, ReturnType<typeof hosts>, number, string[]]> = [
        ["one host takes every node", hosts(["a", 0]), 3, ["a", "a", "a"]],
        ["hosts there from the start: round-robin in list order", hosts(["a", 0], ["b", 0], ["c", 0]), 5, ["a", "b", "c", "a", "b"]],
        ["more hosts than nodes: one node per host", hosts(["a", 0], ["b", 0], ["c", 0]), 2, ["a", "b"]],
        ["a host added at firstNode 4 takes the new nodes", hosts(["a", 0], ["b", 0], ["c", 4]), 6, ["a", "b", "a", "b", "c", "c"]],
        ["and then the hosts take turns again", hosts(["a", 0], ["b", 0], ["c", 4]), 8, ["a", "b", "a", "b", "c", "c", "a", "b"]],
        ["a host that joined later, listed first", hosts(["c", 2], ["a", 0]), 4, ["a", "a", "c", "c"]],
        ["no nodes", hosts(["a", 0]), 0, []],
    ];
    for (const [label, given, count, expected] of table) {
        it(label, () => assert.deepEqual(placeNodes(given, count), expected));
    }

    it("adding a host at the current node count never moves an existing node", () => {
        for (let n = 1; n <= 12; n++) {
            for (let h = 1; h <= 4; h++) {
                const before = hosts(...Array.from({ length: h }, (_, i) => [`h${i}`, 0] as [string, number]));
                const after = [...before, { name: "new", first: n }];
                assert.deepEqual(placeNodes(after, n), placeNodes(before, n), `${n} nodes on ${h} hosts`);
                // Growing the cluster afterwards keeps nodes 0…n-1 where they were.
                assert.deepEqual(placeNodes(after, n + 3).slice(0, n), placeNodes(before, n));
            }
        }
    });

    it("refuses when no host takes node 0", () => {
        assert.throws(() => placeNodes(hosts(["a", 1]), 1), /no Docker host takes node 0/);
    });
});
