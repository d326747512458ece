/**
 * Backend on its own: the address it forwards to, the one availability predicate, the state
 * shown for each combination of flags, in-flight leases, and state-change announcements.
 * (Ejection timing and slow start under the health owner are in test/health/units.test.ts.)
 */
import { describe, expect, test } from "bun:test";
import { Backend, BackendError, type BackendOptions, type StateChange } from "../../src/pool/backend.ts";

const make = (opts: Partial<BackendOptions> = {}) => new Backend({ name: "b", url: "http://10.0.0.5:8080", ...opts });

describe("address", () => {
  test.each([
    ["http://10.0.0.5:8080", "http://10.0.0.5:8080", ""],
    ["http://10.0.0.5:8080/", "http://10.0.0.5:8080", ""],
    ["http://api.internal/v1/", "http://api.internal", "/v1"],
    ["https://[::1]:8443/a/b", "https://[::1]:8443", "/a/b"],
  ])("%s → origin %s, base path %p", (url, origin, basePath) => {
    const b = make({ url });
    expect(b.origin).toBe(origin);
    expect(b.basePath).toBe(basePath);
  });

  test("defaults: weight 1, no connection limit, enabled, healthy, up", () => {
    const b = make();
    expect([b.weight, b.maxConnections, b.isEnabled, b.isHealthy, b.state()]).toEqual([1, 0, true, true, "up"]);
  });
});

describe("available(): healthy, enabled, not ejected, not full", () => {
  test("each flag alone makes it unavailable, and its state says which", () => {
    const now = 1_000_000;
    const down = make();
    down.setHealthy(false, "probe");
    const drained = make({ disabled: true });
    const ejected = make();
    ejected.eject(5000, "5xx", now);
    const full = make({ maxConnections: 1 });
    const lease = full.acquire();
    expect([down, drained, ejected, full].map((b) => b.available(now))).toEqual([false, false, false, false]);
    expect([down, drained, ejected].map((b) => b.state(now))).toEqual(["down", "draining", "ejected"]);
    // Full is not a state: it is a moment, shown by its in-flight count.
    expect(full.state(now)).toBe("up");
    lease.release();
    expect(full.available(now)).toBe(true);
    // The ejection ends by the clock.
    expect(ejected.available(now + 4999)).toBe(false);
    expect(ejected.available(now + 5000)).toBe(true);
  });

  test("down wins over draining, draining over ejected", () => {
    const b = make();
    b.eject(60_000, "5xx");
    b.setEnabled(false);
    expect(b.state()).toBe("draining");
    b.setHealthy(false, "probe");
    expect(b.state()).toBe("down");
  });
});

describe("leases", () => {
  test("acquire and release move in-flight in pairs; a second release of one lease changes nothing", () => {
    const b = make();
    const l1 = b.acquire();
    const l2 = b.acquire();
    expect([b.inFlight, b.acquired]).toEqual([2, 2]);
    l1.release();
    l1.release();
    expect(b.inFlight).toBe(1);
    l2.release();
    expect([b.inFlight, b.acquired]).toEqual([0, 2]);
  });

  test("a count that would go below zero throws a coded error instead of going negative", () => {
    const b = make();
    expect(() => b._release()).toThrow(BackendError);
    try {
      b._release();
    } catch (e) {
      expect((e as BackendError).code).toBe("SY_COUNTER_UNDERFLOW");
    }
    expect(b.inFlight).toBe(0);
  });
});

describe("state changes", () => {
  test("announced once per change, with from, to and reason; no-ops announce nothing", () => {
    const b = make();
    const seen: string[] = [];
    b.onStateChange((c: StateChange) => seen.push(`${c.from}->${c.to} (${c.reason})`));
    b.setHealthy(true, "already up");
    b.setHealthy(false, "3 failures");
    b.setHealthy(false, "still failing");
    b.setEnabled(false, "operator");
    b.setHealthy(true, "2 successes");
    b.setEnabled(true);
    // Draining while down is not shown (down wins); it shows when health returns.
    expect(seen).toEqual(["up->down (3 failures)", "down->draining (2 successes)", "draining->up (enabled)"]);
    expect(b.lastChangeReason).toBe("enabled");
  });

  test("a change hidden by a stronger state is not announced (draining while down)", () => {
    const b = make();
    b.setHealthy(false, "probe");
    const seen: StateChange[] = [];
    b.onStateChange((c) => seen.push(c));
    b.setEnabled(false);
    expect(seen).toEqual([]);
    expect(b.isEnabled).toBe(false);
  });

  test("an unsubscribed listener hears nothing more", () => {
    const b = make();
    let n = 0;
    const off = b.onStateChange(() => n++);
    b.setHealthy(false, "x");
    off();
    b.setHealthy(true, "y");
    expect(n).toBe(1);
  });
});
