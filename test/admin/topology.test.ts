/**
 * The admin views over several pools, in memory: two pools with a backend of the same name are
 * two backends to the sampler, /stats and /metrics, named pool/backend; the route summaries
 * read the config's own words; /readyz's rule over the pools that take traffic.
 */
import { describe, expect, test } from "bun:test";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { TrafficStats } from "../../src/stats/traffic.ts";
import { Sampler } from "../../src/admin/sampler.ts";
import { BackendStatsPoller } from "../../src/admin/poller.ts";
import { buildSnapshot } from "../../src/admin/snapshot.ts";
import { renderMetrics } from "../../src/admin/metrics.ts";
import { readiness } from "../../src/admin/readiness.ts";
import { backendId, balancerMode, matchSummary, routeSummaries, servedPools } from "../../src/admin/topology.ts";
import { validateConfig } from "../../src/config/load.ts";
import { clock } from "./fixtures.ts";
import { parseExposition, sampleOf } from "./helpers.ts";

function pool(...names: string[]): LocalPool {
  return new LocalPool(createPolicy("round-robin"), names.map((name, i) => ({ name, url: `http://127.0.0.1:${i + 1}` })));
}

const config = validateConfig({
  listeners: [{ name: "main", port: 0 }, { name: "tls", port: 0, mode: "tcp", pool: "tcp" }],
  pools: {
    a: { backends: [{ url: "http://127.0.0.1:1" }] },
    b: { backends: [{ url: "http://127.0.0.1:2" }] },
    mirror: { backends: [{ url: "http://127.0.0.1:3" }] },
    idle: { backends: [{ url: "http://127.0.0.1:4" }] },
    tcp: { backends: [{ url: "tcp://127.0.0.1:5" }] },
  },
  routes: [
    { name: "one", match: { host: ["a.example.com", "*.b.example.com"], method: ["GET", "HEAD"], headers: { "x-a": "1", "x-b": true, "x-c": false, "x-d": { regex: "^v[0-9]$" } }, query: { q: "1", p: true }, clientIp: "10.0.0.0/8" }, pool: "a", mirror: { pool: "mirror", percent: 5 } },
    { name: "two", match: { pathRegex: "^/x/[0-9]+$" }, split: [{ pool: "a", weight: 90 }, { pool: "b", weight: 10 }] },
    { name: "three", redirect: { to: "https://example.com{path}", status: 308 } },
  ],
});

function source() {
  const pools = { all: [
    { name: "a", pool: pool("web-1", "web-2"), config: { mode: "http" as const, strategy: "round-robin" } },
    { name: "b", pool: pool("web-1"), config: { mode: "http" as const, strategy: "least-connections" } },
  ] };
  const one = new TrafficStats();
  return { config: { mode: "http" as const, strategy: "round-robin", routes: config.routes, listeners: config.listeners }, pools, traffic: new TrafficStats(), routes: new Map([["one", one], ["two", new TrafficStats()]]), startedAt: Date.now(), one };
}

describe("several pools in the admin views", () => {
  test("a name in two pools is two backends: ids pool/backend in the sampler's history, /stats and /metrics", () => {
    const src = source();
    const [a, b] = src.pools.all;
    const c = clock();
    const sampler = new Sampler(src, { now: c.now });
    sampler.sample();
    c.advance(1000);
    const aw1 = a!.pool.get("web-1")!;
    const bw1 = b!.pool.get("web-1")!;
    for (let i = 0; i < 4; i++) {
      aw1.stats.countRequest();
      aw1.stats.countResponse("GET", 200, 3);
    }
    bw1.stats.countRequest();
    bw1.stats.countResponse("GET", 500, 9);
    for (let i = 0; i < 3; i++) src.one.record("GET", 200, 3);
    const point = sampler.sample()!;
    expect(Object.keys(point.backends)).toEqual(["a/web-1", "a/web-2", "b/web-1"]);
    expect(point.backends["a/web-1"]!.rps).toBe(4);
    expect(point.backends["b/web-1"]!.e5).toBe(1);
    expect(Object.keys(sampler.history().backends)).toEqual(["a/web-1", "a/web-2", "b/web-1"]);
    expect(sampler.window()!.routes.get("one")!.rate).toBe(3);

    const doc = buildSnapshot(src, sampler, new BackendStatsPoller());
    expect(doc.backends.map((x) => [x.id, x.requests])).toEqual([["a/web-1", 4], ["a/web-2", 0], ["b/web-1", 1]]);
    expect(doc.pools.map((p) => [p.name, p.strategy, p.requests, p.members.length])).toEqual([["a", "round-robin", 4, 2], ["b", "least-connections", 1, 1]]);
    expect(doc.routes.map((r) => [r.name, r.traffic?.requests ?? null, r.traffic?.rps ?? null])).toEqual([["one", 3, 3], ["two", 0, 0], ["three", null, null]]);

    const m = parseExposition(renderMetrics(src));
    expect(sampleOf(m, "switchyard_backend_requests_total", { pool: "a", backend: "web-1" }).value).toBe(4);
    expect(sampleOf(m, "switchyard_backend_requests_total", { pool: "b", backend: "web-1" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_backend_responses_total", { pool: "b", backend: "web-1", method: "GET", code_class: "5xx" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_route_requests_total", { route: "one", code_class: "2xx" }).value).toBe(3);
    expect(sampleOf(m, "switchyard_route_request_duration_seconds", { route: "one" }, "switchyard_route_request_duration_seconds_count").value).toBe(3);
    // A route with no figures here (a redirect counted nowhere yet: not in the map) has no series.
    expect(m.get("switchyard_route_requests_total")!.samples.some((x) => x.labels.route === "three")).toBe(false);
  });

  test("the balancer's mode: tcp when every listener relays TCP (totals count connections), else http", () => {
    const tcpOnly = validateConfig({ listeners: [{ name: "t", port: 0, mode: "tcp", pool: "p" }], pools: { p: { backends: [{ url: "tcp://127.0.0.1:1" }] } } });
    expect(balancerMode(tcpOnly)).toBe("tcp");
    expect(balancerMode(config)).toBe("http");
    expect(balancerMode(validateConfig({ mode: "tcp", backends: [{ url: "tcp://127.0.0.1:1" }] }))).toBe("tcp");
  });

  test("backendId: bare with one pool, pool/backend with several (the pool default included)", () => {
    expect(backendId("default", "b1", 1)).toBe("b1");
    expect(backendId("default", "b1", 2)).toBe("default/b1");
    expect(backendId("api", "b1", 2)).toBe("api/b1");
    expect(backendId("api", "a/b", 2)).toBe("api/a/b");
  });

  test("route summaries: the match in the config's words, the action, the pools, the listeners", () => {
    const [one, two, three] = routeSummaries(config);
    expect(one).toMatchObject({
      match: "host a.example.com, *.b.example.com · method GET, HEAD · headers x-a=1, x-b, !x-c, x-d~^v[0-9]$ · query q=1, p · clientIp 10.0.0.0/8",
      action: "pool", pools: ["a"], mirror: { pool: "mirror", percent: 5 }, listeners: ["main"], sni: false,
    });
    expect(two).toMatchObject({ match: "pathRegex ^/x/[0-9]+$", action: "split", pools: ["a", "b"], split: [{ pool: "a", weight: 90 }, { pool: "b", weight: 10 }] });
    expect(three).toMatchObject({ match: "every request", action: "redirect", pools: [], target: "308 https://example.com{path}" });
    expect(matchSummary({ name: "x", match: { sni: ["a.example.com"] }, pool: "tcp" } as Parameters<typeof matchSummary>[0])).toBe("sni a.example.com");
  });

  test("the pools that take traffic: routes' and TCP listeners' own, not a mirror's or an unused one", () => {
    const all = Object.keys(config.pools).map((name) => ({ name, pool: pool("x"), config: { mode: "http" as const, strategy: "round-robin" } }));
    expect([...servedPools(config, all)].sort()).toEqual(["a", "b", "tcp"]);
  });

  test("readiness: any pool that takes traffic will do; ?pool= asks for each one named", () => {
    const a = pool("a1");
    const b = pool("b1");
    const src = { config: { mode: "http" as const, strategy: "round-robin", routes: config.routes.slice(0, 2), listeners: [config.listeners[0]!] }, pools: { all: [
      { name: "a", pool: a, config: { mode: "http" as const, strategy: "round-robin" } },
      { name: "b", pool: b, config: { mode: "http" as const, strategy: "round-robin" } },
      { name: "mirror", pool: pool("m1"), config: { mode: "http" as const, strategy: "round-robin" } },
    ] } };
    src.pools.all[2]!.pool.get("m1")!.setHealthy(false, "test");
    expect(readiness(src, [])).toEqual({ ok: true, report: { ready: true, available: 2, total: 2, pools: [{ name: "a", available: 1, total: 1 }, { name: "b", available: 1, total: 1 }], unavailable: [] } });
    a.get("a1")!.setHealthy(false, "test");
    expect(readiness(src, [])).toMatchObject({ report: { ready: true, available: 1, unavailable: ["a"] } });
    expect(readiness(src, ["a", "b"])).toMatchObject({ report: { ready: false, unavailable: ["a"] } });
    b.get("b1")!.setHealthy(false, "test");
    expect(readiness(src, [])).toMatchObject({ report: { ready: false, available: 0, total: 2 } });
    expect(readiness(src, ["nope"])).toEqual({ ok: false, unknown: ["nope"], known: ["a", "b", "mirror"] });
    // One pool: the document it always was.
    const single = { config: { mode: "http" as const, strategy: "round-robin" }, pool: pool("x") };
    expect(readiness(single, [])).toEqual({ ok: true, report: { ready: true, available: 1, total: 1 } });
  });
});
