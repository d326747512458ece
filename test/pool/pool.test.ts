/**
 * LocalPool on its own: the set of backends (add, get, remove), the pick with exclusions and its
 * fallback, availability counts, state changes forwarded from every backend, and slow start
 * applied to the candidates whatever the policy.
 */
import { describe, expect, test } from "bun:test";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import type { Backend, StateChange } from "../../src/pool/backend.ts";

const three = () =>
  new LocalPool(createPolicy("round-robin"), [
    { name: "a", url: "http://127.0.0.1:1" },
    { name: "b", url: "http://127.0.0.1:2" },
    { name: "c", url: "http://127.0.0.1:3" },
  ]);
const names = (bs: readonly (Backend | undefined)[]) => bs.map((b) => b?.name);

describe("the set", () => {
  test("get by name; a second backend of the same name is refused; remove returns what it removed", () => {
    const pool = three();
    expect(pool.get("b")?.url.port).toBe("2");
    expect(() => pool.add({ name: "b", url: "http://127.0.0.1:9" })).toThrow('a backend named "b" already exists');
    expect(pool.remove("b")?.name).toBe("b");
    expect(pool.remove("b")).toBeUndefined();
    expect(names(pool.backends)).toEqual(["a", "c"]);
  });

  test("backends is a snapshot: adding or removing replaces the list instead of changing one a reader holds", () => {
    const pool = three();
    const before = pool.backends;
    pool.add({ name: "d", url: "http://127.0.0.1:4" });
    pool.remove("a");
    expect(names(before)).toEqual(["a", "b", "c"]);
    expect(names(pool.backends)).toEqual(["b", "c", "d"]);
  });

  test("a removed backend is never picked", () => {
    const pool = three();
    pool.remove("b");
    const picked = new Set(Array.from({ length: 10 }, () => pool.pick()?.name));
    expect([...picked].sort()).toEqual(["a", "c"]);
  });
});

describe("pick", () => {
  test("only available backends; undefined when there is none (panic mode off)", () => {
    const pool = three();
    // Panic mode would balance over a and c once none is available: see "panic mode" below.
    pool.setPanicThreshold(0);
    pool.get("a")!.setHealthy(false, "probe");
    pool.get("b")!.setEnabled(false);
    expect(pool.availableCount()).toBe(1);
    expect(names(Array.from({ length: 4 }, () => pool.pick()))).toEqual(["c", "c", "c", "c"]);
    pool.get("c")!.eject(60_000, "5xx");
    expect(pool.availableCount()).toBe(0);
    expect(pool.pick()).toBeUndefined();
    expect(pool.pick(new Set([pool.get("a")!]))).toBeUndefined();
  });

  test("excluded backends are skipped; when all available ones are excluded, one of them is picked anyway", () => {
    const pool = three();
    const [a, b, c] = pool.backends as [Backend, Backend, Backend];
    for (let i = 0; i < 6; i++) expect(pool.pick(new Set([a, b]))).toBe(c);
    c.setHealthy(false, "probe");
    // a and b are excluded and c is down: a retry on a tried backend beats no retry.
    const fallback = pool.pick(new Set([a, b]));
    expect(fallback === a || fallback === b).toBe(true);
  });
});

describe("state changes", () => {
  test("the pool forwards every backend's changes, those added later too, until unsubscribed", () => {
    const pool = three();
    const seen: string[] = [];
    const off = pool.onStateChange((c: StateChange) => seen.push(`${c.backend.name} ${c.from}->${c.to}`));
    pool.get("a")!.setHealthy(false, "probe");
    const d = pool.add({ name: "d", url: "http://127.0.0.1:4" });
    d.setEnabled(false);
    off();
    pool.get("a")!.setHealthy(true, "probe");
    expect(seen).toEqual(["a up->down", "d up->draining"]);
  });
});

describe("slow start, for every policy", () => {
  test("a ramping backend stays a candidate with probability equal to its ramp factor", () => {
    // The random source decides: below the factor keeps the ramping backend, above drops it.
    let next = 0;
    const pool = new LocalPool(createPolicy("round-robin"), [{ name: "a", url: "http://127.0.0.1:1" }], () => next);
    // Added while running with a 10 s window, 1 s ago: factor 0.1.
    pool.add({ name: "new", url: "http://127.0.0.1:2", slowStart: 10_000, rampFrom: Date.now() - 1000 });
    const ramping = pool.get("new")!;
    expect(ramping.rampFactor()).toBeCloseTo(0.1, 1);
    expect(ramping.state()).toBe("slow-starting");
    next = 0.99;
    expect(names(Array.from({ length: 4 }, () => pool.pick()))).toEqual(["a", "a", "a", "a"]);
    next = 0.01;
    expect(new Set(names(Array.from({ length: 4 }, () => pool.pick())))).toEqual(new Set(["a", "new"]));
  });

  test("thinning never leaves nothing to pick: a lone ramping backend is still picked", () => {
    const pool = new LocalPool(createPolicy("least-connections"), [], () => 0.99);
    pool.add({ name: "only", url: "http://127.0.0.1:1", slowStart: 60_000 });
    expect(pool.get("only")!.state()).toBe("slow-starting");
    expect(pool.pick()?.name).toBe("only");
  });

  test("backends given at construction take a full share at once; one added later ramps", () => {
    const pool = new LocalPool(createPolicy("random"), [{ name: "a", url: "http://127.0.0.1:1", slowStart: 60_000 }]);
    expect(pool.get("a")!.rampFactor()).toBe(1);
    const later = pool.add({ name: "b", url: "http://127.0.0.1:2", slowStart: 60_000 });
    expect(later.rampFactor()).toBeLessThan(0.1);
  });
});
