/**
 * The operator's view of many pools and routes, end to end: a balancer with three pools (two
 * of which have a backend named "b1", and one backend whose name has a "/" in it) and three
 * routes in front of real sim backends (helpers.ts startPoolsStack), read and changed through
 * /api/pools, /api/routes, the pool/backend names of the API, /stats, /metrics and /readyz
 * (`switchyard ctl` on the same stack: test/commands/ctl.test.ts). Runs on the engine
 * SWITCHYARD_TEST_ENGINE names.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import type { Balancer } from "../../src/balancer.ts";
import type { StatsDocument } from "../../src/admin/snapshot.ts";
import type { PoolReport, RouteReport } from "../../src/admin/api.ts";
import type { SimCluster } from "../../sim/cluster.ts";
import { waitFor } from "../helpers/wait.ts";
import { parseExposition, POOLS_TOKEN, sampleOf, startPoolsStack, type PoolsStack } from "./helpers.ts";

const TOKEN = POOLS_TOKEN;

let stack: PoolsStack;
let api: SimCluster;
let web: SimCluster;
let lb: Balancer;
let admin: string;
let proxy: string;

beforeAll(async () => {
  stack = await startPoolsStack();
  ({ lb, api, web, adminUrl: admin } = stack);
  proxy = lb.url;
});

afterAll(async () => {
  await stack?.stop();
});

function call(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(`${admin}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function json<T = any>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

const stats = async (): Promise<StatsDocument> => json<StatsDocument>(await fetch(`${admin}/stats`));

async function send(path: string, host: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await (await fetch(`${proxy}${path}`, { headers: { host } })).arrayBuffer();
}

describe("many pools and routes: the admin API", () => {
  test("GET /api/pools: each pool with its strategy, panic mode, retry budget, users and backends' states", async () => {
    const res = await fetch(`${admin}/api/pools`);
    expect(res.status).toBe(200);
    const { pools } = await json<{ pools: PoolReport[] }>(res);
    expect(pools.map((p) => p.name)).toEqual(["api", "web", "shadow"]);
    const [a, w, s] = pools as [PoolReport, PoolReport, PoolReport];
    expect(a).toMatchObject({ mode: "http", strategy: "round-robin", routes: ["api"], listeners: [], panic: { active: false, threshold: 50 } });
    expect(a.retryBudget).toMatchObject({ exhausted: 0 });
    expect(a.states).toMatchObject({ total: 2, available: 2, up: 2 });
    expect(a.backends.map((b) => `${b.pool}/${b.name}:${b.state}`)).toEqual(["api/b1:up", "api/b2:up"]);
    // The top-level strategy is every pool's default.
    expect(w.strategy).toBe("least-connections");
    expect(w.backends.map((b) => b.name)).toEqual(["b1", "edge/1"]);
    expect(w.routes).toEqual(["site"]);
    // A mirror's pool takes no route's traffic: no route forwards to it, one copies to it.
    expect(s).toMatchObject({ routes: [], mirroredBy: ["site"], states: { total: 1, available: 0, down: 1 }, panic: { active: true } });

    const one = await fetch(`${admin}/api/pools/web`);
    expect((await json<PoolReport>(one)).backends.map((b) => b.url)).toEqual([`${web.backends[0]!.url}/`, `${web.backends[1]!.url}/`]);
    const none = await fetch(`${admin}/api/pools/nope`);
    expect(none.status).toBe(404);
    expect(await json(none)).toMatchObject({ error: "SY_UNKNOWN_POOL", message: 'no pool named "nope" (pools: api, web, shadow)' });
    // Every backend of every pool, each with its pool.
    const all = await json<{ backends: { pool: string; name: string }[] }>(await fetch(`${admin}/api/backends`));
    expect(all.backends.map((b) => `${b.pool}/${b.name}`)).toEqual(["api/b1", "api/b2", "web/b1", "web/edge/1", "shadow/s1"]);
  });

  test("GET /api/routes: in order, each with its match, action, pools, listeners and figures", async () => {
    await send("/v1/", "api.example.com", 4);
    await send("/v1/status/404", "api.example.com", 1);
    await send("/maint", "www.example.com", 2);
    const res = await fetch(`${admin}/api/routes`);
    const { routes } = await json<{ routes: RouteReport[] }>(res);
    expect(routes.map((r) => r.name)).toEqual(["api", "maint", "site"]);
    const [a, m, s] = routes as [RouteReport, RouteReport, RouteReport];
    expect(a).toMatchObject({ match: "host api.example.com · path /v1", action: "pool", pools: ["api"], listeners: ["main"], mirror: null, sni: false });
    expect(a.traffic).toMatchObject({ requests: 5, responses: { "2xx": 4, "4xx": 1, "5xx": 0 } });
    expect(a.traffic!.latencyMsAllTime!.p50).toBeGreaterThan(0);
    expect(m).toMatchObject({ match: "pathExact /maint", action: "respond", pools: [], target: "503" });
    expect(m.traffic).toMatchObject({ requests: 2, responses: { "5xx": 2 } });
    expect(s).toMatchObject({ match: "every request", action: "pool", pools: ["web"], mirror: { pool: "shadow", percent: 100 } });

    const one = await json<RouteReport>(await fetch(`${admin}/api/routes/maint`));
    expect(one.name).toBe("maint");
    const none = await fetch(`${admin}/api/routes/nope`);
    expect(none.status).toBe(404);
    expect((await json(none)).error).toBe("SY_UNKNOWN_ROUTE");
  });

  test("drain and enable name a backend as pool/backend, encoded as one segment or under its pool; a bare name shared by two pools is refused", async () => {
    const apiB1 = lb.pools.get("api")!.pool.get("b1")!;
    const webB1 = lb.pools.get("web")!.pool.get("b1")!;

    let res = await call("POST", "/api/backends/b1/drain");
    expect(res.status).toBe(404);
    const body = await json(res);
    expect(body.error).toBe("SY_UNKNOWN_BACKEND");
    expect(body.message).toContain('name it as pool/backend, e.g. "api/b1"');
    expect(apiB1.isEnabled && webB1.isEnabled).toBe(true);

    res = await call("POST", `/api/backends/${encodeURIComponent("api/b1")}/drain`);
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ pool: "api", name: "b1", state: "draining" });
    expect(apiB1.isEnabled).toBe(false);
    expect(webB1.isEnabled).toBe(true);
    // Traffic to the api route now goes to b2 alone.
    const before = lb.pools.get("api")!.pool.get("b2")!.stats.requests;
    const b1Before = apiB1.stats.requests;
    await send("/v1/", "api.example.com", 4);
    expect(apiB1.stats.requests).toBe(b1Before);
    expect(lb.pools.get("api")!.pool.get("b2")!.stats.requests).toBe(before + 4);

    res = await call("POST", "/api/pools/api/backends/b1/enable");
    expect(await json(res)).toMatchObject({ pool: "api", name: "b1", state: "up" });
    expect(apiB1.isEnabled).toBe(true);

    // A name with "/" in it: encoded in either form.
    const edge = lb.pools.get("web")!.pool.get("edge/1")!;
    res = await call("POST", `/api/pools/web/backends/${encodeURIComponent("edge/1")}/drain`);
    expect(await json(res)).toMatchObject({ pool: "web", name: "edge/1", state: "draining" });
    expect(edge.isEnabled).toBe(false);
    res = await call("POST", `/api/backends/${encodeURIComponent("web/edge/1")}/enable`);
    expect(res.status).toBe(200);
    expect(edge.isEnabled).toBe(true);
    // Health and reads take the same names.
    res = await call("POST", `/api/pools/web/backends/b1/health`, { health: "down" });
    expect(await json(res)).toMatchObject({ pool: "web", name: "b1", forced: "down", state: "down" });
    expect(apiB1.forcedHealth).toBeUndefined();
    res = await call("POST", `/api/backends/${encodeURIComponent("web/b1")}/health`, { health: "auto" });
    expect((await json(res)).forced).toBeNull();
    expect((await json(await fetch(`${admin}/api/pools/web/backends/${encodeURIComponent("edge/1")}`))).name).toBe("edge/1");

    // A pool that does not exist, and a backend of another pool, under a pool's path.
    res = await call("POST", "/api/pools/nope/backends/b1/drain");
    expect(res.status).toBe(404);
    expect((await json(res)).error).toBe("SY_UNKNOWN_POOL");
    res = await call("POST", "/api/pools/web/backends/b2/drain");
    expect(res.status).toBe(404);
    expect(await json(res)).toMatchObject({ error: "SY_UNKNOWN_BACKEND", message: 'pool web has no backend named "b2" (its backends: b1, edge/1)' });
    expect(lb.pools.get("api")!.pool.get("b2")!.isEnabled).toBe(true);
  });

  test("weight and add name the pool; add without one is refused when there are several", async () => {
    let res = await call("PUT", "/api/pools/api/backends/b2/weight", { weight: 4 });
    expect(await json(res)).toMatchObject({ pool: "api", name: "b2", weight: 4 });
    expect(lb.config.pools.api!.backends.map((b) => b.weight ?? 1)).toEqual([1, 4]);
    expect(lb.pools.get("web")!.pool.get("b1")!.weight).toBe(1);
    res = await call("PUT", `/api/backends/${encodeURIComponent("api/b2")}/weight`, { weight: 1 });
    expect((await json(res)).weight).toBe(1);

    res = await call("POST", "/api/backends", { name: "b3", url: web.backends[2]!.url });
    expect(res.status).toBe(400);
    expect((await json(res)).message).toContain("pool: missing; expected the name of a pool (api, web, shadow)");
    res = await call("POST", "/api/pools/web/backends", { name: "b3", url: web.backends[2]!.url, pool: "api" });
    expect(res.status).toBe(400);
    res = await call("POST", "/api/pools/web/backends", { name: "b3", url: web.backends[2]!.url });
    expect(res.status).toBe(201);
    expect(await json(res)).toMatchObject({ pool: "web", name: "b3" });
    expect(lb.config.pools.web!.backends.map((b) => b.name)).toEqual(["b1", "edge/1", "b3"]);
    res = await call("DELETE", "/api/pools/web/backends/b3?deadline=1s");
    expect(await json(res)).toMatchObject({ name: "web/b3", deadlineReached: false });
    expect(lb.pools.get("web")!.pool.get("b3")).toBeUndefined();
    expect(lb.config.pools.web!.backends.map((b) => b.name)).toEqual(["b1", "edge/1"]);
  });
});

describe("many pools and routes: /stats, /metrics, /readyz", () => {
  test("/stats groups backends by pool and gives each route its requests, status classes and latency", async () => {
    // The sampler's readings make a window: with traffic in it, each route's rate and latency.
    await waitFor(async () => {
      await send("/v1/", "api.example.com", 1);
      await send("/", "www.example.com", 1);
      const s = await stats();
      return s.balancer.windowSeconds > 0 && [s.routes[0], s.routes[2]].every((r) => (r!.traffic!.rps ?? 0) > 0 && r!.traffic!.latencyMs != null);
    }, "a window with traffic on the api and site routes", 5000);
    const s = await stats();
    expect(s.backends.map((b) => `${b.pool}|${b.name}|${b.id}`)).toEqual([
      "api|b1|api/b1", "api|b2|api/b2", "web|b1|web/b1", "web|edge/1|web/edge/1", "shadow|s1|shadow/s1",
    ]);
    expect(s.pools.map((p) => [p.name, p.members])).toEqual([
      ["api", ["api/b1", "api/b2"]], ["web", ["web/b1", "web/edge/1"]], ["shadow", ["shadow/s1"]],
    ]);
    const [a, w, sh] = s.pools;
    expect(a).toMatchObject({ strategy: "round-robin", backends: { total: 2, available: 2 }, routes: ["api"] });
    expect(w!.backends).toMatchObject({ total: 2, available: 2 });
    expect(sh!.backends).toMatchObject({ total: 1, available: 0, down: 1 });
    // Each pool's requests are its backends' tries.
    for (const p of s.pools) expect(p.requests).toBe(s.backends.filter((b) => b.pool === p.name).reduce((n, b) => n + b.requests, 0));
    // The balancer-wide counts sum the pools.
    expect(s.balancer.backends).toMatchObject({ total: 5, available: 4, down: 1 });

    expect(s.routes.map((r) => r.name)).toEqual(["api", "maint", "site"]);
    const apiRoute = s.routes[0]!;
    expect(apiRoute.traffic!.requests).toBeGreaterThanOrEqual(10);
    expect(apiRoute.traffic!.latencyMs!.p50).toBeGreaterThan(0);
    expect(apiRoute.traffic!.responses["2xx"]).toBe(apiRoute.traffic!.requests - 1);
    expect(apiRoute.traffic!.responses["4xx"]).toBe(1);
    expect(apiRoute.traffic!.latencyMsAllTime!.p99).toBeGreaterThanOrEqual(apiRoute.traffic!.latencyMsAllTime!.p50);
    expect(s.routes[1]!.traffic).toMatchObject({ responses: { "5xx": 2 } });
    expect(s.routes[2]!.traffic!.requests).toBeGreaterThanOrEqual(1);
    // The routes' requests add up to the balancer's.
    expect(s.routes.reduce((n, r) => n + r.traffic!.requests, 0)).toBe(s.totals.requests);
  });

  test("/metrics: backend series carry pool, routes their own series; every label value is a configured name", async () => {
    const text = await (await fetch(`${admin}/metrics`)).text();
    const m = parseExposition(text);
    const s = await stats();
    for (const b of s.backends) {
      expect(sampleOf(m, "switchyard_backend_requests_total", { pool: b.pool, backend: b.name }).value).toBe(b.requests);
      expect(sampleOf(m, "switchyard_backend_up", { pool: b.pool, backend: b.name }).value).toBe(b.alive ? 1 : 0);
    }
    // "b1" is two series, one per pool.
    expect(m.get("switchyard_backend_requests_total")!.samples.filter((x) => x.labels.backend === "b1").map((x) => x.labels.pool)).toEqual(["api", "web"]);
    expect(sampleOf(m, "switchyard_backends_available", { pool: "shadow" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_backends_available", { pool: "api" }).value).toBe(2);
    expect(sampleOf(m, "switchyard_backends", { pool: "shadow", state: "down" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_panic", { pool: "web" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_retry_budget_exhausted_total", { pool: "api" }).value).toBe(0);
    for (const r of s.routes) {
      for (const cls of ["2xx", "4xx", "5xx"] as const) {
        expect(sampleOf(m, "switchyard_route_requests_total", { route: r.name, code_class: cls }).value).toBe(r.traffic!.responses[cls]);
      }
      // One timing per response sent.
      const answered = Object.values(r.traffic!.responses).reduce((n, c) => n + c, 0);
      expect(sampleOf(m, "switchyard_route_request_duration_seconds", { route: r.name }, "switchyard_route_request_duration_seconds_count").value).toBe(answered);
    }
    expect(sampleOf(m, "switchyard_route_request_duration_seconds", { route: "maint" }, "switchyard_route_request_duration_seconds_count").value).toBe(2);
    // Bounded: route labels are the config's routes, pool labels its pools, whatever the requests asked for.
    await send("/v1/../../etc", "evil.example.com", 1);
    await send("/%2e%2e/x?route=x", "api.example.com", 1);
    const after = parseExposition(await (await fetch(`${admin}/metrics`)).text());
    const routeLabels = new Set<string>();
    const poolLabels = new Set<string>();
    for (const f of after.values()) {
      for (const x of f.samples) {
        if (x.labels.route !== undefined) routeLabels.add(x.labels.route);
        if (x.labels.pool !== undefined) poolLabels.add(x.labels.pool);
      }
    }
    expect([...routeLabels].sort()).toEqual(["api", "maint", "site"]);
    expect([...poolLabels].sort()).toEqual(["api", "shadow", "web"]);
    // An independent parser reads the same families.
    const theirs = parsePrometheusTextFormat(text);
    expect(theirs.map((f) => f.name)).toEqual([...m.keys()]);
  });

  test("/readyz: ready while a pool that takes traffic has an available backend; ?pool= requires the pools named", async () => {
    const ready = async (q = "") => {
      const res = await fetch(`${admin}/readyz${q}`);
      return { status: res.status, body: await json(res) };
    };
    // The shadow pool (a mirror's only) is down and does not count.
    let r = await ready();
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      ready: true, available: 4, total: 4,
      pools: [{ name: "api", available: 2, total: 2 }, { name: "web", available: 2, total: 2 }],
      unavailable: [],
    });
    expect((await ready("?pool=shadow")).status).toBe(503);
    expect((await ready("?pool=api&pool=web")).status).toBe(200);
    r = await ready("?pool=nope");
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ error: "SY_UNKNOWN_POOL", pools: ["api", "web", "shadow"] });

    // The web pool down: the api route still serves, so the balancer stays ready.
    for (const b of web.backends) b.setHealth("down");
    try {
      await waitFor(async () => (await ready()).body.unavailable?.includes("web"), "the web pool to have no backend available", 3000);
      r = await ready();
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ ready: true, available: 2, total: 4, unavailable: ["web"] });
      expect((await ready("?pool=web")).status).toBe(503);
      // And every served pool down: 503.
      for (const b of api.backends) b.setHealth("down");
      await waitFor(async () => (await ready()).status === 503, "readyz to say 503", 3000);
      expect((await ready()).body).toMatchObject({ ready: false, available: 0, total: 4, unavailable: ["api", "web"] });
    } finally {
      for (const b of [...web.backends, ...api.backends]) b.setHealth("up");
    }
    await waitFor(async () => (await ready()).body.unavailable?.length === 0, "both pools back", 3000);
  });
});
