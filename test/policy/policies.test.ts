import { describe, expect, test } from "bun:test";
import { POLICIES } from "../../src/policy/policy.ts";
import { POLICY_NAMES } from "../../src/config/policy-names.ts";
import { backends, counts, runPolicyConformance } from "./conformance.ts";

for (const name of POLICY_NAMES) runPolicyConformance(name, POLICIES[name]);

describe("policy specifics", () => {
  test("registry covers every name", () => {
    expect(Object.keys(POLICIES).sort()).toEqual([...POLICY_NAMES].sort());
    for (const name of POLICY_NAMES) expect(POLICIES[name]().name).toBe(name);
  });

  test("weighted-round-robin is smooth: weights 5,1,1 give a,a,b,a,c,a,a", () => {
    const p = POLICIES["weighted-round-robin"]();
    const [a, b, c] = backends(3, [5, 1, 1]);
    const list = [a!, b!, c!];
    const seq = Array.from({ length: 14 }, () => p.pick(list)).map((x) => ({ b1: "a", b2: "b", b3: "c" })[x.name]);
    expect(seq.join(",")).toBe("a,a,b,a,c,a,a,a,a,b,a,c,a,a");
  });

  test("round-robin cycles in order", () => {
    const p = POLICIES["round-robin"]();
    const list = backends(3);
    expect(Array.from({ length: 6 }, () => p.pick(list).name)).toEqual(["b1", "b2", "b3", "b1", "b2", "b3"]);
  });

  test("least-connections picks the least loaded, relative to weight", () => {
    const p = POLICIES["least-connections"]();
    const [a, b, c] = backends(3, [1, 1, 4]);
    const leases = [a!.acquire(), a!.acquire(), b!.acquire(), c!.acquire(), c!.acquire(), c!.acquire()];
    // loads: a 2/1, b 1/1, c 3/4 → c
    expect(p.pick([a!, b!, c!])).toBe(c!);
    leases.forEach((l) => l.release());
  });

  test("least-connections breaks ties in turn, not always the first", () => {
    const p = POLICIES["least-connections"]();
    const list = backends(3);
    expect(Array.from({ length: 6 }, () => p.pick(list).name).sort()).toEqual(["b1", "b1", "b2", "b2", "b3", "b3"]);
  });

  test("power-of-two never picks the most loaded of three when the other two are idle", () => {
    const p = POLICIES["power-of-two"]();
    const [a, b, c] = backends(3);
    const leases = Array.from({ length: 5 }, () => a!.acquire());
    const c1 = counts(Array.from({ length: 600 }, () => p.pick([a!, b!, c!])));
    expect(c1.b1 ?? 0).toBe(0);
    leases.forEach((l) => l.release());
  });

  test("random follows weights", () => {
    const p = POLICIES.random();
    const list = backends(2, [3, 1]);
    const c = counts(Array.from({ length: 8000 }, () => p.pick(list)));
    expect(c.b1! / 8000).toBeGreaterThan(0.7);
    expect(c.b1! / 8000).toBeLessThan(0.8);
  });
});
