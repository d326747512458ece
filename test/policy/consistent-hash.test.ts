import { describe, expect, test } from "bun:test";
import { ConsistentHash, HashRing } from "../../src/policy/consistent-hash.ts";
import type { SelectionPolicy } from "../../src/pool/selection.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import type { Backend } from "../../src/pool/backend.ts";
import { counts } from "./conformance.ts";

const KEYS = Array.from({ length: 100_000 }, (_, i) => `user-${i}`);

function pool(n: number, weights: number[] = []): LocalPool {
  return new LocalPool(
    new ConsistentHash(),
    Array.from({ length: n }, (_, i) => ({ name: `backend-${i + 1}`, url: `http://10.0.0.${i + 1}:8080`, weight: weights[i] ?? 1 })),
  );
}

function assign(p: LocalPool, keys = KEYS): Backend[] {
  return keys.map((k) => p.pick(undefined, k)!);
}

describe("consistent-hash", () => {
  for (const n of [3, 5, 10]) {
    test(`one of ${n} backends leaves: only its keys move (at most 1/N + 5% of 100,000), and they come back when it returns`, () => {
      const p = pool(n);
      const before = assign(p);
      const leaving = p.backends[1]!;
      leaving.setHealthy(false, "test");
      const during = assign(p);
      let moved = 0;
      for (let i = 0; i < KEYS.length; i++) {
        if (during[i] !== before[i]) {
          moved++;
          // A key moves only because its backend left.
          expect(before[i]).toBe(leaving);
        }
        expect(during[i]).not.toBe(leaving);
      }
      expect(moved / KEYS.length).toBeLessThanOrEqual(1 / n + 0.05);
      // Its keys are spread over the others, not dumped on one neighbour.
      const receivers = new Set(during.filter((_, i) => before[i] === leaving));
      expect(receivers.size).toBe(n - 1);
      leaving.setHealthy(true, "test");
      const after = assign(p);
      for (let i = 0; i < KEYS.length; i++) if (after[i] !== before[i]) throw new Error(`key ${KEYS[i]} did not come back`);
    });
  }

  test("equal weights share the keys evenly; weights 1,2,3 get 1/6, 2/6, 3/6", () => {
    const even = counts(assign(pool(4)));
    for (const c of Object.values(even)) expect(Math.abs(c / KEYS.length - 0.25)).toBeLessThan(0.03);
    const weighted = counts(assign(pool(3, [1, 2, 3])));
    expect(Math.abs(weighted["backend-1"]! / KEYS.length - 1 / 6)).toBeLessThan(0.03);
    expect(Math.abs(weighted["backend-2"]! / KEYS.length - 2 / 6)).toBeLessThan(0.03);
    expect(Math.abs(weighted["backend-3"]! / KEYS.length - 3 / 6)).toBeLessThan(0.03);
  });

  test("the same key goes to the same backend, in this pool and in another built from the same config", () => {
    const a = assign(pool(5), KEYS.slice(0, 2000)).map((b) => b.name);
    const b = assign(pool(5), KEYS.slice(0, 2000)).map((b) => b.name);
    expect(a).toEqual(b);
    const p = pool(5);
    const alice = p.pick(undefined, "alice");
    for (let i = 0; i < 20; i++) expect(p.pick(undefined, "alice")).toBe(alice);
  });

  test("a retry walks on to the next backend on the ring, the same one every time", () => {
    const p = pool(5);
    for (const key of KEYS.slice(0, 500)) {
      const first = p.pick(undefined, key)!;
      const second = p.pick(new Set([first]), key)!;
      expect(second).not.toBe(first);
      expect(p.pick(new Set([first]), key)).toBe(second);
      // The retry target is where the key would live if the first backend left.
      first.setHealthy(false, "test");
      expect(p.pick(undefined, key)).toBe(second);
      first.setHealthy(true, "test");
    }
  });

  test("a full backend (maxConnections) passes its keys to the next on the ring for as long as it is full", () => {
    const p = new LocalPool(new ConsistentHash(), [
      { name: "a", url: "http://10.0.0.1", maxConnections: 1 },
      { name: "b", url: "http://10.0.0.2" },
      { name: "c", url: "http://10.0.0.3" },
    ]);
    const a = p.get("a")!;
    const mine = KEYS.slice(0, 3000).filter((k) => p.pick(undefined, k) === a);
    expect(mine.length).toBeGreaterThan(500);
    const lease = a.acquire();
    for (const k of mine) expect(p.pick(undefined, k)).not.toBe(a);
    lease.release();
    for (const k of mine) expect(p.pick(undefined, k)).toBe(a);
  });

  test("adding a backend to N takes about 1/(N+1) of the keys, all of them to the new one", () => {
    const p = pool(4);
    const before = assign(p);
    const added = p.add({ name: "backend-5", url: "http://10.0.0.5:8080" });
    const after = assign(p);
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (after[i] !== before[i]) {
        moved++;
        expect(after[i]).toBe(added);
      }
    }
    expect(moved / KEYS.length).toBeLessThanOrEqual(1 / 5 + 0.05);
    p.remove("backend-5");
    const back = assign(p);
    for (let i = 0; i < KEYS.length; i++) if (back[i] !== before[i]) throw new Error(`key ${KEYS[i]} did not come back`);
  });

  test("the ring is rebuilt when members are added or removed, never per request or on a health change", () => {
    const inner = new ConsistentHash();
    let rebuilds = 0;
    const counting: SelectionPolicy = {
      name: inner.name,
      pick: (c, k) => inner.pick(c, k),
      membersChanged: (m) => {
        rebuilds++;
        inner.membersChanged(m);
      },
    };
    const p = new LocalPool(counting, [
      { name: "a", url: "http://10.0.0.1" },
      { name: "b", url: "http://10.0.0.2" },
    ]);
    const built = rebuilds;
    for (let i = 0; i < 1000; i++) p.pick(undefined, `k${i}`);
    p.get("a")!.setHealthy(false, "test");
    p.get("a")!.setHealthy(true, "test");
    p.get("b")!.setEnabled(false);
    for (let i = 0; i < 1000; i++) p.pick(undefined, `k${i}`);
    expect(rebuilds).toBe(built);
    p.add({ name: "c", url: "http://10.0.0.3" });
    expect(rebuilds).toBe(built + 1);
    p.remove("c");
    expect(rebuilds).toBe(built + 2);
  });

  test("requests without a key are spread by weighted round-robin", () => {
    const p = pool(3, [2, 1, 1]);
    expect(counts(Array.from({ length: 400 }, () => p.pick()!))).toEqual({ "backend-1": 200, "backend-2": 100, "backend-3": 100 });
  });

  test("the ring stays bounded whatever the weights", () => {
    const p = pool(3, [1000, 1000, 1]);
    const c = counts(assign(p, KEYS.slice(0, 20_000)));
    // The light backend still owns a point (a small share), the heavy ones share the rest.
    expect(c["backend-3"] ?? 0).toBeLessThan(200);
    expect(Math.abs(c["backend-1"]! - c["backend-2"]!)).toBeLessThan(2000);
    const ring = new HashRing(p.backends);
    expect(ring.size).toBeLessThanOrEqual(1 << 18);
  });
});
