/** The parts of `workers` that can be checked on their own: sums, passive events, tables, start failures. */
import { describe, expect, test } from "bun:test";
import { availableParallelism, tmpdir } from "node:os";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/wait.ts";
import { Backend } from "../../src/pool/backend.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { TrafficStats } from "../../src/stats/traffic.ts";
import { TcpStats } from "../../src/tcp/stats.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { validateConfig } from "../../src/config/load.ts";
import { reportOf, Summer } from "../../src/workers/reports.ts";
import { applyTable, WorkerPassive, WorkerPools } from "../../src/workers/worker.ts";
import { resolveWorkers, WorkerSupervisor, type OwnedPools } from "../../src/workers/supervisor.ts";
import type { PassiveEvent, Table, TableEntry } from "../../src/workers/protocol.ts";
import { RouteTraffic } from "../../src/listener/routing.ts";
import type { PassiveSignals } from "../../src/health/passive.ts";

const state = (over: Partial<TableEntry["state"]> = {}) => ({
  healthy: true, enabled: true, forced: null, ejectedUntil: 0, availableSince: 0, changedAt: 0, reason: "configured", ...over,
});
const entry = (name: string, url: string, over: Partial<TableEntry["state"]> = {}): TableEntry => ({
  spec: { name, url, weight: 1, maxConnections: 0, slowStart: 0, latencyDecay: 1000 }, state: state(over),
});
/** A pool's table as the owner sends it. */
const table = (backends: TableEntry[], strategy: Table["strategy"] = "round-robin", panicThreshold = 0): Table => ({ strategy, panicThreshold, backends });

/** A pool holding these backends (a worker's copy, or the owner's pool). */
function poolOf(...backends: Backend[]): LocalPool {
  const pool = new LocalPool(createPolicy("round-robin"));
  for (const b of backends) pool.add(b);
  return pool;
}

function workerFigures(requests: number[], latencies: number[], name = "a") {
  const traffic = new TrafficStats();
  const b = new Backend({ name, url: "http://127.0.0.1:1" });
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
    const ownerPool = poolOf(owner);
    const summer = new Summer({ traffic, pools: () => [["default", ownerPool]] });
    const w0 = workerFigures([200, 200, 503], [0.5, 3]);
    const w1 = workerFigures([200], [3, 3, 70]);
    const held = w1.backend.acquire();
    summer.update(0, reportOf(w0.traffic, [["default", poolOf(w0.backend)]]));
    summer.update(1, reportOf(w1.traffic, [["default", poolOf(w1.backend)]]));
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
    expect(owner.stats.requests).toBe(4);
    held.release();
  });

  test("the workers' retry-budget refusals are summed into the owner's pool; a dead worker's stay", () => {
    const owner = new LocalPool(createPolicy("round-robin"));
    const summer = new Summer({ traffic: new TrafficStats(), pools: () => [["default", owner]] });
    const none = { percent: 0, minRetriesPerSecond: 0 };
    const w0 = new LocalPool(createPolicy("round-robin"));
    const w1 = new LocalPool(createPolicy("round-robin"));
    for (let i = 0; i < 3; i++) w0.retryBudget.admit(none, 0);
    w1.retryBudget.admit(none, 0);
    summer.update(0, reportOf(new TrafficStats(), [["default", w0]]));
    summer.update(1, reportOf(new TrafficStats(), [["default", w1]]));
    expect(owner.retryBudget.exhausted).toBe(4);
    summer.retire(1);
    summer.update(1, reportOf(new TrafficStats(), [["default", new LocalPool(createPolicy("round-robin"))]]));
    expect(owner.retryBudget.exhausted).toBe(4);
  });

  test("TCP totals are summed; open connections of a dead worker are not", () => {
    const traffic = new TrafficStats();
    const tcpStats = new TcpStats();
    const summer = new Summer({ traffic, tcpStats, pools: () => [] });
    const t = new TcpStats();
    t.accepted = 3;
    t.open = 2;
    summer.update(0, reportOf(new TrafficStats(), [], [], t));
    summer.update(1, reportOf(new TrafficStats(), [], [], t));
    expect(tcpStats.accepted).toBe(6);
    expect(tcpStats.open).toBe(4);
    summer.retire(0);
    expect(tcpStats.accepted).toBe(6);
    expect(tcpStats.open).toBe(2);
  });

  test("the proxy's own errors and panic picks are summed; a dead worker's stay counted", () => {
    const traffic = new TrafficStats();
    const pool = new LocalPool(createPolicy("round-robin"), [{ name: "a", url: "http://127.0.0.1:1" }]);
    const summer = new Summer({ traffic, pools: () => [["default", pool]] });
    const w0 = new TrafficStats();
    w0.localErrors.EMFILE = 2;
    const w1 = new TrafficStats();
    w1.localErrors.EMFILE = 1;
    w1.localErrors.EADDRNOTAVAIL = 4;
    /** A worker's copy that made `picks` picks in panic mode: its one backend is down, the threshold 50%. */
    const copyWithPicks = (picks: number) => {
      const copy = new LocalPool(createPolicy("round-robin"));
      applyTable(copy, table([entry("a", "http://127.0.0.1:1/", { healthy: false })], "round-robin", 50), () => {});
      for (let i = 0; i < picks; i++) expect(copy.pick()?.name).toBe("a");
      return copy;
    };
    summer.update(0, reportOf(w0, [["default", copyWithPicks(7)]]));
    summer.update(1, reportOf(w1, [["default", copyWithPicks(5)]]));
    expect(traffic.localErrors).toMatchObject({ EMFILE: 3, EADDRNOTAVAIL: 4, ENFILE: 0 });
    expect(pool.panic.picks).toBe(12);
    summer.retire(1);
    summer.update(1, reportOf(new TrafficStats(), [["default", copyWithPicks(0)]]));
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
    const outbox = new WorkerPassive((e) => sent.push(e));
    const p: PassiveSignals = outbox.of("default");
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
      { p: "default", b: "a", k: "ok" },
      { p: "default", b: "a", k: "fail", d: "connection reset" },
      { p: "default", b: "b", k: "fail", d: "status 502" },
      { p: "default", b: "b", k: "connect", d: "connection refused" },
      { p: "default", b: "a", k: "ok" },
    ]]);
    // Good answers alone wait for the next report.
    p.succeeded(b, 200);
    await Bun.sleep(5);
    expect(sent.length).toBe(1);
    outbox.flush();
    expect(sent[1]).toEqual([{ p: "default", b: "b", k: "ok" }]);
  });

  test("two pools with a backend of the same name: each event names its pool, and their runs of good answers stay apart", () => {
    const sent: PassiveEvent[][] = [];
    const outbox = new WorkerPassive((e) => sent.push(e));
    const api = outbox.of("api");
    const web = outbox.of("web");
    const apiB = new Backend({ name: "backend-1", url: "http://127.0.0.1:1" });
    const webB = new Backend({ name: "backend-1", url: "http://127.0.0.1:2" });
    api.succeeded(apiB, 200);
    web.failed(webB, "connection reset");
    api.failed(apiB, "status 503");
    outbox.flush();
    expect(sent).toEqual([[
      { p: "web", b: "backend-1", k: "fail", d: "connection reset" },
      { p: "api", b: "backend-1", k: "ok" },
      { p: "api", b: "backend-1", k: "fail", d: "status 503" },
    ]]);
  });
});

describe("WorkerPools", () => {
  const signals = () => new WorkerPassive(() => {});

  test("one copy per pool, made to match the tables; a pool the tables drop leaves, its backends told", () => {
    const pools = new WorkerPools(signals());
    const removed: string[] = [];
    pools.apply({
      version: 1,
      pools: {
        api: table([entry("backend-1", "http://127.0.0.1:1/"), entry("backend-2", "http://127.0.0.1:2/")], "least-connections", 30),
        web: table([entry("backend-1", "http://127.0.0.1:3/")]),
      },
    }, (b) => removed.push(b.url.href));
    const api = pools.handle("api").pool;
    const web = pools.handle("web").pool;
    expect(api).not.toBe(web);
    expect(api.backends.map((b) => b.url.href)).toEqual(["http://127.0.0.1:1/", "http://127.0.0.1:2/"]);
    expect(api.policy.name).toBe("least-connections");
    expect(api.panicThreshold).toBe(30);
    expect(web.backends.map((b) => b.url.href)).toEqual(["http://127.0.0.1:3/"]);
    expect([...pools.entries()].map(([n]) => n)).toEqual(["api", "web"]);

    // A drain in api reaches api's backend-1 only.
    pools.apply({
      version: 2,
      pools: {
        api: table([entry("backend-1", "http://127.0.0.1:1/", { enabled: false }), entry("backend-2", "http://127.0.0.1:2/")], "least-connections", 30),
        web: table([entry("backend-1", "http://127.0.0.1:3/")]),
      },
    }, (b) => removed.push(b.url.href));
    expect(pools.handle("api").pool).toBe(api);
    expect(api.get("backend-1")!.state()).toBe("draining");
    expect(web.get("backend-1")!.state()).toBe("up");

    pools.apply({ version: 3, pools: { web: table([entry("backend-1", "http://127.0.0.1:3/")]) } }, (b) => removed.push(b.url.href));
    expect(pools.get("api")).toBeUndefined();
    expect(removed).toEqual(["http://127.0.0.1:1/", "http://127.0.0.1:2/"]);
    expect(pools.handle("web").pool).toBe(web);
  });

  test("a pool named before its table arrives is an empty copy, which the tables then fill", () => {
    const pools = new WorkerPools(signals());
    const early = pools.handle("canary").pool;
    expect(early.backends).toEqual([]);
    expect(early.pick()).toBeUndefined();
    pools.apply({ version: 1, pools: { canary: table([entry("c", "http://127.0.0.1:4/")]) } }, () => {});
    expect(pools.handle("canary").pool).toBe(early);
    expect(early.pick()!.name).toBe("c");
  });
});

describe("Summer, several pools and routes", () => {
  test("backends of the same name in two pools are summed apart; routes are summed by name; a dead worker's figures stay", () => {
    const traffic = new TrafficStats();
    const api = poolOf(new Backend({ name: "backend-1", url: "http://127.0.0.1:1" }));
    const web = poolOf(new Backend({ name: "backend-1", url: "http://127.0.0.1:2" }));
    const routes = new RouteTraffic();
    let routeNames = ["api", "web"];
    const summer = new Summer({ traffic, pools: () => [["api", api], ["web", web]], routes: { names: () => routeNames, of: (n) => routes.of(n) } });

    /** One worker's figures: `apiN` answers from api's backend-1, `webN` from web's, each counted on its route. */
    const worker = (apiN: number, webN: number) => {
      const t = new TrafficStats();
      const r = new RouteTraffic();
      const copies: [string, LocalPool][] = [];
      for (const [pool, n] of [["api", apiN], ["web", webN]] as const) {
        const b = new Backend({ name: "backend-1", url: "http://127.0.0.1:9" });
        for (let i = 0; i < n; i++) {
          b.stats.countRequest();
          b.stats.countResponse("GET", 200, 1);
          t.record("GET", 200, 1);
          r.of(pool).record("GET", 200, 1);
        }
        copies.push([pool, poolOf(b)]);
      }
      return reportOf(t, copies, r.entries());
    };
    summer.update(0, worker(3, 1));
    summer.update(1, worker(2, 5));
    expect(traffic.requests).toBe(11);
    expect(api.get("backend-1")!.stats.requests).toBe(5);
    expect(web.get("backend-1")!.stats.requests).toBe(6);
    expect(routes.of("api").requests).toBe(5);
    expect(routes.of("web").requests).toBe(6);
    expect(routes.of("web").byMethod.GET![2]).toBe(6);
    expect(routes.of("web").latency.count).toBe(6);

    summer.retire(0);
    summer.update(0, worker(0, 0));
    expect(routes.of("api").requests).toBe(5);
    expect(web.get("backend-1")!.stats.requests).toBe(6);

    // A route the config drops is no longer summed: what dead workers left of it is forgotten.
    routeNames = ["api"];
    routes.keep(routeNames);
    summer.update(1, worker(2, 5));
    expect([...routes.entries()].map(([n]) => n)).toEqual(["api"]);
  });
});

describe("applyTable", () => {
  test("the worker's pool becomes the table: added, updated, mirrored, removed, replaced, reordered, strategy", () => {
    const pool = new LocalPool(createPolicy("round-robin"));
    const removed: string[] = [];
    applyTable(pool, { strategy: "round-robin", panicThreshold: 0, backends: [entry("a", "http://127.0.0.1:1/"), entry("b", "http://127.0.0.1:2/")] }, (b) => removed.push(b.name));
    const a = pool.get("a")!;
    expect(pool.backends.map((b) => b.name)).toEqual(["a", "b"]);

    applyTable(pool, {
      strategy: "least-connections", panicThreshold: 0,
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

    applyTable(pool, { strategy: "least-connections", panicThreshold: 0, backends: [entry("a", "http://127.0.0.1:1/")] }, (b) => removed.push(b.name));
    expect(pool.backends.map((b) => b.name)).toEqual(["a"]);
    expect(removed).toEqual(["b", "c", "b"]);
  });

  test("priorities reach the worker's pool, which decides the tier itself from the mirrored states", () => {
    const pool = new LocalPool(createPolicy("round-robin"));
    const withPriority = (e: ReturnType<typeof entry>, priority: number) => ({ ...e, spec: { ...e.spec, priority } });
    const table = (primaryUp: boolean): Table => ({
      strategy: "round-robin", panicThreshold: 0,
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
      strategy: "round-robin", panicThreshold: 0,
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
  /** The owner's pools: one, `default`, empty. */
  const onePool = (): OwnedPools => {
    const p = { name: "default", pool: new LocalPool(createPolicy("round-robin")), passive: { connectFailed() {}, failed() {}, succeeded() {} } };
    return { all: [p], get: (name) => (name === "default" ? p : undefined) };
  };
  const config = validateConfig({ backends: [{ url: "http://127.0.0.1:1" }] });
  const supervisor = (command: string[]) =>
    new WorkerSupervisor({
      count: 2, pools: onePool(), traffic: new TrafficStats(), logger: memoryLogger(), config: () => config, command,
    });

  test("a worker that exits before serving fails the start with SY_WORKER_FAILED, and none is left", async () => {
    const s = supervisor([process.execPath, "-e", "process.exit(3)"]);
    const err = (await s.start({ proxy: 0 }).catch((e: unknown) => e)) as { code?: string; message: string };
    expect(err.code).toBe("SY_WORKER_FAILED");
    expect(err.message).toContain("exited (code 3) before it served");
    expect(s.figures().list.map((w) => w.state)).toEqual(["stopped", "stopped"]);
  });

  test("a worker that cannot listen fails the start with the same ListenError one process would give", async () => {
    const script = `process.send({ t: "failed", error: { name: "ListenError", message: "x", listener: "proxy", address: "127.0.0.1:80", reason: "EACCES" } }); setTimeout(() => {}, 5000);`;
    const s = supervisor([process.execPath, "-e", script]);
    const err = (await s.start({ proxy: 0 }).catch((e: unknown) => e)) as { code?: string; message: string };
    expect(err.code).toBe("SY_LISTEN_FAILED");
    expect(err.message).toBe("proxy listener on 127.0.0.1:80: permission denied (ports below 1024 need privileges)");
  });

  test("a real worker that cannot bind the port reports the listen error, and is ended", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, exclusive: true, socket: { data() {} } });
    try {
      const s = new WorkerSupervisor({
        count: 1, pools: onePool(), traffic: new TrafficStats(), logger: memoryLogger(),
        config: () => validateConfig({ listen: { host: "127.0.0.1", port: 0 }, engine: "socket", backends: [{ url: "http://127.0.0.1:1" }] }),
      });
      const err = (await s.start({ proxy: taken.port }).catch((e: unknown) => e)) as { code?: string; message: string };
      expect(err.code).toBe("SY_LISTEN_FAILED");
      expect(err.message).toBe(`proxy listener on 127.0.0.1:${taken.port}: address already in use`);
      expect(s.figures().list[0]!.state).toBe("stopped");
    } finally {
      taken.stop(true);
    }
  });

  test("SIGUSR1 while a worker starts is passed on once it serves, not before (its default action would end it)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-usr1-"));
    try {
      const go = join(dir, "go");
      const out = join(dir, "usr1");
      // A worker that records each SIGUSR1, and is ready only once the test says so.
      const script = `
        const fs = require("node:fs");
        process.on("SIGUSR1", () => fs.appendFileSync(${JSON.stringify(out)}, process.pid + "\\n"));
        process.on("message", (m) => {
          if (m.t === "start") {
            const wait = setInterval(() => {
              if (!fs.existsSync(${JSON.stringify(go)})) return;
              clearInterval(wait);
              process.send({ t: "ready", pid: process.pid });
            }, 10);
          }
          if (m.t === "stop") process.exit(0);
        });
        setInterval(() => {}, 1000);`;
      const s = supervisor([process.execPath, "-e", script]);
      const started = s.start({ proxy: 0 });
      await waitFor(() => s.figures().list.every((w) => w.pid !== null), "both workers spawned");
      s.signal("SIGUSR1");
      // Not sent while starting (a signal takes microseconds to land: 200 ms of nothing is nothing).
      await Bun.sleep(200);
      expect(existsSync(out)).toBe(false);
      expect(s.figures().list.map((w) => w.state)).toEqual(["starting", "starting"]);
      writeFileSync(go, "");
      await started;
      await waitFor(() => existsSync(out) && readFileSync(out, "utf8").trim().split("\n").length === 2, "the owed SIGUSR1 at each worker once it serves");
      // Serving now: a signal reaches each at once, once.
      s.signal("SIGUSR1");
      await waitFor(() => readFileSync(out, "utf8").trim().split("\n").length === 4, "one more per worker");
      await s.stop(false, 1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('"auto" is the cores this process may use', () => {
    expect(resolveWorkers("auto")).toBe(availableParallelism());
    expect(resolveWorkers(3)).toBe(3);
  });
});
