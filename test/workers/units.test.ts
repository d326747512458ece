/** The parts of `workers` that can be checked on their own: sums, passive events, tables, start failures. */
import { describe, expect, test } from "bun:test";
import { availableParallelism } from "node:os";
import { Backend } from "../../src/pool/backend.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { TrafficStats } from "../../src/stats/traffic.ts";
import { TcpStats } from "../../src/tcp/stats.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { validateConfig } from "../../src/config/load.ts";
import { reportOf, Summer } from "../../src/workers/reports.ts";
import { applyTable, WorkerPassive } from "../../src/workers/worker.ts";
import { resolveWorkers, WorkerSupervisor } from "../../src/workers/supervisor.ts";
import type { PassiveEvent, Table } from "../../src/workers/protocol.ts";
import type { PassiveSignals } from "../../src/health/passive.ts";

function workerFigures(requests: number[], latencies: number[]) {
  const traffic = new TrafficStats();
  const b = new Backend({ name: "a", url: "http://127.0.0.1:1" });
  for (const ms of latencies) traffic.record("GET", 200, ms);
  for (const status of requests) {
    b.stats.countRequest();
    b.stats.countResponse("GET", status, 1);
  }
  return { traffic, backend: b };
}

describe("Summer", () => {
  test("sums the workers' counters and merges histograms bucket by bucket; a dead worker's last figures stay", () => {
    const owner = new Backend({ name: "a", url: "http://127.0.0.1:1" });
    const traffic = new TrafficStats();
    const summer = new Summer({ traffic, backends: () => [owner] });
    const w0 = workerFigures([200, 200, 503], [0.5, 3]);
    const w1 = workerFigures([200], [3, 3, 70]);
    const held = w1.backend.acquire();
    summer.update(0, reportOf(w0.traffic, [w0.backend]));
    summer.update(1, reportOf(w1.traffic, [w1.backend]));
    expect(traffic.requests).toBe(5);
    expect(traffic.latency.count).toBe(5);
    // Bucket by bucket: the merged histogram is the one a single process would have kept.
    const single = new TrafficStats();
    for (const ms of [0.5, 3, 3, 3, 70]) single.record("GET", 200, ms);
    expect(Array.from(traffic.latency.counts)).toEqual(Array.from(single.latency.counts));
    expect(traffic.latency.sum).toBeCloseTo(single.latency.sum);
    expect(owner.stats.requests).toBe(4);
    expect(owner.stats.byClass[5]).toBe(1);
    expect(owner.inFlight).toBe(1);
    expect(owner.acquired).toBe(1);

    // Worker 1 dies: its in-flight work is gone, its counts stay; its successor starts at zero.
    summer.retire(1);
    expect(owner.inFlight).toBe(0);
    expect(owner.stats.requests).toBe(4);
    expect(traffic.requests).toBe(5);
    summer.update(1, reportOf(new TrafficStats(), []));
    expect(traffic.requests).toBe(5);
    held.release();
  });

  test("the workers' retry-budget refusals are summed into the owner's pool; a dead worker's stay", () => {
    const owner = new LocalPool(createPolicy("round-robin"));
    const summer = new Summer({ traffic: new TrafficStats(), backends: () => [], retryBudget: owner.retryBudget });
    const none = { percent: 0, minRetriesPerSecond: 0 };
    const w0 = new LocalPool(createPolicy("round-robin"));
    const w1 = new LocalPool(createPolicy("round-robin"));
    for (let i = 0; i < 3; i++) w0.retryBudget.admit(none, 0);
    w1.retryBudget.admit(none, 0);
    summer.update(0, reportOf(new TrafficStats(), [], undefined, 0, w0.retryBudget));
    summer.update(1, reportOf(new TrafficStats(), [], undefined, 0, w1.retryBudget));
    expect(owner.retryBudget.exhausted).toBe(4);
    summer.retire(1);
    summer.update(1, reportOf(new TrafficStats(), [], undefined, 0, new LocalPool(createPolicy("round-robin")).retryBudget));
    expect(owner.retryBudget.exhausted).toBe(4);
  });

  test("TCP totals are summed; open connections of a dead worker are not", () => {
    const traffic = new TrafficStats();
    const tcpStats = new TcpStats();
    const summer = new Summer({ traffic, tcpStats, backends: () => [] });
    const t = new TcpStats();
    t.accepted = 3;
    t.open = 2;
    summer.update(0, reportOf(new TrafficStats(), [], t));
    summer.update(1, reportOf(new TrafficStats(), [], t));
    expect(tcpStats.accepted).toBe(6);
    expect(tcpStats.open).toBe(4);
    summer.retire(0);
    expect(tcpStats.accepted).toBe(6);
    expect(tcpStats.open).toBe(2);
  });

  test("the proxy's own errors and panic picks are summed; a dead worker's stay counted", () => {
    const traffic = new TrafficStats();
    const pool = new LocalPool(createPolicy("round-robin"), [{ name: "a", url: "http://127.0.0.1:1" }]);
    const summer = new Summer({ traffic, backends: () => pool.backends, setPanicPicks: (n) => pool.setRemotePanicPicks(n) });
    const w0 = new TrafficStats();
    w0.localErrors.EMFILE = 2;
    const w1 = new TrafficStats();
    w1.localErrors.EMFILE = 1;
    w1.localErrors.EADDRNOTAVAIL = 4;
    summer.update(0, reportOf(w0, [], undefined, 7));
    summer.update(1, reportOf(w1, [], undefined, 5));
    expect(traffic.localErrors).toMatchObject({ EMFILE: 3, EADDRNOTAVAIL: 4, ENFILE: 0 });
    expect(pool.panic.picks).toBe(12);
    summer.retire(1);
    summer.update(1, reportOf(new TrafficStats(), [], undefined, 0));
    expect(traffic.localErrors).toMatchObject({ EMFILE: 3, EADDRNOTAVAIL: 4 });
    expect(pool.panic.picks).toBe(12);
  });

  test("the owner's backend drains when the workers report nothing in flight", async () => {
    const owner = new Backend({ name: "a", url: "http://127.0.0.1:1" });
    owner.setRemoteLoad(2, 2);
    let idle = false;
    void owner.whenIdle().then(() => (idle = true));
    await Bun.sleep(0);
    expect(idle).toBe(false);
    owner.setRemoteLoad(0, 2);
    await Bun.sleep(0);
    expect(idle).toBe(true);
  });
});

describe("WorkerPassive", () => {
  test("failures go out in order at the next turn; a run of good answers is one ok, placed where it happened", async () => {
    const sent: PassiveEvent[][] = [];
    const p: PassiveSignals & { flush(): void } = new WorkerPassive((e) => sent.push(e));
    const a = new Backend({ name: "a", url: "http://127.0.0.1:1" });
    const b = new Backend({ name: "b", url: "http://127.0.0.1:2" });
    p.succeeded(a, 200);
    p.succeeded(a, 204);
    p.failed(a, "connection reset");
    p.succeeded(b, 502);
    p.connectFailed(b, "connection refused");
    p.succeeded(a, 200);
    expect(sent).toEqual([]);
    await Bun.sleep(5);
    expect(sent).toEqual([[
      { b: "a", k: "ok" },
      { b: "a", k: "fail", d: "connection reset" },
      { b: "b", k: "fail", d: "status 502" },
      { b: "b", k: "connect", d: "connection refused" },
      { b: "a", k: "ok" },
    ]]);
    // Good answers alone wait for the next report.
    p.succeeded(b, 200);
    await Bun.sleep(5);
    expect(sent.length).toBe(1);
    p.flush();
    expect(sent[1]).toEqual([{ b: "b", k: "ok" }]);
  });
});

describe("applyTable", () => {
  const state = (over: Partial<Table["backends"][number]["state"]> = {}) => ({
    healthy: true, enabled: true, forced: null, ejectedUntil: 0, availableSince: 0, changedAt: 0, reason: "configured", ...over,
  });
  const entry = (name: string, url: string, over: Partial<Table["backends"][number]["state"]> = {}) => ({
    spec: { name, url, weight: 1, maxConnections: 0, slowStart: 0, latencyDecay: 1000 }, state: state(over),
  });

  test("the worker's pool becomes the table: added, updated, mirrored, removed, replaced, reordered, strategy", () => {
    const pool = new LocalPool(createPolicy("round-robin"));
    const removed: string[] = [];
    applyTable(pool, { version: 1, strategy: "round-robin", backends: [entry("a", "http://127.0.0.1:1/"), entry("b", "http://127.0.0.1:2/")] }, (b) => removed.push(b.name));
    const a = pool.get("a")!;
    expect(pool.backends.map((b) => b.name)).toEqual(["a", "b"]);

    applyTable(pool, {
      version: 2, strategy: "least-connections",
      backends: [
        entry("c", "http://127.0.0.1:3/"),
        { ...entry("a", "http://127.0.0.1:1/", { enabled: false, reason: "drained by ops" }), spec: { name: "a", url: "http://127.0.0.1:1/", weight: 5, maxConnections: 0, slowStart: 0, latencyDecay: 250 } },
        entry("b", "http://127.0.0.1:9/", { healthy: false }),
      ],
    }, (b) => removed.push(b.name));
    expect(pool.policy.name).toBe("least-connections");
    expect(pool.backends.map((b) => b.name)).toEqual(["c", "a", "b"]);
    // The same object, its new config and the owner's state; b's new address is a new backend.
    expect(pool.get("a")).toBe(a);
    expect(a.weight).toBe(5);
    expect(a.stats.ewma.decayMs).toBe(250);
    expect(a.state()).toBe("draining");
    expect(a.lastChangeReason).toBe("drained by ops");
    expect(pool.get("b")!.url.href).toBe("http://127.0.0.1:9/");
    expect(pool.get("b")!.available()).toBe(false);
    expect(removed).toEqual(["b"]);

    applyTable(pool, { version: 3, strategy: "least-connections", backends: [entry("a", "http://127.0.0.1:1/")] }, (b) => removed.push(b.name));
    expect(pool.backends.map((b) => b.name)).toEqual(["a"]);
    expect(removed).toEqual(["b", "c", "b"]);
  });

  test("priorities reach the worker's pool, which decides the tier itself from the mirrored states", () => {
    const pool = new LocalPool(createPolicy("round-robin"));
    const withPriority = (e: ReturnType<typeof entry>, priority: number) => ({ ...e, spec: { ...e.spec, priority } });
    const table = (primaryUp: boolean): Table => ({
      version: primaryUp ? 1 : 2, strategy: "round-robin",
      backends: [entry("p", "http://127.0.0.1:1/", { healthy: primaryUp }), withPriority(entry("s", "http://127.0.0.1:2/"), 1)],
    });
    applyTable(pool, table(true), () => {});
    expect(pool.backends.map((b) => b.priority)).toEqual([0, 1]);
    expect(pool.pick()!.name).toBe("p");
    applyTable(pool, table(false), () => {});
    expect(pool.pick()!.name).toBe("s");
    applyTable(pool, table(true), () => {});
    expect(pool.pick()!.name).toBe("p");
  });

  test("an ejection and a slow-start ramp follow the owner's clock values", () => {
    const pool = new LocalPool(createPolicy("round-robin"));
    const now = Date.now();
    applyTable(pool, {
      version: 1, strategy: "round-robin",
      backends: [
        entry("a", "http://127.0.0.1:1/", { ejectedUntil: now + 60_000 }),
        { ...entry("b", "http://127.0.0.1:2/", { availableSince: now - 5_000 }), spec: { name: "b", url: "http://127.0.0.1:2/", weight: 1, maxConnections: 0, slowStart: 10_000, latencyDecay: 1000 } },
      ],
    }, () => {});
    expect(pool.get("a")!.state(now)).toBe("ejected");
    expect(pool.get("b")!.rampFactor(now)).toBeCloseTo(0.5, 1);
  });
});

describe("WorkerSupervisor", () => {
  const config = validateConfig({ backends: [{ url: "http://127.0.0.1:1" }] });
  const supervisor = (command: string[]) =>
    new WorkerSupervisor({
      count: 2, pool: new LocalPool(createPolicy("round-robin")), traffic: new TrafficStats(), logger: memoryLogger(),
      passive: { connectFailed() {}, failed() {}, succeeded() {} }, config: () => config, command,
    });

  test("a worker that exits before serving fails the start with SY_WORKER_FAILED, and none is left", async () => {
    const s = supervisor([process.execPath, "-e", "process.exit(3)"]);
    const err = (await s.start(0).catch((e: unknown) => e)) as { code?: string; message: string };
    expect(err.code).toBe("SY_WORKER_FAILED");
    expect(err.message).toContain("exited (code 3) before it served");
    expect(s.figures().list.map((w) => w.state)).toEqual(["stopped", "stopped"]);
  });

  test("a worker that cannot listen fails the start with the same ListenError one process would give", async () => {
    const script = `process.send({ t: "failed", error: { name: "ListenError", message: "x", listener: "proxy", address: "127.0.0.1:80", reason: "EACCES" } }); setTimeout(() => {}, 5000);`;
    const s = supervisor([process.execPath, "-e", script]);
    const err = (await s.start(0).catch((e: unknown) => e)) as { code?: string; message: string };
    expect(err.code).toBe("SY_LISTEN_FAILED");
    expect(err.message).toBe("proxy listener on 127.0.0.1:80: permission denied (ports below 1024 need privileges)");
  });

  test("a real worker that cannot bind the port reports the listen error, and is ended", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, exclusive: true, socket: { data() {} } });
    try {
      const s = new WorkerSupervisor({
        count: 1, pool: new LocalPool(createPolicy("round-robin")), traffic: new TrafficStats(), logger: memoryLogger(),
        passive: { connectFailed() {}, failed() {}, succeeded() {} },
        config: () => validateConfig({ listen: { host: "127.0.0.1", port: 0 }, engine: "socket", backends: [{ url: "http://127.0.0.1:1" }] }),
      });
      const err = (await s.start(taken.port).catch((e: unknown) => e)) as { code?: string; message: string };
      expect(err.code).toBe("SY_LISTEN_FAILED");
      expect(err.message).toBe(`proxy listener on 127.0.0.1:${taken.port}: address already in use`);
      expect(s.figures().list[0]!.state).toBe("stopped");
    } finally {
      taken.stop(true);
    }
  });

  test('"auto" is the cores this process may use', () => {
    expect(resolveWorkers("auto")).toBe(availableParallelism());
    expect(resolveWorkers(3)).toBe(3);
  });
});
