/**
 * Active health checks end to end: a real balancer probing real sim backends on ephemeral
 * ports, their health set through the sim. Windows are asserted, not exact times; the observed
 * times are printed at the end.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/wait.ts";
import { FALL, INTERVAL, LAG, RISE, StallMeter, TIMEOUT, record, reportMeasurements, startHealthRig, whoAnswers, type HealthRig } from "./helpers.ts";

reportMeasurements();

let rig: HealthRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** Down within fall × interval (+ one timeout); never before fall probes could have run. */
const DETECT = { min: (FALL - 1) * INTERVAL * 0.9, max: FALL * INTERVAL + TIMEOUT };
/** Up within rise × interval (+ the last probe's own time); never before rise probes. */
const READMIT = { min: (RISE - 1) * INTERVAL * 0.9, max: RISE * INTERVAL + TIMEOUT };

/**
 * Time `cause()` until `effect` settles, assert it lies in `window` (the upper bound stretched
 * by how long this process stalled meanwhile, see StallMeter), and record it.
 */
async function timed<T extends { at: number }>(label: string, window: { min: number; max: number }, effect: Promise<T>, cause: () => unknown): Promise<T> {
  const meter = new StallMeter();
  const t0 = performance.now();
  await cause();
  const change = await effect;
  const stall = meter.stop();
  const ms = change.at - t0;
  record(label, ms);
  if (stall > LAG) console.log(`${label}: ${Math.round(ms)}ms with the process stalled ${Math.round(stall)}ms`);
  expect(ms).toBeGreaterThanOrEqual(window.min);
  expect(ms).toBeLessThanOrEqual(window.max + LAG + stall);
  return change;
}

describe("detection and readmission windows", () => {
  test("http: /health 503 is detected within fall × interval and readmitted within rise × interval", async () => {
    rig = await startHealthRig(3);
    const sim = rig.cluster.backends[1]!;
    for (let round = 0; round < 3; round++) {
      await timed("http check, /health 503: detection", DETECT, rig.changes.next(sim.name, "down"), () => sim.setHealth("down"));
      await timed("http check, /health 200 again: readmission", READMIT, rig.changes.next(sim.name, "up"), () => sim.setHealth("up"));
    }
    // Each flip announced (and logged) once, with its reason.
    expect(rig.changes.of(sim.name)).toEqual(
      Array.from({ length: 3 }, () => [
        "up -> down: http check failed after 3 consecutive failures: status 503",
        "down -> up: http check passed after 2 consecutive successes: status 200",
      ]).flat(),
    );
    const logged = rig.logLines.filter((l) => l.includes(`backend ${sim.name} `) && l.includes("->"));
    expect(logged).toHaveLength(6);
    expect(logged[0]).toContain(`backend ${sim.name} up -> down: http check failed after 3 consecutive failures: status 503`);
  });

  test("tcp: a stopped backend is detected (connection refused) and readmitted when it listens again", async () => {
    rig = await startHealthRig(2, { healthCheck: { type: "tcp", interval: "100ms", timeout: "100ms", rise: RISE, fall: FALL } });
    const sim = rig.cluster.backends[0]!;
    for (let round = 0; round < 2; round++) {
      await timed("tcp check, backend stopped: detection", DETECT, rig.changes.next(sim.name, "down"), () => sim.stop());
      await timed("tcp check, backend listening again: readmission", READMIT, rig.changes.next(sim.name, "up"), () => sim.start());
    }
    expect(rig.changes.of(sim.name)[0]).toBe("up -> down: tcp check failed after 3 consecutive failures: connection refused");
    expect(rig.changes.of(sim.name)[1]).toBe("down -> up: tcp check passed after 2 consecutive successes: connected");
  });

  test("http: a backend hanging on /health fails by timeout", async () => {
    rig = await startHealthRig(2);
    const sim = rig.cluster.backends[0]!;
    // Each hanging probe takes the whole timeout before the next starts: still within the window.
    const change = await timed("http check, /health hangs: detection", DETECT, rig.changes.next(sim.name, "down"), () => sim.setHealth("hang"));
    expect(change.reason).toBe("http check failed after 3 consecutive failures: timeout after 100ms");
    // Every timed-out probe closed its request: the sim holds at most the one in flight now.
    expect(sim.active).toBeLessThanOrEqual(1);
  });
});

describe("what gets traffic", () => {
  test("a backend answering 200 to / but 503 to /health is taken out of rotation", async () => {
    rig = await startHealthRig(3);
    const sick = rig.cluster.backends[2]!;
    const down = rig.changes.next(sick.name, "down");
    sick.setHealth("down");
    await down;
    // The backend itself still serves /, but the balancer no longer sends it anything.
    expect((await whoAnswers(sick.url)).status).toBe(200);
    sick.resetCount();
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const r = await whoAnswers(rig.balancer.url);
      expect(r.status).toBe(200);
      seen.add(r.name);
    }
    expect(sick.requests).toBe(0);
    expect([...seen].sort()).toEqual(rig.cluster.backends.filter((b) => b !== sick).map((b) => b.name).sort());
  });

  test("at start-up every backend is probed at once; the first result alone decides, before traffic", async () => {
    const started = performance.now();
    // Panic mode off: with two of three down it would spread traffic over all three (pool.ts).
    rig = await startHealthRig(3, { panicThreshold: 0 }, (cluster) => {
      cluster.backends[0]!.setHealth("down");
      cluster.backends[1]!.setHealth("hang");
    });
    const startupMs = performance.now() - started;
    record("start-up with a hanging backend: balancer ready after", startupMs);
    // Bounded by one probe timeout (plus starting the sims and the balancer).
    expect(startupMs).toBeLessThan(TIMEOUT + 1000);
    const [a, b, c] = rig.balancer.pool.backends;
    expect([a!.state(), b!.state(), c!.state()]).toEqual(["down", "down", "up"]);
    expect(rig.changes.of("backend-1")).toEqual([]); // changed before the recorder attached ...
    expect(rig.logLines).toContainEqual(expect.stringContaining("backend backend-1 up -> down: http check failed at start-up: status 503"));
    expect(rig.logLines).toContainEqual(expect.stringContaining("backend backend-2 up -> down: http check failed at start-up: timeout after 100ms"));
    // ... and before the listener opened: the very first requests go only to the healthy one.
    for (let i = 0; i < 10; i++) expect((await whoAnswers(rig.balancer.url)).name).toBe("backend-3");
    expect(rig.cluster.backends[0]!.requests + rig.cluster.backends[1]!.requests).toBe(0);
  });

  test("a backend with healthCheck: false is not probed; the others are", async () => {
    rig = await startHealthRig(
      2,
      (cluster) => ({
        backends: cluster.backends.map((b, i) => ({ name: b.name, url: b.url, ...(i === 0 ? { healthCheck: false } : {}) })),
      }),
      (cluster) => {
        cluster.backends[0]!.setHealth("down");
        cluster.backends[1]!.setHealth("down");
      },
    );
    const { health, pool } = rig.balancer;
    const [unchecked, checked] = pool.backends;
    expect(health.probes(unchecked!)).toBe(false);
    expect(health.probes(checked!)).toBe(true);
    expect(unchecked!.state()).toBe("up");
    expect(unchecked!.lastCheck).toBeUndefined();
    expect(checked!.state()).toBe("down");
    expect(checked!.lastCheck).toMatchObject({ ok: false, detail: "status 503" });
  });
});

describe("draining", () => {
  test("a disabled backend finishes its in-flight request, takes no new ones, and is still probed", async () => {
    rig = await startHealthRig(2, { strategy: "round-robin" });
    const [a] = rig.balancer.pool.backends;
    const simA = rig.cluster.backends[0]!;
    // Find a request that lands on backend-1 and is still running when it is drained.
    let slow: Promise<Response> | undefined;
    for (let i = 0; i < 4 && !slow; i++) {
      const before = simA.active;
      const p = fetch(`${rig.balancer.url}/delay/300`);
      await Bun.sleep(50);
      if (simA.active > before) slow = p;
      else await p;
    }
    expect(slow).toBeDefined();
    a!.setEnabled(false);
    expect(a!.state()).toBe("draining");
    simA.resetCount();
    for (let i = 0; i < 10; i++) expect((await whoAnswers(rig.balancer.url)).name).toBe("backend-2");
    const res = await slow!;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("delayed 300ms");
    expect(simA.requests).toBe(0);
    expect(a!.inFlight).toBe(0);
    // Health is apart from draining: probes still run and can mark it down.
    const down = rig.changes.next("backend-1", "down");
    simA.setHealth("down");
    await down;
    expect(rig.logLines).toContainEqual(expect.stringContaining("backend backend-1 up -> draining: drained"));
  });
});

describe("owners: nothing outlives the server", () => {
  test("after stop no probe timer or probe runs, and no passive timer is left", async () => {
    rig = await startHealthRig(3, { passive: { consecutiveFailures: 2, baseEjectionTime: "10s", readmitAfter: "10s" } });
    const { balancer, cluster } = rig;
    // A probe hanging in flight, an ejection timer and (below) probes scheduled for every backend.
    cluster.backends[0]!.setHealth("hang");
    cluster.backends[1]!.setFailRate(1);
    // Waited for, not slept on: under CI load the next probe can start later than INTERVAL.
    await waitFor(() => cluster.backends[0]!.active > 0, "a probe hanging on backend-1");
    for (let i = 0; i < 6; i++) await fetch(balancer.url);
    expect(balancer.pool.backends[1]!.state()).toBe("ejected");
    expect(balancer.health.pending).toBeGreaterThan(0);
    expect(balancer.passive.pendingTimers).toBe(1);
    expect(balancer.passive.sweeping).toBe(true);
    expect(cluster.backends[0]!.active).toBeGreaterThan(0);

    await balancer.stop(false);
    // balancer.stop() calls health.stop() without awaiting it, so an aborted probe may still be
    // settling here; awaiting the same stop waits for exactly those probes (no new work starts).
    await balancer.health.stop();
    expect(balancer.health.pending).toBe(0);
    expect(balancer.passive.pendingTimers).toBe(0);
    expect(balancer.passive.sweeping).toBe(false);
    const last = balancer.pool.backends.map((b) => b.lastCheck?.at);
    await Bun.sleep(3 * INTERVAL);
    expect(balancer.pool.backends.map((b) => b.lastCheck?.at)).toEqual(last);
    expect(balancer.health.pending).toBe(0);
    // The hanging probe was aborted, not left with the backend.
    expect(cluster.backends[0]!.active).toBe(0);
  });
});

describe("HealthMonitor on its own", () => {
  test("watch() probes a backend added while running (its first result decides); unwatch() stops it", async () => {
    const { HealthMonitor } = await import("../../src/health/monitor.ts");
    const { Backend } = await import("../../src/pool/backend.ts");
    const { startSimBackend } = await import("../../sim/backend.ts");
    const sim = await startSimBackend({ name: "late", port: 0, health: "down" });
    const monitor = new HealthMonitor(new Map());
    try {
      await monitor.start();
      expect(monitor.pending).toBe(0);
      const b = new Backend({ name: "late", url: sim.url });
      const check = { type: "http", service: "", path: "/health", method: "GET", headers: {}, host: undefined, port: undefined, interval: INTERVAL, timeout: TIMEOUT, rise: RISE, fall: FALL, expectStatus: ["2xx"], expectBody: undefined } as const;
      await monitor.watch(b, { ...check, headers: {}, expectStatus: ["2xx"] });
      expect(monitor.probes(b)).toBe(true);
      // Added while running: its first result decides, and says so.
      expect(b.state()).toBe("down");
      expect(b.lastChangeReason).toBe("http check failed on its first check: status 503");
      expect(monitor.pending).toBe(1); // its loop's timer
      monitor.unwatch(b);
      expect(monitor.probes(b)).toBe(false);
      expect(monitor.pending).toBe(0);
      const at = b.lastCheck?.at;
      await Bun.sleep(2 * INTERVAL);
      expect(b.lastCheck?.at).toBe(at);
    } finally {
      await monitor.stop();
      await sim.stop();
    }
  });
});
