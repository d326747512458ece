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

describe("panic mode (Envoy's healthy panic threshold), decided in the pool for every policy", () => {
  const four = () =>
    new LocalPool(createPolicy("round-robin"), ["a", "b", "c", "d"].map((name, i) => ({ name, url: `http://127.0.0.1:${i + 1}` })));
  const picked = (pool: LocalPool, n = 8) => new Set(names(Array.from({ length: n }, () => pool.pick())));

  test("at the threshold: normal; below it: every backend in service is a candidate, healthy or not", () => {
    const pool = four();
    const [a, b, c] = pool.backends as [Backend, Backend, Backend];
    a.setHealthy(false, "probe");
    b.eject(60_000, "5xx");
    // 2 of 4 serving: 50% is not below the default 50%.
    expect(pool.panicking()).toBe(false);
    expect(picked(pool)).toEqual(new Set(["c", "d"]));
    expect(pool.routableCount()).toBe(2);
    c.setHealthy(false, "probe");
    // 1 of 4: panic, and all four share the traffic.
    expect(pool.panicking()).toBe(true);
    expect(picked(pool)).toEqual(new Set(["a", "b", "c", "d"]));
    expect(pool.routableCount()).toBe(4);
    // /readyz's count stays the honest one.
    expect(pool.availableCount()).toBe(1);
  });

  test("every backend down: traffic still goes to all of them rather than none", () => {
    const pool = four();
    for (const b of pool.backends) b.setHealthy(false, "probe");
    expect(picked(pool)).toEqual(new Set(["a", "b", "c", "d"]));
    // Exclusion (a retry walks on) still applies in panic.
    const [a, b, c] = pool.backends as [Backend, Backend, Backend];
    for (let i = 0; i < 4; i++) expect(pool.pick(new Set([a, b, c]))?.name).toBe("d");
  });

  test("drained and forced-down backends stay out, and do not count toward the share", () => {
    const pool = four();
    const [a, b, c, d] = pool.backends as [Backend, Backend, Backend, Backend];
    a.setEnabled(false);
    b.force("down", "maintenance");
    c.setHealthy(false, "probe");
    // In service: c and d; serving: d. 1 of 2 is 50%: no panic.
    expect(pool.panicking()).toBe(false);
    expect(picked(pool)).toEqual(new Set(["d"]));
    d.setHealthy(false, "probe");
    expect(pool.panicking()).toBe(true);
    expect(picked(pool)).toEqual(new Set(["c", "d"]));
    // A forced-up backend serves whatever its health.
    c.force("up", "operator");
    expect(pool.panicking()).toBe(false);
    expect(picked(pool)).toEqual(new Set(["c"]));
  });

  test("maxConnections still holds in panic: a full backend is no candidate", () => {
    const pool = new LocalPool(createPolicy("round-robin"), [
      { name: "a", url: "http://127.0.0.1:1", maxConnections: 1 },
      { name: "b", url: "http://127.0.0.1:2" },
      { name: "c", url: "http://127.0.0.1:3" },
    ]);
    for (const b of pool.backends) b.setHealthy(false, "probe");
    const lease = pool.get("a")!.acquire();
    expect(picked(pool)).toEqual(new Set(["b", "c"]));
    lease.release();
  });

  test("a sticky session's backend is kept in panic even when unhealthy", () => {
    const pool = four();
    for (const b of pool.backends) b.setHealthy(false, "probe");
    const c = pool.get("c")!;
    for (let i = 0; i < 4; i++) expect(pool.pick(undefined, undefined, c)).toBe(c);
  });

  test("panicThreshold 0 turns it off; 100 panics as soon as one backend is out", () => {
    const pool = four();
    const [a, b, c] = pool.backends as [Backend, Backend, Backend];
    for (const x of [a, b, c]) x.setHealthy(false, "probe");
    pool.setPanicThreshold(0);
    expect(pool.panicking()).toBe(false);
    expect(picked(pool)).toEqual(new Set(["d"]));
    for (const x of [a, b, c]) x.setHealthy(true, "probe");
    pool.setPanicThreshold(100);
    expect(pool.panicking()).toBe(false);
    a.setHealthy(false, "probe");
    expect(pool.panicking()).toBe(true);
  });

  test("each flip is announced once, when the state change happens, and counted; picks in panic are counted", () => {
    const pool = four();
    const seen: string[] = [];
    pool.onPanicChange((c) => seen.push(`${c.panic ? "panic" : "calm"} ${c.serving}/${c.inService} @${c.threshold}`));
    const [a, b, c] = pool.backends as [Backend, Backend, Backend];
    a.setHealthy(false, "probe");
    b.setHealthy(false, "probe");
    expect(seen).toEqual([]);
    c.setHealthy(false, "probe");
    expect(seen).toEqual(["panic 1/4 @50"]);
    expect(pool.panic).toEqual({ entered: 1, picks: 0 });
    for (let i = 0; i < 5; i++) pool.pick();
    expect(pool.panic.picks).toBe(5);
    // Other changes while in panic announce nothing.
    a.setEnabled(false);
    expect(seen).toHaveLength(1);
    c.setHealthy(true, "probe");
    expect(seen).toEqual(["panic 1/4 @50", "calm 2/3 @50"]);
    pool.pick();
    expect(pool.panic).toEqual({ entered: 1, picks: 5 });
    // Removing members and a new threshold are evaluated too.
    pool.setPanicThreshold(80);
    expect(seen.at(-1)).toBe("panic 2/3 @80");
    pool.remove("b");
    expect(seen.at(-1)).toBe("calm 2/2 @80");
    expect(pool.panic.entered).toBe(2);
  });

  test("an ejection that runs out by the clock ends panic at the next pick", () => {
    const pool = four();
    const [a, b, c] = pool.backends as [Backend, Backend, Backend];
    a.setHealthy(false, "probe");
    b.setHealthy(false, "probe");
    c.eject(1, "5xx", Date.now() - 10);
    // Its end time has passed: serving again, so 2 of 4.
    expect(pool.panicking()).toBe(false);
  });
});
