/**
 * Health under real traffic: a backend dying and returning under load, outlier ejection of a
 * backend serving 500s (with its limits), and slow start after readmission.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { record, reportMeasurements, startHealthRig, whoAnswers, type HealthRig } from "./helpers.ts";
import { waitFor } from "../helpers/wait.ts";

reportMeasurements();

let rig: HealthRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** Sequential GETs to the balancer; how many each backend answered, and every non-200 status. */
async function sample(url: string, n: number): Promise<{ by: Record<string, number>; bad: number[] }> {
  const by: Record<string, number> = {};
  const bad: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await whoAnswers(url);
    if (r.status === 200) by[r.name] = (by[r.name] ?? 0) + 1;
    else bad.push(r.status);
  }
  return { by, bad };
}

describe("under continuous load", () => {
  test("a backend that dies and returns costs zero failed client requests", async () => {
    rig = await startHealthRig(3);
    const { balancer, cluster, changes } = rig;
    const victim = cluster.backends[1]!;
    let running = true;
    let ok = 0;
    const failures: string[] = [];
    let afterReturn = 0;
    let returned = false;
    const worker = async () => {
      while (running) {
        try {
          const res = await fetch(balancer.url);
          const body = (await res.text()).trim();
          if (res.status === 200) {
            ok++;
            if (returned && body === victim.name) afterReturn++;
          } else failures.push(`status ${res.status}: ${body}`);
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    try {
      await Bun.sleep(300);
      const down = changes.next(victim.name, "down");
      const t0 = performance.now();
      await victim.stop(); // abrupt: in-flight requests are reset, the port refuses
      const d = await down;
      record("under load, backend stopped: marked down after", d.at - t0);
      await Bun.sleep(300);
      const up = changes.next(victim.name, "up");
      const t1 = performance.now();
      await victim.start();
      const u = await up;
      returned = true;
      record("under load, backend listening again: back in rotation after", u.at - t1);
      await Bun.sleep(300);
    } finally {
      running = false;
      await Promise.all(workers);
    }
    console.log(`load: ${ok} requests answered 200, ${failures.length} failed, ${afterReturn} served by ${victim.name} after its return, ${balancer.traffic.retries} retries`);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(200);
    expect(afterReturn).toBeGreaterThan(0);
    // Marked down by the first refused connection (passive), brought back by the probes.
    expect(changes.of(victim.name)[0]).toMatch(/^up -> down: passive: connection failed|^up -> down: http check failed/);
    expect(changes.of(victim.name).at(-1)).toBe("down -> up: http check passed after 2 consecutive successes: status 200");
  });
});

describe("outlier ejection", () => {
  const PASSIVE = { consecutiveFailures: 5, baseEjectionTime: "300ms", maxEjectionTime: "1s", maxEjectedPercent: 50 };

  test("takes out a backend serving 500s for a time that grows with each ejection", async () => {
    rig = await startHealthRig(3, { strategy: "round-robin", passive: PASSIVE });
    const { balancer, cluster, changes } = rig;
    const bad = cluster.backends[0]!;
    bad.setFailRate(1);
    const ejected = changes.next(bad.name, "ejected");
    const t0 = performance.now();
    const before = await sample(balancer.url, 20);
    const first = await ejected;
    record("500s from one backend of 3 (round-robin): ejected after", first.at - t0);
    expect(before.bad.length).toBe(5); // exactly the threshold reached clients
    expect(first.reason).toBe("ejected for 300ms after 5 consecutive failures (last: status 500)");
    // While ejected, everything succeeds: requests sent inside the ejection window (with a
    // margin, so that a slow machine cannot carry one past its end) all come back 200.
    // Waited for from now: on a slow machine the last request below can outlast the window,
    // and a readmission announced before next() was called would never be seen.
    const readmitted = changes.next(bad.name, "up", 3000);
    const until = balancer.pool.backends[0]!.ejectedUntilMs;
    const during: number[] = [];
    while (Date.now() < until - 50) during.push((await whoAnswers(balancer.url)).status);
    expect(during.length).toBeGreaterThan(0);
    expect(during.filter((s) => s !== 200)).toEqual([]);
    const back = await readmitted;
    record("ejection of 300ms: readmitted after", back.at - first.at);
    expect(back.at - first.at).toBeGreaterThanOrEqual(290);
    expect(back.reason).toBe("ejection of 300ms ended");
    // Still failing: ejected again, for twice as long.
    const again = changes.next(bad.name, "ejected");
    await sample(balancer.url, 20);
    expect((await again).reason).toBe("ejected for 600ms after 5 consecutive failures (last: status 500)");
    // The health checks (on /health, which still answers 200) never disagreed.
    expect(balancer.pool.backends[0]!.isHealthy).toBe(true);
  });

  test("respects maxEjectedPercent: of 3 backends at 50%, two serving 500s, only one is ejected", async () => {
    rig = await startHealthRig(3, { strategy: "round-robin", passive: { ...PASSIVE, baseEjectionTime: "10s" } });
    const { balancer, cluster } = rig;
    cluster.backends[0]!.setFailRate(1);
    cluster.backends[1]!.setFailRate(1);
    const s = await sample(balancer.url, 90);
    const states = balancer.pool.backends.map((b) => b.state());
    expect(states.filter((x) => x === "ejected")).toHaveLength(1);
    expect(states[2]).toBe("up");
    // The other failing backend keeps serving (its 500s reach clients): a degraded answer.
    expect(s.bad.length).toBeGreaterThan(10);
    expect(balancer.pool.backends.reduce((n, b) => n + b.stats.ejections, 0)).toBe(1);
  });

  test("never ejects the last available backend", async () => {
    rig = await startHealthRig(2, { strategy: "round-robin", passive: { ...PASSIVE, maxEjectedPercent: 100, baseEjectionTime: "10s" } });
    const { balancer, cluster } = rig;
    for (const b of cluster.backends) b.setFailRate(1);
    const s = await sample(balancer.url, 40);
    const states = balancer.pool.backends.map((b) => b.state()).sort();
    expect(states).toEqual(["ejected", "up"]);
    expect(s.bad.length).toBe(40); // every answer a 500, but an answer
    await rig.stop();

    rig = await startHealthRig(1, { passive: { ...PASSIVE, consecutiveFailures: 2 } });
    rig.cluster.backends[0]!.setFailRate(1);
    const single = await sample(rig.balancer.url, 10);
    expect(single.bad).toEqual(Array(10).fill(500));
    expect(rig.balancer.pool.backends[0]!.state()).toBe("up");
    expect(rig.balancer.passive.pendingTimers).toBe(0);
  });
});

describe("slow start", () => {
  const share = (s: { by: Record<string, number> }, name: string) => (s.by[name] ?? 0) / Object.values(s.by).reduce((a, b) => a + b, 0);

  test("right after readmission the share is well below a full one, and reaches it after the window", async () => {
    rig = await startHealthRig(2, { strategy: "round-robin", slowStart: "1500ms" });
    const { balancer, cluster, changes } = rig;
    const sim = cluster.backends[1]!;
    const b = balancer.pool.backends[1]!;
    expect(b.state()).toBe("up"); // configured backends take a full share at start-up
    const down = changes.next(sim.name, "down");
    sim.setHealth("down");
    await down;
    const back = changes.next(sim.name, "slow-starting");
    sim.setHealth("up");
    await back;
    const early = await sample(balancer.url, 200);
    const earlyFactor = b.rampFactor();
    await waitFor(() => b.rampFactor() >= 0.5, "the middle of the slow-start window", 3000);
    const mid = await sample(balancer.url, 200);
    const midFactor = b.rampFactor();
    await waitFor(() => b.state() === "up", "the slow-start window to pass", 3000);
    const late = await sample(balancer.url, 400);
    const e = share(early, sim.name);
    const m = share(mid, sim.name);
    const l = share(late, sim.name);
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    console.log(`slow start (round-robin, 2 backends, 1500ms): share just after readmission ${pct(e)} (ramp ≤ ${earlyFactor.toFixed(2)}), mid-window ${pct(m)} (ramp 0.50..${midFactor.toFixed(2)}), after the window ${pct(l)} (full share 50%)`);
    expect(early.bad).toEqual([]);
    expect(e).toBeLessThan(0.25);
    // Linear: about half a share half-way (expected 25%), well clear of both ends.
    expect(m).toBeGreaterThan(e);
    expect(m).toBeGreaterThan(0.1);
    expect(m).toBeLessThan(0.45);
    expect(l).toBeGreaterThan(0.4);
    expect(l).toBeLessThan(0.6);
    expect(changes.of(sim.name).at(-1)).toBe("down -> slow-starting: http check passed after 2 consecutive successes: status 200");
  });

  test("an ejection that ends by time starts slow start too", async () => {
    rig = await startHealthRig(2, {
      strategy: "round-robin",
      slowStart: "1500ms",
      passive: { consecutiveFailures: 3, baseEjectionTime: "300ms", maxEjectedPercent: 50 },
    });
    const { balancer, cluster, changes } = rig;
    const sim = cluster.backends[0]!;
    sim.setFailRate(1);
    const ejected = changes.next(sim.name, "ejected");
    await sample(balancer.url, 10);
    await ejected;
    sim.setFailRate(0);
    const ended = await changes.next(sim.name, "slow-starting", 2000);
    expect(ended.from).toBe("ejected");
    expect(ended.reason).toBe("ejection of 300ms ended");
    const early = await sample(balancer.url, 200);
    expect(share(early, sim.name)).toBeLessThan(0.25);
    // Logged once, as one transition.
    const returns = rig.logLines.filter((l) => l.includes(`backend ${sim.name} ejected -> `));
    expect(returns).toHaveLength(1);
    expect(returns[0]).toEndWith(`backend ${sim.name} ejected -> slow-starting: ejection of 300ms ended`);
  });
});
