/**
 * The pure parts of health checking (rise/fall counting, status matching, check merging), the
 * probes against real local servers, and the backend and passive-health rules with a fake clock.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { HealthTally } from "../../src/health/monitor.ts";
import { statusMatcher, createProbe, HttpProbe, TcpProbe } from "../../src/health/probe.ts";
import { resolveCheck, type ResolvedCheck } from "../../src/health/check.ts";
import { PassiveHealth, type PassiveOptions } from "../../src/health/passive.ts";
import { validateConfig } from "../../src/config/load.ts";
import { Backend, type StateChange } from "../../src/pool/backend.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { startSimBackend, type SimBackend } from "../../sim/backend.ts";
import { waitFor } from "../helpers/wait.ts";

describe("HealthTally: probing apart from flipping", () => {
  // Each row: start healthy?, rise, fall, results ("+" ok, "-" fail), expected flips per result.
  test.each([
    ["falls after 3 failures", true, 2, 3, "---", [undefined, undefined, false]],
    ["a success resets the failure streak", true, 2, 3, "--+--", [undefined, undefined, undefined, undefined, undefined]],
    ["rises after 2 successes", false, 2, 3, "++", [undefined, true]],
    ["a failure resets the success streak", false, 2, 3, "+-+", [undefined, undefined, undefined]],
    ["fall 1 flips at once", true, 2, 1, "-+", [false, undefined]],
    ["rise 1 flips at once", false, 1, 3, "+", [true]],
    ["results agreeing with the state report nothing", true, 2, 3, "+++", [undefined, undefined, undefined]],
    ["down, up, down again", true, 1, 2, "--+--", [undefined, false, true, undefined, false]],
  ] as const)("%s", (_what, healthy, rise, fall, results, flips) => {
    const t = new HealthTally(healthy, rise, fall);
    expect([...results].map((r) => t.observe(r === "+"))).toEqual([...flips]);
  });

  test("reset counts from the new state", () => {
    const t = new HealthTally(true, 2, 3);
    t.observe(false);
    t.observe(false);
    expect(t.count).toBe(2);
    t.reset(false);
    expect(t.count).toBe(0);
    expect(t.isHealthy).toBe(false);
    expect(t.observe(true)).toBeUndefined();
    expect(t.observe(true)).toBe(true);
  });
});

describe("statusMatcher", () => {
  test.each([
    [["2xx"], [200, 204, 299], [199, 300, 503]],
    [["200"], [200], [201, 204]],
    [["200-399"], [200, 302, 399], [199, 400]],
    [["2xx", "404"], [200, 404], [403, 500]],
    [["5xx"], [500, 503], [200]],
  ] as const)("%j", (expect_, yes, no) => {
    const m = statusMatcher(expect_);
    for (const s of yes) expect(m(s)).toBe(true);
    for (const s of no) expect(m(s)).toBe(false);
  });
});

describe("resolveCheck: global merged with a backend's own", () => {
  const resolve = (raw: Record<string, unknown>) => {
    const config = validateConfig({ admin: false, ...raw });
    return config.pools.default!.backends.map((b) => resolveCheck(config.healthCheck, b));
  };

  test("defaults: a TCP connect every 2s, timeout 1s, rise 2, fall 3", () => {
    const [c] = resolve({ backends: [{ url: "http://127.0.0.1:9001" }] });
    expect(c).toMatchObject({ type: "tcp", interval: 2000, timeout: 1000, rise: 2, fall: 3, expectStatus: ["2xx"] });
  });

  test("a full example config", () => {
    const [c] = resolve({
      healthCheck: { type: "http", path: "/health", interval: "2s", timeout: "1s", rise: 2, fall: 3, expectStatus: "2xx" },
      backends: [{ url: "http://127.0.0.1:9001" }],
    });
    expect(c).toEqual({
      type: "http", service: "", path: "/health", method: "GET", headers: {}, host: undefined, port: undefined,
      interval: 2000, timeout: 1000, rise: 2, fall: 3, expectStatus: ["2xx"], expectBody: undefined,
    });
  });

  test("a path alone means http; a backend's fields replace the global ones; headers merge by name", () => {
    const [a, b, c] = resolve({
      healthCheck: { path: "/health", interval: "5s", headers: { authorization: "Bearer x", "x-a": "1" } },
      backends: [
        { url: "http://127.0.0.1:9001" },
        { url: "http://127.0.0.1:9002", healthCheck: { interval: "1s", expectStatus: [200, "3xx"], headers: { "x-a": "2", "x-b": "3" }, port: 9100, host: "h.test", expectBody: "ok" } },
        { url: "http://127.0.0.1:9003", healthCheck: { type: "tcp" } },
      ],
    });
    expect(a).toMatchObject({ type: "http", path: "/health", interval: 5000, headers: { authorization: "Bearer x", "x-a": "1" } });
    expect(b).toMatchObject({
      type: "http", path: "/health", interval: 1000, expectStatus: ["200", "3xx"], port: 9100, host: "h.test", expectBody: "ok",
      headers: { authorization: "Bearer x", "x-a": "2", "x-b": "3" },
    });
    expect(c).toMatchObject({ type: "tcp", interval: 5000 });
  });

  test("a backend's false turns checks off for it; a global false only for backends without their own", () => {
    expect(resolve({ backends: [{ url: "http://127.0.0.1:9001", healthCheck: false }, { url: "http://127.0.0.1:9002" }] }).map((c) => c?.type))
      .toEqual([undefined, "tcp"]);
    expect(resolve({ healthCheck: false, backends: [{ url: "http://127.0.0.1:9001" }, { url: "http://127.0.0.1:9002", healthCheck: { path: "/up" } }] }).map((c) => c?.path))
      .toEqual([undefined, "/up"]);
  });
});

describe("probes against real local servers", () => {
  let sim: SimBackend;
  beforeAll(async () => {
    sim = await startSimBackend({ name: "probe-target", port: 0 });
  });
  afterAll(async () => {
    await sim.stop();
  });
  afterEach(() => sim.setHealth("up"));

  const check = (over: Partial<ResolvedCheck> = {}): ResolvedCheck => ({
    type: "http", service: "", path: "/health", method: "GET", headers: {}, host: undefined, port: undefined,
    interval: 100, timeout: 100, rise: 2, fall: 3, expectStatus: ["2xx"], expectBody: undefined, ...over,
  });
  const backendAt = (url: string) => new Backend({ name: "b", url });
  const run = (probe: { run(s: AbortSignal): Promise<{ ok: boolean; detail: string }> }, timeout = 100) => {
    const c = new AbortController();
    const t = setTimeout(() => c.abort(), timeout);
    return probe.run(c.signal).finally(() => clearTimeout(t));
  };
  async function closedPort(): Promise<number> {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    return port;
  }

  test("http: 200 passes, 503 fails with the status, a hang fails by timeout", async () => {
    const p = new HttpProbe(backendAt(sim.url), check());
    expect(await run(p)).toEqual({ ok: true, detail: "status 200" });
    sim.setHealth("down");
    expect(await run(p)).toEqual({ ok: false, detail: "status 503" });
    sim.setHealth("hang");
    const started = performance.now();
    expect(await run(p)).toEqual({ ok: false, detail: "timeout after 100ms" });
    expect(performance.now() - started).toBeLessThan(1000);
    // The aborted probe closed its request: the backend is not left holding it.
    await waitFor(() => sim.active === 0, "the hanging /health request to end");
  });

  test("http: expectStatus list, expectBody substring", async () => {
    sim.setHealth("down");
    expect((await run(new HttpProbe(backendAt(sim.url), check({ expectStatus: ["200", "503"] })))).ok).toBe(true);
    sim.setHealth("up");
    expect(await run(new HttpProbe(backendAt(sim.url), check({ expectBody: "ok" })))).toEqual({ ok: true, detail: "status 200" });
    expect(await run(new HttpProbe(backendAt(sim.url), check({ expectBody: "ready" })))).toEqual({ ok: false, detail: 'status 200, body lacks "ready"' });
  });

  test("http: method, headers, host and a separate port reach the backend", async () => {
    // The probe goes to the check's port, not the (closed) port in the backend's URL.
    const p = createProbe(backendAt(`http://127.0.0.1:${await closedPort()}`), check({
      path: "/echo", method: "POST", port: sim.port, host: "health.test", headers: { "x-probe": "yes" },
      expectBody: '["x-probe","yes"]',
    }));
    expect(await run(p)).toEqual({ ok: true, detail: "status 200" });
    const p2 = createProbe(backendAt(sim.url), check({ path: "/echo", method: "POST", host: "health.test", expectBody: '"method":"POST"' }));
    expect((await run(p2)).ok).toBe(true);
    const p3 = createProbe(backendAt(sim.url), check({ path: "/echo", host: "health.test", expectBody: '["host","health.test"]' }));
    expect((await run(p3)).ok).toBe(true);
  });

  test("http: a closed port fails as connection refused", async () => {
    const p = new HttpProbe(backendAt(`http://127.0.0.1:${await closedPort()}`), check());
    expect(await run(p)).toEqual({ ok: false, detail: "connection refused" });
  });

  test("tcp: an open port passes, a closed one fails as connection refused", async () => {
    expect(await run(new TcpProbe(backendAt(sim.url), check({ type: "tcp" })))).toEqual({ ok: true, detail: "connected" });
    const port = await closedPort();
    expect(await run(new TcpProbe(backendAt(`http://127.0.0.1:${port}`), check({ type: "tcp" })))).toEqual({ ok: false, detail: "connection refused" });
    // The check's own port wins over the URL's.
    expect((await run(new TcpProbe(backendAt(`http://127.0.0.1:${port}`), check({ type: "tcp", port: sim.port })))).ok).toBe(true);
  });

  test("tcp: an already-aborted signal fails at once as a timeout", async () => {
    const c = new AbortController();
    c.abort();
    expect(await new TcpProbe(backendAt(sim.url), check({ type: "tcp" })).run(c.signal)).toEqual({ ok: false, detail: "timeout after 100ms" });
  });
});

/** Run `fn` with Date.now() returning the value `clock.now`. */
function withClock<T>(fn: (clock: { now: number }) => T): T {
  const clock = { now: 1_000_000 };
  const real = Date.now;
  Date.now = () => clock.now;
  try {
    return fn(clock);
  } finally {
    Date.now = real;
  }
}

describe("Backend: ejection, slow start, draining", () => {
  test("an ejection that runs out by the clock is announced once by readmit(), and slow start counts from its end", () => {
    withClock((clock) => {
      const b = new Backend({ name: "b", url: "http://127.0.0.1:9001", slowStart: 10_000 });
      const changes: string[] = [];
      b.onStateChange((c: StateChange) => changes.push(`${c.from}->${c.to}: ${c.reason}`));
      b.eject(1000, "ejected for 1s");
      expect(b.state()).toBe("ejected");
      expect(b.available()).toBe(false);
      clock.now += 1000;
      // Available by the clock at once, ramping from the ejection's end ...
      expect(b.available()).toBe(true);
      expect(b.state()).toBe("slow-starting");
      clock.now += 500;
      expect(b.rampFactor()).toBeCloseTo(0.05, 5);
      // ... and the owner's timer, running late, announces it without restarting the ramp.
      b.readmit("ejection of 1s ended");
      expect(b.rampFactor()).toBeCloseTo(0.05, 5);
      clock.now += 4500;
      expect(b.rampFactor()).toBeCloseTo(0.5, 5);
      expect(b.state()).toBe("slow-starting");
      clock.now += 5000;
      expect(b.state()).toBe("up");
      expect(changes).toEqual(["up->ejected: ejected for 1s", "ejected->slow-starting: ejection of 1s ended"]);
      // A second readmit is a no-op.
      b.readmit("again");
      expect(changes).toHaveLength(2);
    });
  });

  test("an operator readmit ends an ejection early and starts slow start now", () => {
    withClock((clock) => {
      const b = new Backend({ name: "b", url: "http://127.0.0.1:9001", slowStart: 10_000 });
      const to: string[] = [];
      b.onStateChange((c) => to.push(c.to));
      b.eject(30_000, "ejected");
      clock.now += 1000;
      b.readmit("operator");
      expect(b.state()).toBe("slow-starting");
      expect(b.rampFactor()).toBeCloseTo(0.05, 5);
      clock.now += 10_000;
      expect(b.state()).toBe("up");
      expect(to).toEqual(["ejected", "slow-starting"]);
    });
  });

  test("without slow start an ejection ends straight to up", () => {
    withClock((clock) => {
      const b = new Backend({ name: "b", url: "http://127.0.0.1:9001" });
      const seen: string[] = [];
      b.onStateChange((c) => seen.push(`${c.from}->${c.to}`));
      b.eject(1000, "x");
      clock.now += 1200;
      b.readmit("ended");
      expect(seen).toEqual(["up->ejected", "ejected->up"]);
    });
  });

  test("draining is apart from health: no new picks, in-flight leases finish, health still changes", () => {
    const pool = new LocalPool(createPolicy("round-robin"), [
      { name: "a", url: "http://127.0.0.1:9001" },
      { name: "b", url: "http://127.0.0.1:9002" },
    ]);
    const [a, b] = pool.backends as [Backend, Backend];
    const lease = a.acquire();
    a.setEnabled(false);
    expect(a.state()).toBe("draining");
    for (let i = 0; i < 20; i++) expect(pool.pick()).toBe(b);
    expect(a.inFlight).toBe(1);
    lease.release();
    expect(a.inFlight).toBe(0);
    a.setHealthy(false, "probe");
    expect(a.state()).toBe("down");
    a.setHealthy(true, "probe");
    expect(a.state()).toBe("draining");
    a.setEnabled(true);
    expect(a.state()).toBe("up");
  });

  test("a backend added to a running pool slow-starts; configured ones do not", () => {
    withClock((clock) => {
      const pool = new LocalPool(createPolicy("random"), [{ name: "a", url: "http://127.0.0.1:9001", slowStart: 10_000 }]);
      expect(pool.get("a")!.state()).toBe("up");
      const added = pool.add({ name: "b", url: "http://127.0.0.1:9002", slowStart: 10_000 });
      expect(added.state()).toBe("slow-starting");
      clock.now += 10_000;
      expect(added.state()).toBe("up");
    });
  });
});

describe("PassiveHealth: outlier ejection rules", () => {
  const OPTS: PassiveOptions = { consecutiveFailures: 3, baseEjectionTime: 30_000, maxEjectionTime: 100_000, maxEjectedPercent: 50, readmitAfter: 50 };
  const setup = (n: number, opts: Partial<PassiveOptions> = {}, probed = false) => {
    const pool = new LocalPool(createPolicy("round-robin"), Array.from({ length: n }, (_, i) => ({ name: `b${i + 1}`, url: `http://127.0.0.1:${9001 + i}` })));
    const passive = new PassiveHealth(pool, { ...OPTS, ...opts }, () => probed);
    return { pool, passive, list: pool.backends as Backend[] };
  };
  const failN = (p: PassiveHealth, b: Backend, n: number) => {
    for (let i = 0; i < n; i++) p.succeeded(b, 500);
  };
  let stoppers: PassiveHealth[] = [];
  afterEach(() => {
    for (const p of stoppers) p.stop();
    stoppers = [];
  });

  test.each([
    // backends, maxEjectedPercent, how many may be ejected
    [1, 50, 0],
    [1, 100, 0],
    [2, 50, 1],
    [2, 49, 0],
    [2, 100, 1], // never the last available
    [3, 50, 1],
    [4, 50, 2],
    [5, 20, 1],
    [10, 10, 1],
    [4, 0, 0],
  ] as const)("%i backends at %i%%: at most %i ejected", (n, percent, allowed) => {
    const { passive, list } = setup(n, { maxEjectedPercent: percent });
    stoppers.push(passive);
    for (const b of list) failN(passive, b, 3);
    expect(list.filter((b) => b.state() === "ejected")).toHaveLength(allowed);
    expect(passive.pendingTimers).toBe(allowed);
  });

  test("the threshold counts consecutive failures: a success in between resets, 0 turns it off", () => {
    const { passive, list } = setup(3);
    stoppers.push(passive);
    const b = list[0]!;
    failN(passive, b, 2);
    passive.succeeded(b, 404);
    failN(passive, b, 2);
    expect(b.state()).toBe("up");
    passive.failed(b, "connection reset");
    expect(b.state()).toBe("ejected");
    expect(b.lastChangeReason).toBe("ejected for 30s after 3 consecutive failures (last: connection reset)");

    const off = setup(3, { consecutiveFailures: 0 });
    stoppers.push(off.passive);
    failN(off.passive, off.list[0]!, 50);
    expect(off.list[0]!.state()).toBe("up");
  });

  test("a down, draining or already ejected backend is not counted as the one left serving", () => {
    const { passive, list } = setup(3, { maxEjectedPercent: 100 });
    stoppers.push(passive);
    const [a, b, c] = list as [Backend, Backend, Backend];
    b.setHealthy(false, "probe");
    c.setEnabled(false);
    failN(passive, a, 5);
    expect(a.state()).toBe("up");
    c.setEnabled(true);
    failN(passive, a, 3);
    expect(a.state()).toBe("ejected");
    // a is ejected, b down: c is the last one serving.
    failN(passive, c, 10);
    expect(c.state()).toBe("up");
  });

  test("a busy backend (maxConnections reached) still counts as serving", () => {
    const pool = new LocalPool(createPolicy("round-robin"), [
      { name: "a", url: "http://127.0.0.1:9001" },
      { name: "busy", url: "http://127.0.0.1:9002", maxConnections: 1 },
    ]);
    const passive = new PassiveHealth(pool, OPTS, () => false);
    stoppers.push(passive);
    const lease = pool.get("busy")!.acquire();
    failN(passive, pool.get("a")!, 3);
    expect(pool.get("a")!.state()).toBe("ejected");
    lease.release();
  });

  test("ejection time grows with each ejection, is capped, and decays while the backend behaves", () => {
    withClock((clock) => {
      const { passive, list } = setup(2, { baseEjectionTime: 30_000, maxEjectionTime: 100_000 });
      stoppers.push(passive);
      const b = list[0]!;
      const ejectFor = () => {
        failN(passive, b, 3);
        const d = b.ejectedUntilMs - clock.now;
        clock.now = b.ejectedUntilMs;
        b.readmit("test: time up");
        return d;
      };
      expect([ejectFor(), ejectFor(), ejectFor(), ejectFor(), ejectFor()]).toEqual([30_000, 60_000, 90_000, 100_000, 100_000]);
      // Level is capped at ceil(100/30) = 4; three quiet base periods bring it down to 1.
      clock.now += 3 * 30_000;
      expect(ejectFor()).toBe(60_000);
      clock.now += 10 * 30_000;
      expect(ejectFor()).toBe(30_000);
      expect(b.stats.ejections).toBe(7);
    });
  });

  test("the ejection timer readmits with one announcement; a re-ejection replaces the timer", async () => {
    const { passive, pool, list } = setup(2, { baseEjectionTime: 40, maxEjectionTime: 1000 });
    stoppers.push(passive);
    const seen: string[] = [];
    pool.onStateChange((c) => seen.push(`${c.backend.name} ${c.from}->${c.to}`));
    failN(passive, list[0]!, 3);
    expect(passive.pendingTimers).toBe(1);
    await waitFor(() => passive.pendingTimers === 0, "the ejection to end", 2000);
    expect(seen).toEqual(["b1 up->ejected", "b1 ejected->up"]);
    expect(list[0]!.ejectedUntilMs).toBe(0);
  });

  test("a refused connection marks down at once; without probes a timer re-admits it, with probes none is set", async () => {
    const { passive, list } = setup(2, { readmitAfter: 30 });
    stoppers.push(passive);
    const b = list[0]!;
    passive.connectFailed(b, "connection failed (ECONNREFUSED)");
    passive.connectFailed(b, "connection failed (ECONNREFUSED)");
    expect(b.state()).toBe("down");
    expect(b.lastChangeReason).toBe("passive: connection failed (ECONNREFUSED)");
    expect(b.stats.connectFailures).toBe(2);
    expect(passive.pendingTimers).toBe(1);
    await waitFor(() => b.isHealthy, "the timed re-admission", 2000);
    expect(b.lastChangeReason).toBe("passive: re-admitted after 30ms (no active check)");

    const probed = setup(2, {}, true);
    stoppers.push(probed.passive);
    probed.passive.connectFailed(probed.list[0]!, "refused");
    expect(probed.list[0]!.state()).toBe("down");
    expect(probed.passive.pendingTimers).toBe(0);
  });

  test("stop() cancels every timer, and none starts afterwards", () => {
    const { passive, list } = setup(4);
    failN(passive, list[0]!, 3);
    passive.connectFailed(list[1]!, "refused");
    expect(passive.pendingTimers).toBe(2);
    passive.stop();
    expect(passive.pendingTimers).toBe(0);
    passive.connectFailed(list[2]!, "refused");
    expect(passive.pendingTimers).toBe(0);
  });
});
