/**
 * Priority tiers (src/pool/tiers.ts) through LocalPool: the active tier is the lowest priority
 * with an available backend, whatever makes the others unavailable (down, drained, ejected,
 * full, forced down); retries walk on to the next tier before repeating a backend; weights share
 * traffic within the tier; the snapshot and /metrics say which backends are standbys.
 */
import { describe, expect, test } from "bun:test";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { activePriority, isStandby } from "../../src/pool/tiers.ts";
import type { Backend, BackendOptions } from "../../src/pool/backend.ts";
import { buildSnapshot } from "../../src/admin/snapshot.ts";
import { renderMetrics } from "../../src/admin/metrics.ts";
import { Sampler } from "../../src/admin/sampler.ts";
import { BackendStatsPoller } from "../../src/admin/poller.ts";
import { fakeSource } from "../admin/fixtures.ts";

const b = (name: string, priority: number | undefined, more: Partial<BackendOptions> = {}): BackendOptions => ({
  name, url: `http://127.0.0.1:${5000 + name.charCodeAt(0)}`, ...(priority !== undefined ? { priority } : {}), ...more,
});

/** Primaries a, b (priority 0, the default); standbys c (1) and d (2). */
const tiered = (strategy: Parameters<typeof createPolicy>[0] = "round-robin") =>
  new LocalPool(createPolicy(strategy), [b("a", undefined), b("b", 0), b("c", 1), b("d", 2)]);

const picks = (pool: LocalPool, n: number, exclude?: ReadonlySet<Backend>) => {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const x = pool.pick(exclude)?.name ?? "none";
    seen[x] = (seen[x] ?? 0) + 1;
  }
  return seen;
};

describe("the active tier", () => {
  test("priority defaults to 0; the lowest priority with an available backend takes everything", () => {
    const pool = tiered();
    expect(pool.backends.map((x) => x.priority)).toEqual([0, 0, 1, 2]);
    expect(pool.activePriority()).toBe(0);
    expect(picks(pool, 100)).toEqual({ a: 50, b: 50 });
  });

  test.each([
    ["down (health check)", (x: Backend) => x.setHealthy(false, "probe")],
    ["drained", (x: Backend) => x.setEnabled(false)],
    ["ejected", (x: Backend) => x.eject(60_000, "5xx")],
    ["forced down", (x: Backend) => x.force("down", "maintenance")],
  ])("fails over when every backend of the tier is %s, tier by tier, and back when one returns", (_, takeOut) => {
    const pool = tiered();
    const [a, bb, c] = pool.backends as Backend[];
    takeOut(a!);
    expect(picks(pool, 10)).toEqual({ b: 10 });
    takeOut(bb!);
    expect(pool.activePriority()).toBe(1);
    expect(picks(pool, 10)).toEqual({ c: 10 });
    takeOut(c!);
    expect(pool.activePriority()).toBe(2);
    expect(picks(pool, 10)).toEqual({ d: 10 });
    // Failback: the best tier with an available backend wins again at once.
    pool.backends.forEach((x) => {
      x.setHealthy(true, "probe");
      x.setEnabled(true);
      x.readmit("over");
      x.force(undefined, "auto");
    });
    expect(pool.activePriority()).toBe(0);
    expect(picks(pool, 10)).toEqual({ a: 5, b: 5 });
  });

  test("a full tier (maxConnections reached) overflows to the next one while it is full", () => {
    const pool = new LocalPool(createPolicy("least-connections"), [b("a", 0, { maxConnections: 1 }), b("s", 1)]);
    const lease = pool.get("a")!.acquire();
    expect(pool.pick()!.name).toBe("s");
    lease.release();
    expect(pool.pick()!.name).toBe("a");
  });

  test("no backend available in any tier: nothing is picked (panic mode off)", () => {
    const pool = tiered();
    // Panic mode would balance over the best tier present: see "tiers and panic mode together".
    pool.setPanicThreshold(0);
    for (const x of pool.backends) x.setHealthy(false, "probe");
    expect(pool.activePriority()).toBeUndefined();
    expect(pool.pick()).toBeUndefined();
    expect(pool.pick(new Set([pool.backends[0]!]))).toBeUndefined();
  });

  test("gaps in the numbers do not matter: only their order", () => {
    const pool = new LocalPool(createPolicy("random"), [b("z", 65535), b("y", 10), b("x", 10)]);
    expect(pool.activePriority()).toBe(10);
    expect(Object.keys(picks(pool, 100)).sort()).toEqual(["x", "y"]);
  });
});

describe("retries", () => {
  test("walk on to the next tier once every available backend of the best one was tried, before repeating one", () => {
    const pool = tiered();
    const [a, bb, c, d] = pool.backends as Backend[];
    expect(picks(pool, 10, new Set([a!]))).toEqual({ b: 10 });
    expect(picks(pool, 10, new Set([a!, bb!]))).toEqual({ c: 10 });
    expect(picks(pool, 10, new Set([a!, bb!, c!]))).toEqual({ d: 10 });
    // Every available backend tried: a repeat, in the active tier (a retry on the same backend beats none).
    expect(picks(pool, 10, new Set([a!, bb!, c!, d!]))).toEqual({ a: 5, b: 5 });
    // The tier itself, for everyone else, is still the best one.
    expect(pool.activePriority()).toBe(0);
  });
});

describe("weights within a tier", () => {
  test("share the tier's traffic; a standby's weight counts for nothing while it is a standby", () => {
    const pool = new LocalPool(createPolicy("weighted-round-robin"), [b("a", 0, { weight: 3 }), b("b", 0, { weight: 1 }), b("s", 1, { weight: 1000 })]);
    expect(picks(pool, 400)).toEqual({ a: 300, b: 100 });
  });
});

describe("standby, as the admin side shows it", () => {
  test("isStandby: a worse tier than the active one; nobody is a standby when no tier is available (panic mode off)", () => {
    const pool = tiered();
    // With panic mode on, nothing available means panic over the best tier: see "tiers and panic mode together".
    pool.setPanicThreshold(0);
    const [a, bb, c, d] = pool.backends as Backend[];
    const now = Date.now();
    expect(pool.backends.map((x) => isStandby(x, activePriority(pool.backends, now)))).toEqual([false, false, true, true]);
    a!.setHealthy(false, "probe");
    bb!.setHealthy(false, "probe");
    expect(pool.backends.map((x) => isStandby(x, pool.activePriority()))).toEqual([false, false, false, true]);
    c!.setHealthy(false, "probe");
    d!.setHealthy(false, "probe");
    expect(pool.backends.map((x) => isStandby(x, pool.activePriority()))).toEqual([false, false, false, false]);
  });

  test("/stats gives each backend's priority and standby, the count of standbys and the active priority; /metrics the same", () => {
    const source = fakeSource([b("a", undefined), b("b", 0), b("c", 1), b("d", 2)]);
    const pool = source.pool;
    const poller = new BackendStatsPoller();
    const doc = buildSnapshot(source, new Sampler(source), poller);
    expect(doc.backends.map((x) => [x.name, x.priority, x.standby])).toEqual([["a", 0, false], ["b", 0, false], ["c", 1, true], ["d", 2, true]]);
    expect(doc.balancer.backends).toMatchObject({ total: 4, available: 4, standby: 2 });
    expect(doc.balancer.activePriority).toBe(0);
    pool.backends[0]!.setHealthy(false, "probe");
    pool.backends[1]!.setHealthy(false, "probe");
    const failed = buildSnapshot(source, new Sampler(source), poller);
    expect(failed.backends.map((x) => x.standby)).toEqual([false, false, false, true]);
    expect(failed.balancer.activePriority).toBe(1);
    const text = renderMetrics(source, poller);
    expect(text).toContain('switchyard_backend_priority{pool="default",backend="d"} 2');
    expect(text).toContain('switchyard_backend_standby{pool="default",backend="c"} 0');
    expect(text).toContain('switchyard_backend_standby{pool="default",backend="d"} 1');
  });
});

describe("tiers and panic mode together (pool.ts decides both)", () => {
  /** Primaries p1-p3 (0), standbys s1-s3 (1). */
  const six = () => new LocalPool(createPolicy("round-robin"), [b("p", 0), b("q", 0), b("r", 0), b("s", 1), b("t", 1), b("u", 1)]);

  test("a primary tier under the threshold with a healthy standby tier: no panic, the primaries' survivor takes it all", () => {
    const pool = six();
    const [p, q] = pool.backends as Backend[];
    p!.setHealthy(false, "probe");
    q!.setHealthy(false, "probe");
    // Tier 0: 1 of 3 (33%); tier 1: 3 of 3. RFC 2782 keeps the lowest tier it can reach.
    expect(pool.panicking()).toBe(false);
    expect(picks(pool, 10)).toEqual({ r: 10 });
  });

  test("every tier under the threshold: panic, over the best tier that still has a healthy backend", () => {
    const pool = six();
    for (const x of pool.backends.slice(0, 5)) x.setHealthy(false, "probe");
    // Tier 0: 0 of 3; tier 1: 1 of 3. Panic spreads over tier 1, healthy or not.
    expect(pool.panicking()).toBe(true);
    expect(pool.activePriority()).toBe(1);
    expect(picks(pool, 30)).toEqual({ s: 10, t: 10, u: 10 });
    expect(pool.panic.picks).toBe(30);
    // The primaries' first return ends it: tier 0 is back at... 1 of 3, tier 1 at 1 of 3: still
    // panic, now over tier 0; two primaries back (67%) end it.
    pool.backends[0]!.setHealthy(true, "probe");
    expect(pool.panicking()).toBe(true);
    expect(picks(pool, 30)).toEqual({ p: 10, q: 10, r: 10 });
    pool.backends[1]!.setHealthy(true, "probe");
    expect(pool.panicking()).toBe(false);
    expect(picks(pool, 10)).toEqual({ p: 5, q: 5 });
  });

  test("nothing healthy anywhere: panic over the best tier present", () => {
    const pool = six();
    for (const x of pool.backends) x.setHealthy(false, "probe");
    expect(pool.panicking()).toBe(true);
    // /stats and /metrics read the same tier: the standbys are the ones panic leaves out.
    expect(pool.activePriority()).toBe(0);
    expect(picks(pool, 30)).toEqual({ p: 10, q: 10, r: 10 });
    expect(pool.routableCount()).toBe(3);
  });
});
