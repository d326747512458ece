/**
 * The admin API end to end: a real balancer with its admin listener in front of sim backends,
 * driven over HTTP as an operator (or a hostile page) would.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { sseConnect } from "./helpers.ts";

const TOKEN = "api-test-token-0123456789";

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

async function start(count = 3, config: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<{ rig: TestRig; admin: string }> {
  rig = await startRig(count, { admin: { host: "127.0.0.1", port: 0, token: TOKEN }, log: { access: false }, ...config }, undefined, { env });
  return { rig, admin: rig.balancer.adminUrl! };
}

function call(admin: string, method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  return fetch(`${admin}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
}

async function json(res: Response): Promise<any> {
  return res.json();
}

describe("admin API", () => {
  test("reads are open; changes need the bearer token; without a configured token they are refused with how to enable them", async () => {
    const { admin } = await start(2);
    let res = await call(admin, "GET", "/api/backends", { token: null });
    expect(res.status).toBe(200);
    expect((await json(res)).backends.map((b: { name: string; state: string }) => `${b.name}:${b.state}`)).toEqual(["backend-1:up", "backend-2:up"]);

    res = await call(admin, "POST", "/api/backends/backend-1/drain", { token: null });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="switchyard admin"');
    expect((await json(res)).error).toBe("SY_UNAUTHORIZED");
    res = await call(admin, "POST", "/api/backends/backend-1/drain", { token: "wrong-token-0123456789" });
    expect(res.status).toBe(401);
    expect(rig!.balancer.pool.get("backend-1")!.isEnabled).toBe(true);
    await rig!.stop();

    const { admin: readOnly } = await start(1, { admin: { host: "127.0.0.1", port: 0 } });
    res = await call(readOnly, "POST", "/api/backends/backend-1/drain");
    expect(res.status).toBe(403);
    const body = await json(res);
    expect(body.error).toBe("SY_API_READ_ONLY");
    expect(body.message).toContain("admin.token");
    expect(body.message).toContain("SWITCHYARD_ADMIN_TOKEN");
    expect(rig!.logLines).toContain("info admin API: read-only (set admin.token, admin.tokenFile or SWITCHYARD_ADMIN_TOKEN to allow changes)");
  });

  test("on a non-loopback address the start-up log warns that reads are open", async () => {
    await start(1, { admin: { host: "0.0.0.0", port: 0, token: TOKEN } });
    expect(rig!.logLines).toContain(
      "warn admin listener on 0.0.0.0 is not a loopback address: anyone who can reach it can read /stats, /metrics, /events and GET /api; changes through /api need the token",
    );
  });

  test("a browser request from another origin is refused, token or not; the admin's own origin is served", async () => {
    const { admin } = await start(1);
    const host = new URL(admin).host;
    let res = await call(admin, "POST", "/api/backends/backend-1/drain", { headers: { origin: "http://evil.example" } });
    expect(res.status).toBe(403);
    expect((await json(res)).error).toBe("SY_BAD_ORIGIN");
    res = await call(admin, "GET", "/api/backends", { token: null, headers: { origin: "null" } });
    expect(res.status).toBe(403);
    expect(rig!.balancer.pool.get("backend-1")!.isEnabled).toBe(true);
    res = await call(admin, "POST", "/api/backends/backend-1/drain", { headers: { origin: `http://${host}` } });
    expect(res.status).toBe(200);
  });

  test("drain reports in-flight work, and when it reaches 0; enable brings traffic back; each change logged once and sent on /events", async () => {
    const { rig: r, admin } = await start(2);
    const b1 = r.balancer.pool.get("backend-1")!;
    const events = await sseConnect(`${admin}/events`);
    try {
      expect((await events.next()).event).toBe("hello");
      // One slow request on each backend, so that backend-1 has one in flight.
      const slow = [fetch(`${r.balancer.url}/delay/400`), fetch(`${r.balancer.url}/delay/400`)];
      await waitFor(() => b1.inFlight === 1, "a request in flight on backend-1");
      let res = await call(admin, "POST", "/api/backends/backend-1/drain");
      expect(res.status).toBe(200);
      expect(await json(res)).toMatchObject({ name: "backend-1", state: "draining", enabled: false, inFlight: 1, drained: false });
      let e = await events.next();
      while (e.event !== "change") e = await events.next();
      expect(JSON.parse(e.data)).toMatchObject({ what: "drain backend-1", by: "admin.token", from: "127.0.0.1", ok: true, detail: ["1 in flight"] });
      // New requests go elsewhere while the slow one finishes.
      for (let i = 0; i < 6; i++) expect(await (await fetch(`${r.balancer.url}/`)).text()).toBe("backend-2\n");
      for (const s of await Promise.all(slow)) expect(s.status).toBe(200);
      e = await events.next();
      while (e.event !== "change") e = await events.next();
      expect(JSON.parse(e.data)).toMatchObject({ what: "drain backend-1 complete", detail: ["0 in flight"] });
      expect(r.logLines.filter((l) => l.includes("drain backend-1 (by admin.token from 127.0.0.1)")).length).toBe(1);

      // With ?wait, the answer comes once in-flight work has ended.
      const slow2 = fetch(`${r.balancer.url}/delay/300`);
      const b2 = r.balancer.pool.get("backend-2")!;
      await waitFor(() => b2.inFlight === 1, "a request in flight on backend-2");
      res = await call(admin, "POST", "/api/backends/backend-2/drain?wait=5s");
      expect(await json(res)).toMatchObject({ name: "backend-2", drained: true, inFlight: 0 });
      expect((await slow2).status).toBe(200);

      res = await call(admin, "POST", "/api/backends/backend-1/enable");
      expect(await json(res)).toMatchObject({ name: "backend-1", state: "up", enabled: true });
      expect(await (await fetch(`${r.balancer.url}/`)).text()).toBe("backend-1\n");
    } finally {
      await events.close();
    }
  });

  test("weight, add and remove validate like the config file, change the config version, and last until a reload", async () => {
    const { rig: r, admin } = await start(3);
    let res = await call(admin, "PUT", "/api/backends/backend-2/weight", { body: { weight: 0 } });
    expect(res.status).toBe(400);
    expect((await json(res)).problems).toEqual(["weight: got 0, expected a weight of at least 1"]);
    res = await call(admin, "PUT", "/api/backends/backend-2/weight", { body: { weight: 5 } });
    expect(await json(res)).toMatchObject({ name: "backend-2", weight: 5 });
    expect(r.balancer.pool.get("backend-2")!.weight).toBe(5);

    res = await call(admin, "POST", "/api/backends", { body: { name: "extra", url: "not a url" } });
    expect(res.status).toBe(400);
    expect((await json(res)).problems[0]).toMatch(/^url: got "not a url", expected/);
    res = await call(admin, "POST", "/api/backends", { body: { url: r.cluster.backends[0]!.url } });
    expect(res.status).toBe(400);
    res = await call(admin, "POST", "/api/backends", { body: { name: "backend-1", url: r.cluster.backends[0]!.url } });
    expect(res.status).toBe(409);
    res = await call(admin, "POST", "/api/backends", { body: { name: "extra", url: r.cluster.backends[0]!.url, weight: 2 } });
    expect(res.status).toBe(201);
    expect(await json(res)).toMatchObject({ name: "extra", weight: 2, state: "up" });

    res = await call(admin, "GET", "/api/config", { token: null });
    const cfg = await json(res);
    expect(cfg.status).toMatchObject({ version: 3, source: "api", file: null });
    expect(cfg.config.pools.default.backends.map((b: { name: string }) => b.name)).toEqual(["backend-1", "backend-2", "backend-3", "extra"]);
    expect(cfg.config.admin.token).toBe("(set)");
    expect(JSON.stringify(cfg)).not.toContain(TOKEN);

    // Removal drains first: a request in flight finishes, then the backend goes.
    const extra = r.balancer.pool.get("extra")!;
    for (const name of ["backend-1", "backend-2", "backend-3"]) await call(admin, "POST", `/api/backends/${name}/drain`);
    const slow = fetch(`${r.balancer.url}/delay/300`);
    await waitFor(() => extra.inFlight === 1, "a request in flight on extra");
    res = await call(admin, "DELETE", "/api/backends/extra");
    expect(await json(res)).toMatchObject({ name: "extra", inFlightAtRemoval: 0, deadlineReached: false });
    expect((await slow).status).toBe(200);
    expect(r.balancer.pool.get("extra")).toBeUndefined();
    expect(r.balancer.health.probes(extra)).toBe(false);

    // A deadline cuts the wait short; the request in flight still finishes on its own.
    for (const name of ["backend-1", "backend-2"]) await call(admin, "POST", `/api/backends/${name}/enable`);
    await call(admin, "POST", "/api/backends/backend-1/drain");
    const b2 = r.balancer.pool.get("backend-2")!;
    const slower = fetch(`${r.balancer.url}/delay/800`);
    await waitFor(() => b2.inFlight === 1, "a request in flight on backend-2");
    res = await call(admin, "DELETE", "/api/backends/backend-2?deadline=100ms");
    expect(await json(res)).toMatchObject({ name: "backend-2", inFlightAtRemoval: 1, deadlineReached: true });
    expect((await slower).status).toBe(200);

    res = await call(admin, "DELETE", "/api/backends/nope");
    expect(res.status).toBe(404);
    expect((await json(res)).message).toBe('no backend named "nope" (backends: backend-1, backend-3)');
    res = await call(admin, "DELETE", "/api/backends/backend-1?deadline=forever");
    expect(res.status).toBe(400);

    // Started without a config file: nothing to reload.
    res = await call(admin, "POST", "/api/reload");
    expect(res.status).toBe(409);
    expect((await json(res)).error).toBe("SY_NO_CONFIG_FILE");
  });

  test("the last backend cannot be removed", async () => {
    const { admin } = await start(1);
    const res = await call(admin, "DELETE", "/api/backends/backend-1");
    expect(res.status).toBe(409);
    expect((await json(res)).error).toBe("SY_LAST_BACKEND");
  });

  test("force down and up for maintenance, apart from health checks; auto hands back to them", async () => {
    const { rig: r, admin } = await start(2, { healthCheck: { path: "/health", interval: "100ms", timeout: "500ms", rise: 1, fall: 1 } });
    const b1 = r.balancer.pool.get("backend-1")!;
    let res = await call(admin, "POST", "/api/backends/backend-1/health", { body: { health: "down" } });
    expect(await json(res)).toMatchObject({ name: "backend-1", state: "down", forced: "down", healthy: true });
    for (let i = 0; i < 4; i++) expect(await (await fetch(`${r.balancer.url}/`)).text()).toBe("backend-2\n");

    // Forced up stays up while its checks fail.
    r.cluster.backends[0]!.setHealth("down");
    await waitFor(() => !b1.isHealthy, "backend-1's checks to fail");
    res = await call(admin, "POST", "/api/backends/backend-1/health", { body: { health: "up" } });
    expect(await json(res)).toMatchObject({ state: "up", forced: "up", healthy: false });
    expect(b1.available()).toBe(true);
    res = await call(admin, "POST", "/api/backends/backend-1/health", { body: { health: "auto" } });
    expect(await json(res)).toMatchObject({ state: "down", forced: null });
    res = await call(admin, "POST", "/api/backends/backend-1/health", { body: { health: "maybe" } });
    expect(res.status).toBe(400);

    const stats = await json(await fetch(`${admin}/stats`));
    expect(stats.config).toMatchObject({ version: 1, source: "start", lastReload: null, restartNeeded: [] });
    expect(stats.changes.map((c: { what: string }) => c.what)).toEqual(["force backend-1 down", "force backend-1 up", "force backend-1 auto"]);
    expect(stats.backends[0].forced).toBeNull();
  });
});
