/**
 * Ejection that cannot empty a pool, end to end on real sockets (SWITCHYARD_TEST_ENGINE picks
 * the engine): panic mode when most backends look down, Envoy's success-rate and
 * failure-percentage sweeps under real traffic, all shown in /stats and /metrics.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startHealthRig, whoAnswers, type HealthRig } from "./helpers.ts";
import { waitFor } from "../helpers/wait.ts";

let rig: HealthRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

const ADMIN = { admin: { host: "127.0.0.1", port: 0 } };

async function stats(): Promise<any> {
  return (await fetch(`${rig!.balancer.adminUrl}/stats`)).json();
}
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${rig!.balancer.adminUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

/** `n` GETs, 8 at a time. */
async function load(url: string, n: number): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left-- > 0) await (await fetch(url)).arrayBuffer();
    }),
  );
}

/** `until`, with batches of 100 requests sent to `url` while it is pending. */
async function drivenUntil<T>(url: string, until: Promise<T>): Promise<T> {
  let done = false;
  const driving = (async () => {
    while (!done) await load(url, 100);
  })();
  try {
    return await until;
  } finally {
    done = true;
    await driving;
  }
}

describe("panic mode", () => {
  test("two of three backends failing their checks: traffic goes to all three; logged, counted and shown; over when they return", async () => {
    rig = await startHealthRig(3, { ...ADMIN, strategy: "round-robin" });
    const { balancer, cluster, changes } = rig;
    const [a, b] = cluster.backends as [(typeof cluster.backends)[number], (typeof cluster.backends)[number]];
    const downA = changes.next(a.name, "down");
    a.setHealth("down");
    await downA;
    // One of three out: 2/3 serving is above 50%, no panic; the sick one gets nothing.
    expect(balancer.pool.panicking()).toBe(false);
    const before = new Set<string>();
    for (let i = 0; i < 6; i++) before.add((await whoAnswers(balancer.url)).name);
    expect(before.has(a.name)).toBe(false);

    const downB = changes.next(b.name, "down");
    b.setHealth("down");
    await downB;
    expect(balancer.pool.panicking()).toBe(true);
    expect(rig.logLines).toContainEqual(expect.stringContaining("pool in panic mode (1 of 3 backends in service healthy, threshold 50%)"));
    // Their checks fail but they still answer: in panic every backend in service takes traffic.
    const during = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const r = await whoAnswers(balancer.url);
      expect(r.status).toBe(200);
      during.add(r.name);
    }
    expect(during).toEqual(new Set(cluster.backends.map((x) => x.name)));
    const s = await stats();
    expect(s.balancer.panic).toEqual({ active: true, threshold: 50, entered: 1, picks: expect.any(Number) });
    expect(s.balancer.panic.picks).toBeGreaterThanOrEqual(9);
    expect(await metric(`switchyard_panic{pool="default"}`)).toBe(1);
    expect(await metric(`switchyard_panic_entered_total{pool="default"}`)).toBe(1);
    expect(await metric(`switchyard_panic_picks_total{pool="default"}`)).toBeGreaterThanOrEqual(9);

    const upB = changes.next(b.name, "up");
    b.setHealth("up");
    await upB;
    expect(balancer.pool.panicking()).toBe(false);
    expect(rig.logLines).toContainEqual(expect.stringContaining("pool out of panic mode (2 of 3 backends in service healthy, threshold 50%)"));
    expect((await stats()).balancer.panic.active).toBe(false);
    expect(await metric(`switchyard_panic{pool="default"}`)).toBe(0);
    for (let i = 0; i < 6; i++) expect((await whoAnswers(balancer.url)).name).not.toBe(a.name);
  });

  test("every backend refusing: one marked down, never both (maxEjectedPercent, never the last); 502, not 503", async () => {
    rig = await startHealthRig(2, { healthCheck: false });
    const { balancer, cluster } = rig;
    for (const x of cluster.backends) await x.stop();
    const res = await fetch(balancer.url);
    expect(res.status).toBe(502);
    // 50% of 2: one marked down, never both.
    expect(balancer.pool.backends.map((x) => x.state()).sort()).toEqual(["down", "up"]);
  });

  test("panicThreshold: 0 turns it off: with two of three down, only the healthy one answers", async () => {
    rig = await startHealthRig(3, { panicThreshold: 0 });
    const { balancer, cluster, changes } = rig;
    const [a, b, c] = cluster.backends as [(typeof cluster.backends)[number], (typeof cluster.backends)[number], (typeof cluster.backends)[number]];
    const downs = [changes.next(a.name, "down"), changes.next(b.name, "down")];
    a.setHealth("down");
    b.setHealth("down");
    await Promise.all(downs);
    expect(balancer.pool.panicking()).toBe(false);
    for (let i = 0; i < 6; i++) expect((await whoAnswers(balancer.url)).name).toBe(c.name);
  });
});

describe("success rate and failure percentage, under real traffic", () => {


  test("success rate: the backend answering 500s is ejected by the sweep, the others are not", async () => {
    rig = await startHealthRig(5, {
      ...ADMIN, healthCheck: false, strategy: "round-robin", retry: { attempts: 1 },
      // Consecutive failures off: only the sweep can eject here.
      passive: { consecutiveFailures: 0, interval: "200ms", successRate: { requestVolume: 10 } },
    });
    const { balancer, cluster, changes } = rig;
    const bad = cluster.backends[2]!;
    bad.setFailRate(1);
    const ejected = changes.next(bad.name, "ejected", 15_000);
    // Enough for every backend to pass requestVolume within one interval or a few.
    const c = await drivenUntil(balancer.url, ejected);
    expect(c.reason).toMatch(/^ejected for 30s after a success rate of 0% in the last interval, below /);
    expect(balancer.pool.backends.filter((x) => x.state() === "ejected").map((x) => x.name)).toEqual([bad.name]);
    expect((await stats()).backends.find((x: { name: string }) => x.name === bad.name).ejections).toBe(1);
  });

  test("failure percentage: a backend failing 90% of its tries is ejected; success rate off", async () => {
    rig = await startHealthRig(5, {
      healthCheck: false, strategy: "round-robin", retry: { attempts: 1 },
      passive: { consecutiveFailures: 0, interval: "200ms", successRate: false, failurePercentage: { requestVolume: 10 } },
    });
    const { balancer, cluster, changes } = rig;
    const bad = cluster.backends[0]!;
    bad.setFailRate(0.9);
    const ejected = changes.next(bad.name, "ejected", 15_000);
    const c = await drivenUntil(balancer.url, ejected);
    expect(c.reason).toContain("tries failed in the last interval (threshold 85%)");
    expect(balancer.pool.backends.filter((x) => x.state() === "ejected").map((x) => x.name)).toEqual([bad.name]);
  });

  test("below minimumHosts nothing is judged: four backends, one failing every request, none ejected", async () => {
    rig = await startHealthRig(4, {
      healthCheck: false, strategy: "round-robin", retry: { attempts: 1 },
      passive: { consecutiveFailures: 0, interval: "100ms", successRate: { requestVolume: 5 }, failurePercentage: { requestVolume: 5 } },
    });
    const { balancer, cluster } = rig;
    cluster.backends[0]!.setFailRate(1);
    // Several sweeps' worth of traffic (each backend far past requestVolume per interval).
    const until = performance.now() + 600;
    while (performance.now() < until) await load(balancer.url, 40);
    await waitFor(() => balancer.pool.backends[0]!.stats.byClass[5]! >= 20, "the failing backend's 500s");
    expect(balancer.pool.backends.map((x) => x.state())).toEqual(["up", "up", "up", "up"]);
  });
});
