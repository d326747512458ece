/**
 * `workers` end to end: real worker processes of this binary (src/cli.ts __worker) sharing the
 * proxy port, in front of sim backends, with the owner in this test process.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { FAST_CHECK } from "../health/helpers.ts";
import { alive, load, supervisorOf } from "./helpers.ts";
import type { StateChange } from "../../src/pool/backend.ts";
import type { SimBackend } from "../../sim/backend.ts";
import { validateConfig } from "../../src/config/load.ts";

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** Every worker answered some of `n` requests on fresh connections: the kernel spread them. */
async function servedByEvery(r: TestRig, n = 40): Promise<void> {
  const res = await load(r.balancer.url.replace(/^tcp:/, "http:"), n, 4, { fresh: true });
  expect(res.ok).toBe(n);
  const sup = supervisorOf(r.balancer);
  await sup.pull();
  for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
}

describe("workers", () => {
  for (const engine of ["fetch", "socket"] as const) {
    test(`the ${engine} engine serves through two worker processes sharing the port`, async () => {
      rig = await startRig(2, { workers: 2, engine, log: { access: false } });
      const sup = supervisorOf(rig.balancer);
      expect(sup.figures().list.map((w) => w.state)).toEqual(["serving", "serving"]);
      expect(rig.logLines.some((l) => l.includes("2 worker processes"))).toBe(true);
      await servedByEvery(rig);
    });
  }

  test("TCP mode relays through two worker processes", async () => {
    rig = await startRig(2, (c) => ({
      mode: "tcp", workers: 2, log: { access: false },
      backends: c.backends.map((b) => ({ name: b.name, url: `127.0.0.1:${b.port}` })),
    }));
    await servedByEvery(rig);
    await waitFor(() => rig!.balancer.tcpStats!.accepted === 40, "the TCP totals of both workers summed");
    expect(rig.balancer.pool.backends.reduce((n, b) => n + b.acquired, 0)).toBe(40);
  });

  test("least-connections stays balanced across workers: a slowed backend gets less traffic", async () => {
    rig = await startRig(2, { workers: 2, engine: "socket", strategy: "least-connections", log: { access: false } }, (c) => {
      c.backends[1]!.setLatency({ min: 40, max: 40 });
    });
    const res = await load(rig.balancer.url, 400, 16, { fresh: true });
    expect(res.ok).toBe(400);
    const [fast, slow] = rig.cluster.backends;
    // Even shares would be 200 each; every worker sees the slow backend's requests pile up.
    expect(slow!.requests).toBeLessThan(fast!.requests / 2);
    const sup = supervisorOf(rig.balancer);
    await sup.pull();
    for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
  });

  test("a health flip reaches every worker: no request goes to the down backend once it is announced", async () => {
    rig = await startRig(2, { workers: 2, healthCheck: FAST_CHECK, log: { access: false } });
    const sup = supervisorOf(rig.balancer);
    await servedByEvery(rig);
    const down = rig.cluster.backends[1]!;
    let announced: Promise<{ synced: boolean; ms: number }> | undefined;
    rig.balancer.pool.onStateChange((c: StateChange) => {
      if (c.backend.name !== down.name || c.to !== "down") return;
      // The moment the owner announces the flip: from here every worker must hear of it.
      const at = performance.now();
      announced = sup.synced(5000).then((synced) => ({ synced, ms: performance.now() - at }));
    });
    down.setHealth("down");
    await waitFor(() => announced !== undefined, "the owner's probe to mark backend-2 down");
    const { synced, ms } = await announced!;
    expect(synced).toBe(true);
    console.log(`health flip applied by both workers ${ms.toFixed(2)}ms after the owner announced it`);
    const before = down.requests;
    const res = await load(rig.balancer.url, 200, 8, { fresh: true });
    expect(res.ok).toBe(200);
    expect(down.requests).toBe(before);
  });

  test("priority tiers in every worker: the standby takes traffic only while the primary is down", async () => {
    rig = await startRig(2, (c) => ({
      workers: 2, healthCheck: FAST_CHECK, log: { access: false },
      backends: [{ name: "primary", url: c.backends[0]!.url }, { name: "standby", url: c.backends[1]!.url, priority: 1 }],
    }));
    const sup = supervisorOf(rig.balancer);
    const [primary, standby] = rig.cluster.backends as [SimBackend, SimBackend];
    await servedByEvery(rig);
    expect(standby.requests).toBe(0);
    /** The owner announces `name` becoming `to`, and every worker applies that table. */
    const flip = (name: string, to: string) =>
      new Promise<boolean>((resolve) => {
        const off = rig!.balancer.pool.onStateChange((c: StateChange) => {
          if (c.backend.name !== name || c.to !== to) return;
          off();
          void sup.synced(5000).then(resolve);
        });
      });
    const failedOver = flip("primary", "down");
    primary.setHealth("down");
    expect(await failedOver).toBe(true);
    const before = primary.requests;
    expect((await load(rig.balancer.url, 100, 4, { fresh: true })).ok).toBe(100);
    expect(primary.requests).toBe(before);
    const failedBack = flip("primary", "up");
    primary.setHealth("up");
    expect(await failedBack).toBe(true);
    const standbyBefore = standby.requests;
    expect((await load(rig.balancer.url, 100, 4, { fresh: true })).ok).toBe(100);
    expect(standby.requests).toBe(standbyBefore);
  });

  test("passive failures from several workers are counted once: ejection after exactly consecutiveFailures", async () => {
    rig = await startRig(2, {
      workers: 2, log: { access: false },
      retry: { onStatus: [] },
      passive: { consecutiveFailures: 4, baseEjectionTime: "30s", maxEjectedPercent: 50 },
    }, (c) => c.backends[1]!.setFailRate(1));
    const bad = rig.balancer.pool.get("backend-2")!;
    // One request at a time, each on a new connection (so over both workers), each 500 from backend-2.
    let failures = 0;
    while (failures < 4) {
      const res = await fetch(rig.balancer.url + "/", { headers: { connection: "close" }, keepalive: false });
      await res.arrayBuffer();
      if (res.status !== 500) continue;
      failures++;
      if (failures < 4) await waitFor(() => bad.consecutiveFailures === failures, `the owner to count failure ${failures} once`);
    }
    await waitFor(() => bad.state() === "ejected", "backend-2 ejected");
    expect(bad.ejectionCount).toBe(1);
    expect(rig.cluster.backends[1]!.requests).toBe(4);
  });

  for (const engine of ["fetch", "socket"] as const) test(`panic mode reaches every worker (${engine} engine): two of three down, all three answer; panic picks summed`, async () => {
    rig = await startRig(3, { workers: 2, engine, healthCheck: FAST_CHECK, log: { access: false } });
    const sup = supervisorOf(rig.balancer);
    const [a, b] = rig.cluster.backends as [(typeof rig.cluster.backends)[number], (typeof rig.cluster.backends)[number]];
    a.setHealth("down");
    b.setHealth("down");
    await waitFor(() => rig!.balancer.pool.backends.filter((x) => x.state() === "down").length === 2, "two backends marked down");
    expect(await sup.synced(5000)).toBe(true);
    expect(rig.balancer.pool.panicking()).toBe(true);
    const before = rig.cluster.backends.map((x) => x.requests);
    const res = await load(rig.balancer.url, 60, 4, { fresh: true });
    expect(res.ok).toBe(60);
    // Every backend took some: the workers balance over all three, healthy or not.
    rig.cluster.backends.forEach((x, i) => expect(x.requests).toBeGreaterThan(before[i]!));
    await sup.pull();
    expect(rig.balancer.pool.panic.picks).toBeGreaterThanOrEqual(60);
  });

  test("kill -9 of one worker under load costs at most the requests it held, and it comes back", async () => {
    rig = await startRig(2, { workers: 2, engine: "socket", log: { access: false } }, (c) => {
      for (const b of c.backends) b.setLatency({ min: 2, max: 5 });
    });
    const sup = supervisorOf(rig.balancer);
    const concurrency = 8;
    let stop = false;
    const running = load(rig.balancer.url, 1_000_000, concurrency, { stop: () => stop });
    await waitFor(() => rig!.cluster.backends.reduce((n, b) => n + b.requests, 0) > 200, "traffic through both workers");
    const victim = sup.figures().list[0]!.pid!;
    process.kill(victim, "SIGKILL");
    await waitFor(() => {
      const w = sup.figures().list[0]!;
      return w.state === "serving" && w.pid !== victim && w.restarts === 1;
    }, "worker 0 started again", 10_000);
    const after = rig.cluster.backends.reduce((n, b) => n + b.requests, 0);
    await waitFor(() => rig!.cluster.backends.reduce((n, b) => n + b.requests, 0) > after + 200, "traffic after the restart");
    stop = true;
    const res = await running;
    console.log(`kill -9 of a worker under ${concurrency} clients: ${res.ok} answered, ${res.failed} failed`);
    // Each client holds at most one request at a time: the killed worker held at most that many.
    expect(res.failed).toBeLessThanOrEqual(concurrency);
    expect(rig.logLines.some((l) => l.includes(`worker 0 (pid ${victim}) exited with signal SIGKILL`))).toBe(true);
    expect(alive(victim)).toBe(false);
    // The new worker takes new connections.
    await servedByEvery(rig);
  });

  test("/metrics totals equal the requests sent; histograms are merged bucket by bucket", async () => {
    rig = await startRig(2, { workers: 2, admin: { host: "127.0.0.1", port: 0 }, log: { access: false } });
    const n = 300;
    const res = await load(rig.balancer.url, n, 6, { fresh: true });
    expect(res.ok).toBe(n);
    const text = await (await fetch(rig.balancer.adminUrl + "/metrics")).text();
    const sum = (re: RegExp) => [...text.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
    expect(sum(/^switchyard_requests_total\{[^}]*\} (\d+)$/gm)).toBe(n);
    expect(sum(/^switchyard_request_duration_seconds_count (\d+)$/gm)).toBe(n);
    expect(sum(/^switchyard_request_duration_seconds_bucket\{le="\+Inf"\} (\d+)$/gm)).toBe(n);
    expect(sum(/^switchyard_backend_requests_total\{[^}]*\} (\d+)$/gm)).toBe(n);
    expect(sum(/^switchyard_backend_response_latency_seconds_count\{[^}]*\} (\d+)$/gm)).toBe(n);
    const perWorker = [...text.matchAll(/^switchyard_worker_requests_total\{worker="(\d)"\} (\d+)$/gm)].map((m) => Number(m[2]));
    expect(perWorker.length).toBe(2);
    expect(perWorker.reduce((a, b) => a + b, 0)).toBe(n);
    for (const x of perWorker) expect(x).toBeGreaterThan(0);
    const stats = await (await fetch(rig.balancer.adminUrl + "/stats")).json();
    expect(stats.totals.requests).toBe(n);
    expect(stats.workers.count).toBe(2);
    expect(stats.workers.list.map((w: { state: string }) => w.state)).toEqual(["serving", "serving"]);
  });

  test("drain and a backend added through the admin API reach every worker", async () => {
    rig = await startRig(3, (c) => ({
      workers: 2, log: { access: false },
      backends: c.backends.slice(0, 2).map((b) => ({ name: b.name, url: b.url })),
    }));
    const sup = supervisorOf(rig.balancer);
    const actor = { by: "test", from: "local" };
    const [b1, b2, b3] = rig.cluster.backends;
    await rig.balancer.control.drain("backend-2", actor);
    expect(await sup.synced()).toBe(true);
    const before2 = b2!.requests;
    await load(rig.balancer.url, 60, 4, { fresh: true });
    expect(b2!.requests).toBe(before2);
    await rig.balancer.control.add({ name: "backend-3", url: b3!.url }, actor);
    expect(await sup.synced()).toBe(true);
    const before = b1!.requests;
    const res = await load(rig.balancer.url, 60, 4, { fresh: true });
    expect(res.ok).toBe(60);
    expect(b3!.requests).toBeGreaterThan(0);
    expect(b1!.requests).toBeGreaterThan(before);
  });

  for (const engine of ["fetch", "socket"] as const) test(`a reload from file reaches every worker (${engine} engine): proxy settings in place, a new backend in the table`, async () => {
    let generation = 1;
    rig = await startRig(3, (c) => ({
      workers: 2, engine, log: { access: false },
      backends: c.backends.slice(0, 2).map((b) => ({ name: b.name, url: b.url })),
    }), () => {}, {
      // What the file says after the edit: a response header rule and a third backend.
      load: async () => validateConfig({
        listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false }, workers: 2, engine,
        responseHeaders: { set: { "x-generation": String(++generation) } },
        backends: rig!.cluster.backends.map((b) => ({ name: b.name, url: b.url })),
      }),
    });
    const report = await rig.balancer.reload();
    expect(report.lines.some((l) => l.startsWith("added backend-3"))).toBe(true);
    expect(await supervisorOf(rig.balancer).synced()).toBe(true);
    // Every worker answers with the new header, and sends traffic to the new backend.
    const seen = new Set<string | null>();
    for (let i = 0; i < 40; i++) {
      const res = await fetch(rig.balancer.url + "/", { headers: { connection: "close" }, keepalive: false });
      await res.arrayBuffer();
      seen.add(res.headers.get("x-generation"));
    }
    expect([...seen]).toEqual(["2"]);
    expect(rig.cluster.backends[2]!.requests).toBeGreaterThan(0);
  });

  test("consistent-hash: a key goes to the same backend whichever worker takes the connection", async () => {
    rig = await startRig(3, { workers: 2, strategy: "consistent-hash", hash: { key: "header:x-user" }, log: { access: false } });
    for (const user of ["ann", "bob", "cy"]) {
      const seen = new Set<string>();
      for (let i = 0; i < 16; i++) {
        const res = await fetch(rig.balancer.url + "/", { headers: { connection: "close", "x-user": user }, keepalive: false });
        seen.add((await res.text()).trim());
      }
      expect(seen.size).toBe(1);
    }
    const sup = supervisorOf(rig.balancer);
    await sup.pull();
    for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
  });

  test("stop drains every worker: a request in flight finishes, then every worker process is gone", async () => {
    rig = await startRig(1, { workers: 2, log: { access: false }, timeouts: { shutdownGrace: "5s" } });
    const sup = supervisorOf(rig.balancer);
    const pids = sup.figures().list.map((w) => w.pid!);
    const slow = fetch(rig.balancer.url + "/delay/300");
    await waitFor(() => rig!.cluster.backends[0]!.active === 1, "the request in flight at the backend");
    await rig.balancer.stop(true);
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("delayed 300ms");
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  test("a port in use fails the start with the usual listen error", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const err = await startRig(1, { workers: 2, listen: { host: "127.0.0.1", port: taken.port } }).then(
        (r) => {
          rig = r;
          return undefined;
        },
        (e: unknown) => e as { code?: string; message: string },
      );
      expect(err?.code).toBe("SY_LISTEN_FAILED");
      expect(err?.message).toContain("address already in use");
    } finally {
      taken.stop(true);
    }
  });
});
