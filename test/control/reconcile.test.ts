/**
 * reconcile(desired) against real sim backends and a running health monitor: backends are
 * matched by name, those that stay keep their runtime state, those removed leave nothing
 * running, and new ones with a check get traffic only once they have answered.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { validateConfig } from "../../src/config/load.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { HealthMonitor } from "../../src/health/monitor.ts";
import { PassiveHealth } from "../../src/health/passive.ts";
import { Reconciler, ReconcileError, type BackendDefaults, type DesiredBackend } from "../../src/control/reconcile.ts";
import type { StateChange } from "../../src/pool/backend.ts";
import { startSimBackend, type SimBackend } from "../../sim/backend.ts";
import { waitFor } from "../helpers/wait.ts";

const FAST_CHECK = { path: "/health", interval: "100ms", timeout: "500ms", rise: 1, fall: 1 };

interface Rig {
  pool: LocalPool;
  health: HealthMonitor;
  passive: PassiveHealth;
  reconciler: Reconciler;
  changes: StateChange[];
  /** The config's backends and defaults for a list of entries, as validateConfig makes them. */
  desired(backends: Record<string, unknown>[], healthCheck?: unknown): { backends: DesiredBackend[]; defaults: BackendDefaults };
}

const sims: SimBackend[] = [];
const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) {
    r.passive.stop();
    await r.health.stop();
  }
  for (const s of sims.splice(0)) await s.stop();
});

async function sim(name: string, health: "up" | "down" = "up"): Promise<SimBackend> {
  const s = await startSimBackend({ name, port: 0, health });
  sims.push(s);
  return s;
}

async function rig(initial: Record<string, unknown>[], healthCheck: unknown = false): Promise<Rig> {
  const pool = new LocalPool(createPolicy("round-robin"));
  const health = new HealthMonitor(new Map());
  const passive = new PassiveHealth(pool, { consecutiveFailures: 1, baseEjectionTime: 60_000, maxEjectionTime: 60_000, maxEjectedPercent: 100, readmitAfter: 60_000 }, (b) => health.probes(b));
  const desired = (backends: Record<string, unknown>[], hc: unknown = healthCheck) => {
    const c = validateConfig({ backends, healthCheck: hc });
    return { backends: c.pools.default!.backends as DesiredBackend[], defaults: { healthCheck: c.pools.default!.healthCheck, slowStart: c.pools.default!.slowStart } };
  };
  const first = desired(initial);
  const reconciler = new Reconciler({ pool, health, passive }, first.defaults);
  const r: Rig = { pool, health, passive, reconciler, changes: [], desired };
  rigs.push(r);
  pool.onStateChange((c) => r.changes.push(c));
  await reconciler.reconcile(first.backends);
  await health.start();
  return r;
}

describe("reconcile", () => {
  test("matches by name: adds, removes, and updates in place keeping runtime state and counters", async () => {
    const [a, b, c] = [await sim("a"), await sim("b"), await sim("c")];
    const r = await rig([{ name: "a", url: a.url }, { name: "b", url: b.url }]);
    const ba = r.pool.get("a")!;
    const lease = ba.acquire();
    for (let i = 0; i < 7; i++) ba.stats.countRequest();
    ba.setEnabled(false, "drained by an operator");

    const next = r.desired([{ name: "a", url: a.url, weight: 3, maxConnections: 10 }, { name: "c", url: c.url }]);
    const result = await r.reconciler.reconcile(next.backends, next.defaults);

    expect(result.added).toEqual(["c"]);
    expect(result.removed).toEqual(["b"]);
    expect(result.updated).toEqual(["a"]);
    expect(result.lines).toContain("a: weight 1 -> 3, maxConnections 0 -> 10");
    expect(r.pool.backends.map((x) => x.name)).toEqual(["a", "c"]);
    // The same object: counters, in-flight work and an operator's drain carry over.
    expect(r.pool.get("a")).toBe(ba);
    expect(ba.weight).toBe(3);
    expect(ba.maxConnections).toBe(10);
    expect(ba.stats.requests).toBe(7);
    expect(ba.inFlight).toBe(1);
    expect(ba.state()).toBe("draining");
    lease.release();
    expect(r.reconciler.desired.map((d) => d.name)).toEqual(["a", "c"]);
  });

  test("a removed backend leaves nothing behind: no probe loop, no passive timer, no subscription", async () => {
    const [a, b] = [await sim("a"), await sim("b")];
    const r = await rig([{ name: "a", url: a.url }, { name: "b", url: b.url }], FAST_CHECK);
    const bb = r.pool.get("b")!;
    expect(r.health.probes(bb)).toBe(true);
    await waitFor(() => r.health.pendingFor(bb) > 0, "b's probe loop to run");
    // Both up first: passive health never ejects the last available backend, so with a still
    // waiting for its first probe, b's ejection would rightly be refused.
    await waitFor(() => r.pool.get("a")!.state() === "up" && bb.state() === "up", "a and b up");
    // An ejection leaves a timer to end it.
    r.passive.failed(bb, "status 502");
    expect(bb.state()).toBe("ejected");
    expect(r.passive.pendingFor(bb)).toBe(1);
    expect(bb.listenerCount).toBe(1);

    const next = r.desired([{ name: "a", url: a.url }], FAST_CHECK);
    await r.reconciler.reconcile(next.backends, next.defaults);

    expect(r.pool.get("b")).toBeUndefined();
    expect(r.health.probes(bb)).toBe(false);
    expect(r.health.pendingFor(bb)).toBe(0);
    expect(r.passive.pendingFor(bb)).toBe(0);
    expect(bb.listenerCount).toBe(0);
    // Its state changes reach nobody, and no probe of it runs any more.
    const seen = r.changes.length;
    bb.setHealthy(false, "after removal");
    expect(r.changes.length).toBe(seen);
    const lastCheck = bb.lastCheck?.at;
    const aChecks = r.pool.get("a")!.lastCheck?.at ?? 0;
    await waitFor(() => (r.pool.get("a")!.lastCheck?.at ?? 0) > aChecks + 150, "two more probes of a");
    expect(bb.lastCheck?.at).toBe(lastCheck);
  });

  test("a backend added while running with a check starts down and gets traffic only after its first probe", async () => {
    const [a, up, down] = [await sim("a"), await sim("new-up"), await sim("new-down", "down")];
    const r = await rig([{ name: "a", url: a.url }], FAST_CHECK);
    const next = r.desired([{ name: "a", url: a.url }, { name: "new-up", url: up.url }, { name: "new-down", url: down.url }], FAST_CHECK);
    const done = r.reconciler.reconcile(next.backends, next.defaults);
    // In the pool at once, but not available before its probe has answered.
    await waitFor(() => r.pool.get("new-up") !== undefined, "new-up in the pool");
    const fresh = r.pool.get("new-up")!;
    if (r.changes.every((c) => c.backend !== fresh)) {
      expect(fresh.available()).toBe(false);
      expect(fresh.lastChangeReason).toBe("added; waiting for its first health check");
    }
    const result = await done;
    expect(result.added).toEqual(["new-up", "new-down"]);
    expect(fresh.available()).toBe(true);
    const flip = r.changes.find((c) => c.backend === fresh)!;
    expect(flip.from).toBe("down");
    expect(flip.reason).toBe("http check passed on its first check: status 200");
    const nd = r.pool.get("new-down")!;
    expect(nd.state()).toBe("down");
    expect(nd.available()).toBe(false);
  });

  test("make before break: backends that leave go only once the new ones have answered their first probe", async () => {
    const [a, b] = [await sim("a"), await sim("b")];
    const r = await rig([{ name: "a", url: a.url }], FAST_CHECK);
    const next = r.desired([{ name: "b", url: b.url }], FAST_CHECK);
    // At the moment b's first probe makes it available, a is still there to serve.
    let aWhenBCameUp: boolean | undefined;
    r.pool.onStateChange((c) => {
      if (c.backend.name === "b" && c.from === "down") aWhenBCameUp = r.pool.get("a")?.available();
    });
    const done = r.reconciler.reconcile(next.backends, next.defaults);
    const result = await done;
    expect(aWhenBCameUp).toBe(true);
    expect(result.removed).toEqual(["a"]);
    expect(r.pool.backends.map((x) => `${x.name}:${x.state()}`)).toEqual(["b:up"]);
  });

  test("a changed health check replaces the probe loop and carries health over", async () => {
    const a = await sim("a");
    const b = await sim("b");
    const r = await rig([{ name: "a", url: a.url }, { name: "b", url: b.url }], FAST_CHECK);
    const bb = r.pool.get("b")!;
    b.setHealth("down");
    await waitFor(() => bb.state() === "down", "b to go down");
    const slower = { ...FAST_CHECK, interval: "150ms", fall: 2, rise: 3 };
    const next = r.desired([{ name: "a", url: a.url }, { name: "b", url: b.url }], slower);
    const result = await r.reconciler.reconcile(next.backends, next.defaults);
    expect(result.lines).toContain("b: health check changed");
    expect(r.pool.get("b")).toBe(bb);
    expect(bb.state()).toBe("down");
    expect(r.health.checkOf(bb)).toMatchObject({ interval: 150, rise: 3, fall: 2 });
    // The new loop runs with the new rise: three passes bring it back.
    b.setHealth("up");
    await waitFor(() => bb.state() === "up", "b to come back under the new check", 3000);
    expect(bb.lastChangeReason).toBe("http check passed after 3 consecutive successes: status 200");
  });

  test("a changed URL is a new backend; disabled drains and enables on change only", async () => {
    const [a, b, b2] = [await sim("a"), await sim("b"), await sim("b2")];
    const r = await rig([{ name: "a", url: a.url }, { name: "b", url: b.url }]);
    const old = r.pool.get("b")!;
    for (let i = 0; i < 5; i++) old.stats.countRequest();
    const aa = r.pool.get("a")!;

    let next = r.desired([{ name: "a", url: a.url, disabled: true }, { name: "b", url: b2.url }]);
    let result = await r.reconciler.reconcile(next.backends, next.defaults);
    const fresh = r.pool.get("b")!;
    expect(fresh).not.toBe(old);
    expect(fresh.url.href).toBe(new URL(b2.url).href);
    expect(fresh.stats.requests).toBe(0);
    expect(old.listenerCount).toBe(0);
    expect(result.added).toEqual([]);
    expect(result.removed).toEqual([]);
    expect(result.lines.some((l) => l.startsWith("b: url "))).toBe(true);
    expect(aa.state()).toBe("draining");
    expect(aa.lastChangeReason).toBe("config: disabled");

    // An operator enables it; a reconcile that leaves `disabled: true` as it was keeps their choice.
    aa.setEnabled(true, "enabled by an operator");
    result = await r.reconciler.reconcile(next.backends, next.defaults);
    expect(aa.isEnabled).toBe(true);
    expect(result.updated).toEqual([]);
    next = r.desired([{ name: "a", url: a.url }, { name: "b", url: b2.url }]);
    await r.reconciler.reconcile(next.backends, next.defaults);
    expect(aa.isEnabled).toBe(true);
  });

  test("a priority is taken on add and changed in place: the same backend moves between tiers", async () => {
    const [a, b] = [await sim("a"), await sim("b")];
    const r = await rig([{ name: "a", url: a.url }, { name: "b", url: b.url, priority: 1 }]);
    const bb = r.pool.get("b")!;
    expect(r.pool.backends.map((x) => x.priority)).toEqual([0, 1]);
    expect(r.pool.pick()!.name).toBe("a");
    const next = r.desired([{ name: "a", url: a.url, priority: 2 }, { name: "b", url: b.url, priority: 1 }, { name: "c", url: a.url.replace("127.0.0.1", "localhost"), priority: 3 }]);
    const result = await r.reconciler.reconcile(next.backends, next.defaults);
    expect(result.lines).toContain("a: priority 0 -> 2");
    expect(result.lines.some((l) => l.startsWith("added c (") && l.includes("weight 1, priority 3"))).toBe(true);
    expect(r.pool.get("b")).toBe(bb);
    expect(r.pool.pick()!.name).toBe("b");
  });

  test("duplicate names are refused and the pool is left as it was", async () => {
    const a = await sim("a");
    const r = await rig([{ name: "a", url: a.url }]);
    const dup = [
      { name: "a", url: a.url, weight: 1, maxConnections: 0, disabled: false },
      { name: "a", url: a.url, weight: 2, maxConnections: 0, disabled: false },
    ] as DesiredBackend[];
    await expect(r.reconciler.reconcile(dup)).rejects.toBeInstanceOf(ReconcileError);
    await r.reconciler.reconcile(r.reconciler.desired);
    expect(r.pool.backends.map((b) => `${b.name}:${b.weight}`)).toEqual(["a:1"]);
  });
});
