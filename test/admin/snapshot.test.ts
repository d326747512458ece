import { describe, expect, test } from "bun:test";
import { buildSnapshot } from "../../src/admin/snapshot.ts";
import { Sampler } from "../../src/admin/sampler.ts";
import { BackendStatsPoller } from "../../src/admin/poller.ts";
import { formatUptime } from "../../src/admin/tally.ts";
import { TcpStats } from "../../src/tcp/stats.ts";
import { clock, fakeSource, serve } from "./fixtures.ts";

describe("/stats document", () => {
  test("totals: the balancer's own error answers count as proxy errors, not also as 5xx/4xx", () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:1" }]);
    for (let i = 0; i < 8; i++) serve(src, "a", 200, 1);
    serve(src, "a", 500, 1);
    serve(src, "a", 404, 1);
    // What the handler records for a 503 "no backend" and a 503 "queue timeout".
    src.traffic.proxyErrors.SY_NO_BACKEND++;
    src.traffic.record("GET", 503, 0.1);
    src.traffic.proxyErrors.SY_QUEUE_TIMEOUT++;
    src.traffic.record("POST", 503, 0.1);
    src.traffic.proxyErrors.SY_CLIENT_ABORTED++;
    const s = buildSnapshot(src, new Sampler(src), new BackendStatsPoller());
    expect(s.totals.requests).toBe(13);
    expect(s.totals.responses).toEqual({ "1xx": 0, "2xx": 8, "3xx": 0, "4xx": 1, "5xx": 3 });
    expect(s.totals.errors).toEqual({ "4xx": 1, "5xx": 1, proxy: 2, total: 4 });
    expect(s.totals.rps).toBeNull();
    expect(s.balancer.windowSeconds).toBe(0);
    expect(s.backends[0]).toMatchObject({ requests: 10, errors: { "4xx": 1, "5xx": 1, proxy: 0, total: 2 }, lastCheck: null });
    expect(s.backends[0]!.connections).toBeUndefined();
    expect(s.totals.tcp).toBeUndefined();
  });

  test("states, ejection and time since the last change", () => {
    const src = fakeSource([
      { name: "a", url: "http://127.0.0.1:1" },
      { name: "b", url: "http://127.0.0.1:2" },
      { name: "c", url: "http://127.0.0.1:3", disabled: true },
    ]);
    const now = Date.now();
    src.pool.get("b")!.eject(30_000, "passive: 5 consecutive failures", now - 1000);
    const s = buildSnapshot(src, new Sampler(src), new BackendStatsPoller(), now);
    expect(s.backends.map((b) => b.state)).toEqual(["up", "ejected", "draining"]);
    expect(s.balancer.backends).toMatchObject({ total: 3, available: 1, up: 1, ejected: 1, draining: 1 });
    const b = s.backends[1]!;
    expect(b.lastChange.reason).toBe("passive: 5 consecutive failures");
    expect(b.lastChange.agoSeconds).toBe(1);
    expect(b.ejectedUntil).toBe(new Date(now + 29_000).toISOString());
    expect(b.ejections).toBe(1);
  });

  test("windowed figures come from the sampler", () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:1" }]);
    const c = clock();
    const sampler = new Sampler(src, { now: c.now });
    sampler.sample();
    c.advance(2000);
    for (let i = 0; i < 10; i++) serve(src, "a", i === 0 ? 502 : 200, 3);
    sampler.sample();
    const s = buildSnapshot(src, sampler, new BackendStatsPoller());
    expect(s.balancer.windowSeconds).toBe(2);
    expect(s.totals.rps).toBe(5);
    expect(s.totals.errorRate).toEqual({ "4xx": 0, "5xx": 0.1, proxy: 0 });
    expect(s.backends[0]!.rps).toBe(5);
    expect(s.backends[0]!.latencyMs!.p50).toBeGreaterThan(2);
  });

  test("TCP mode: connections, bytes and the listener's counters", () => {
    const src = fakeSource([{ name: "t", url: "http://127.0.0.1:1" }], "tcp");
    src.tcpStats = Object.assign(new TcpStats(), { accepted: 5, open: 1, rejected: 1, bytesIn: 10, bytesOut: 20 });
    const t = src.pool.get("t")!;
    t.acquire();
    t.stats.countBytes(10, 20);
    t.stats.countConnected(0.5);
    const s = buildSnapshot(src, new Sampler(src), new BackendStatsPoller());
    expect(s.totals).toMatchObject({ requests: 5, inFlight: 1, bytesIn: 10, bytesOut: 20, connections: 1 });
    expect(s.totals.errors.proxy).toBe(1);
    expect(s.totals.tcp).toMatchObject({ accepted: 5, open: 1 });
    expect(s.totals.latencyMsAllTime!.p50).toBeGreaterThan(0);
    expect(s.backends[0]).toMatchObject({ requests: 1, connections: 1, bytesIn: 10, bytesOut: 20 });
  });

  test("HTTP mode: the pool's retry budget, its refusals and its config (false when off, null when unknown)", () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:1" }]);
    src.pool.retryBudget.admit({ percent: 0, minRetriesPerSecond: 0 }, performance.now());
    expect(buildSnapshot(src, new Sampler(src), new BackendStatsPoller()).totals.retryBudget).toEqual({ exhausted: 1, budget: null });
    const budget = { percent: 20, minRetriesPerSecond: 3 };
    const withConfig = { ...src, config: { ...src.config, retry: { budget } } };
    const s = buildSnapshot(withConfig, new Sampler(withConfig), new BackendStatsPoller());
    expect(s.totals.retryBudget).toEqual({ exhausted: 1, budget });
    expect(s.totals.retryBudget!.budget).not.toBe(budget); // a copy: the document is plain data
    const off = { ...src, config: { ...src.config, retry: { budget: false as const } } };
    expect(buildSnapshot(off, new Sampler(off), new BackendStatsPoller()).totals.retryBudget).toEqual({ exhausted: 1, budget: false });
    const tcp = fakeSource([{ name: "t", url: "http://127.0.0.1:1" }], "tcp");
    expect(buildSnapshot(tcp, new Sampler(tcp), new BackendStatsPoller()).totals.retryBudget).toBeUndefined();
  });

  test("uptime reads like the sim's, with days past 24 hours", () => {
    expect(formatUptime(0)).toBe("00h:00m:00s");
    expect(formatUptime(3723)).toBe("01h:02m:03s");
    expect(formatUptime(90061)).toBe("1d 01h:01m:01s");
  });
});
