/**
 * The conformance suite every selection policy runs (as Hono's routers share common.case.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { Backend } from "../../src/pool/backend.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import type { SelectionPolicy } from "../../src/pool/selection.ts";

export function backends(n: number, weights: number[] = []): Backend[] {
  return Array.from({ length: n }, (_, i) => new Backend({ name: `b${i + 1}`, url: `http://127.0.0.1:${5001 + i}`, weight: weights[i] ?? 1 }));
}

export function counts(picks: Backend[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const b of picks) c[b.name] = (c[b.name] ?? 0) + 1;
  return c;
}

export function runPolicyConformance(name: string, newPolicy: () => SelectionPolicy): void {
  describe(`${name}: conformance`, () => {
    test("picks only among the candidates it is given", () => {
      const p = newPolicy();
      const all = backends(4);
      const candidates = [all[1]!, all[3]!];
      for (let i = 0; i < 200; i++) expect(candidates).toContain(p.pick(candidates));
    });

    test("a request key never takes a pick outside the candidates", () => {
      const p = newPolicy();
      const all = backends(4);
      p.membersChanged?.(all);
      const candidates = [all[0]!, all[2]!];
      for (let i = 0; i < 200; i++) expect(candidates).toContain(p.pick(candidates, `user-${i}`));
    });

    test("a single candidate is always chosen", () => {
      const p = newPolicy();
      const [only] = backends(1);
      for (let i = 0; i < 20; i++) expect(p.pick([only!])).toBe(only!);
    });

    test("equal, idle backends share sequential traffic: none starves, none gets it all", () => {
      const p = newPolicy();
      const list = backends(3);
      const c = counts(Array.from({ length: 3000 }, () => p.pick(list)));
      for (const b of list) expect(c[b.name] ?? 0).toBeGreaterThan(700);
    });

    test("through the pool: unavailable backends are skipped, exclusions honoured, fallback when all excluded", () => {
      const list = backends(3).map((b) => ({ name: b.name, url: b.url.href }));
      const pool = new LocalPool(newPolicy(), list);
      const [a, b, c] = pool.backends as Backend[];
      b!.setHealthy(false, "test");
      c!.setEnabled(false);
      for (let i = 0; i < 50; i++) expect(pool.pick()).toBe(a!);
      for (let i = 0; i < 50; i++) expect(pool.pick(undefined, `key-${i}`)).toBe(a!);
      expect(pool.pick(new Set([a!]))).toBe(a!);
      a!.setHealthy(false, "test");
      // Nothing serving: in panic mode (the default 50%) every backend in service is a
      // candidate, whatever the policy: a and b, never the drained c.
      expect(pool.panicking()).toBe(true);
      for (let i = 0; i < 50; i++) expect([a, b]).toContain(pool.pick(undefined, `key-${i}`));
      pool.setPanicThreshold(0);
      expect(pool.pick()).toBeUndefined();
    });

    test("a full backend (maxConnections reached) is not chosen", () => {
      const pool = new LocalPool(newPolicy(), [
        { name: "small", url: "http://127.0.0.1:5001", maxConnections: 1 },
        { name: "big", url: "http://127.0.0.1:5002" },
      ]);
      const small = pool.get("small")!;
      const lease = small.acquire();
      for (let i = 0; i < 50; i++) expect(pool.pick()!.name).toBe("big");
      lease.release();
    });

    test("a sticky session's backend is taken while available and not excluded, whatever the policy", () => {
      const pool = new LocalPool(newPolicy(), backends(3).map((b) => ({ name: b.name, url: b.url.href })));
      const b = pool.backends[1]!;
      for (let i = 0; i < 50; i++) expect(pool.pick(undefined, `key-${i}`, b)).toBe(b);
      // A retry after the pinned backend failed goes elsewhere.
      for (let i = 0; i < 20; i++) expect(pool.pick(new Set([b]), undefined, b)).not.toBe(b);
      b.setHealthy(false, "test");
      for (let i = 0; i < 50; i++) expect(pool.pick(undefined, undefined, b)).not.toBe(b);
      b.setHealthy(true, "test");
      expect(pool.pick(undefined, undefined, b)).toBe(b);
      // A backend removed from the pool is not honoured even though its object is still up.
      pool.remove(b.name);
      for (let i = 0; i < 20; i++) expect(pool.pick(undefined, undefined, b)).not.toBe(b);
    });

    test("priority tiers: only the best tier with an available backend is picked from; failover and failback", () => {
      const pool = new LocalPool(newPolicy(), [
        { name: "p1", url: "http://127.0.0.1:5001" },
        { name: "p2", url: "http://127.0.0.1:5002" },
        { name: "s1", url: "http://127.0.0.1:5003", priority: 1 },
        { name: "s2", url: "http://127.0.0.1:5004", priority: 1 },
      ]);
      const [p1, p2, s1, s2] = pool.backends as Backend[];
      const picked = (n: number) => new Set(Array.from({ length: n }, (_, i) => pool.pick(undefined, `key-${i}`)!.name));
      expect([...picked(200)].sort()).toEqual(["p1", "p2"]);
      p1!.setHealthy(false, "test");
      expect([...picked(100)]).toEqual(["p2"]);
      p2!.setHealthy(false, "test");
      expect([...picked(200)].sort()).toEqual(["s1", "s2"]);
      // A sticky session on a primary comes back to it with the primary.
      p2!.setHealthy(true, "test");
      expect([...picked(100)]).toEqual(["p2"]);
      for (let i = 0; i < 20; i++) expect(pool.pick(undefined, undefined, s1)).toBe(p2!);
      p2!.setHealthy(false, "test");
      s2!.setHealthy(false, "test");
      for (let i = 0; i < 20; i++) expect(pool.pick(undefined, undefined, s1)).toBe(s1!);
    });

    test("slow start: a backend that just came back gets a reduced share, then a full one", () => {
      let now = 1_000_000;
      const realNow = Date.now;
      Date.now = () => now;
      try {
        const pool = new LocalPool(newPolicy(), [
          { name: "steady", url: "http://127.0.0.1:5001", slowStart: 10_000 },
          { name: "back", url: "http://127.0.0.1:5002", slowStart: 10_000 },
        ]);
        const back = pool.get("back")!;
        back.setHealthy(false, "test");
        back.setHealthy(true, "test");
        expect(back.state()).toBe("slow-starting");
        const early = counts(Array.from({ length: 2000 }, () => pool.pick()!)).back ?? 0;
        now += 10_000;
        expect(back.state()).toBe("up");
        const late = counts(Array.from({ length: 2000 }, () => pool.pick()!)).back ?? 0;
        expect(early).toBeLessThan(400);
        expect(late).toBeGreaterThan(800);
      } finally {
        Date.now = realNow;
      }
    });
  });
}
