/**
 * Routes end to end, on both engines: pools chosen by host and path, rewrite and header rules
 * as the backend sees them, redirect and respond answered by the proxy, no route a 404, a 90/10
 * split, and a mirror whose pool is down while the client sees nothing of it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";
import { rawClient } from "../helpers/raw.ts";
import { waitFor } from "../helpers/wait.ts";

/** A port nothing listens on: taken and released. */
function closedPort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

for (const engine of ["socket", "fetch"] as const) {
  describe(`${engine} engine`, () => {
    let api: RecordingBackend;
    let web: RecordingBackend;
    let canary: RecordingBackend;
    let lb: Balancer;
    let base: string;

    beforeAll(async () => {
      [api, web, canary] = [startRecordingBackend(), startRecordingBackend(), startRecordingBackend()];
      lb = await startBalancer(
        validateConfig({
          engine, admin: false, healthCheck: false, log: { access: false },
          listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
          pools: {
            api: { backends: [{ url: api.url }] },
            web: { backends: [{ url: web.url }] },
            canary: { backends: [{ url: canary.url }] },
            shadow: { backends: [{ url: `http://127.0.0.1:${closedPort()}` }] },
          },
          routes: [
            { name: "api", match: { host: "api.example.com", path: "/v1" }, pool: "api", rewrite: { stripPrefix: "/v1" }, requestHeaders: { set: { "x-route": "{route}" } } },
            { name: "old", match: { path: "/old" }, redirect: { to: "https://example.com/new{query}", status: 308 } },
            { name: "maint", match: { pathExact: "/maint" }, respond: { status: 503, body: "down for maintenance", headers: { "retry-after": "60" } } },
            { name: "split", match: { host: "*.apps.example.com" }, split: [{ pool: "web", weight: 90 }, { pool: "canary", weight: 10 }] },
            { name: "beta", match: { headers: { "x-canary": "1" } }, pool: "canary", mirror: { pool: "shadow", percent: 100 } },
            { name: "site", match: { host: "www.example.com" }, pool: "web", responseHeaders: { set: { "x-served-by": "{route}" } } },
          ],
        }),
        { env: {}, logger: memoryLogger() },
      );
      base = lb.url;
    });

    afterAll(async () => {
      await lb?.stop(false);
      for (const b of [api, web, canary]) b?.stop();
    });

    const get = (path: string, headers: Record<string, string>) => fetch(base + path, { headers, redirect: "manual" });

    test("host and path choose the pool; the prefix is stripped and the route's header set", async () => {
      const before = api.requests.length;
      const r = await get("/v1/users?id=7", { host: "API.example.com:8443" });
      expect(r.status).toBe(200);
      await r.text();
      const seen = api.requests[before]!;
      expect(seen.url).toBe("/users?id=7");
      expect(seen.headers.find(([k]) => k.toLowerCase() === "x-route")?.[1]).toBe("api");
      // "/v1x" is not under "/v1": segment boundaries.
      const other = await get("/v1x", { host: "api.example.com" });
      expect(other.status).toBe(404);
      expect(((await other.json()) as { error: string }).error).toBe("SY_NO_ROUTE");
    });

    test("a request no route takes gets 404 SY_NO_ROUTE", async () => {
      const r = await get("/", { host: "nobody.example.org" });
      expect(r.status).toBe(404);
      expect(await r.json()).toMatchObject({ error: "SY_NO_ROUTE" });
    });

    test("redirect and respond are answered by the proxy", async () => {
      const r = await get("/old/x?a=1", { host: "x" });
      expect(r.status).toBe(308);
      expect(r.headers.get("location")).toBe("https://example.com/new?a=1");
      await r.text();
      const m = await get("/maint", { host: "x" });
      expect(m.status).toBe(503);
      expect(m.headers.get("retry-after")).toBe("60");
      expect(await m.text()).toBe("down for maintenance");
    });

    test("response header rules of a route reach the client", async () => {
      const r = await get("/", { host: "www.example.com" });
      expect(r.status).toBe(200);
      expect(r.headers.get("x-served-by")).toBe("site");
      await r.text();
    });

    test("a 90/10 split lands within 3 points over 2,000 requests", async () => {
      const [w0, c0] = [web.requests.length, canary.requests.length];
      const N = 2000;
      for (let i = 0; i < N; i += 50) {
        await Promise.all(Array.from({ length: 50 }, () => get("/", { host: "a.apps.example.com" }).then((r) => r.text())));
      }
      const toCanary = canary.requests.length - c0;
      expect(web.requests.length - w0 + toCanary).toBe(N);
      expect(Math.abs((toCanary / N) * 100 - 10)).toBeLessThanOrEqual(3);
    });

    test("a mirror whose pool is down changes nothing for the client", async () => {
      const before = canary.requests.length;
      for (let i = 0; i < 20; i++) {
        const r = await get("/beta", { host: "x", "x-canary": "1" });
        expect(r.status).toBe(200);
        await r.text();
      }
      expect(canary.requests.length - before).toBe(20);
    });
  });
}

describe("a pool's own backend-side limits (socket engine)", () => {
  test("limits.upstreamKeepalive per pool: one pool reuses its connections, the other keeps none", async () => {
    const [kept, fresh] = [startRecordingBackend(), startRecordingBackend()];
    const lb = await startBalancer(
      validateConfig({
        engine: "socket", admin: false, healthCheck: false, log: { access: false },
        listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
        limits: { upstreamKeepalive: 8 },
        pools: {
          kept: { backends: [{ url: kept.url }] },
          fresh: { backends: [{ url: fresh.url }], limits: { upstreamKeepalive: 0 }, timeouts: { connect: "2s" } },
        },
        routes: [
          { name: "fresh", match: { path: "/fresh" }, pool: "fresh" },
          { name: "kept", pool: "kept" },
        ],
      }),
      { env: {}, logger: memoryLogger() },
    );
    try {
      expect(lb.config.pools.fresh!).toMatchObject({ limits: { upstreamKeepalive: 0 }, timeouts: { connect: 2000, upstreamIdle: 4000 } });
      expect(lb.config.pools.kept!.limits.upstreamKeepalive).toBe(8);
      for (let i = 0; i < 5; i++) {
        expect((await fetch(`${lb.url}/fresh`)).status).toBe(200);
        expect((await fetch(`${lb.url}/kept`)).status).toBe(200);
      }
      expect(fresh.requests.length).toBe(5);
      expect(fresh.connections()).toBe(5);
      expect(kept.requests.length).toBe(5);
      expect(kept.connections()).toBe(1);
    } finally {
      await lb.stop(false);
      kept.stop();
      fresh.stop();
    }
  });
});

describe("answers the proxy makes itself keep the connection (socket engine)", () => {
  test("a redirect, a fixed response and a 404 on one pipelined keep-alive connection, then a forwarded request", async () => {
    const web = startRecordingBackend();
    const lb = await startBalancer(
      validateConfig({
        engine: "socket", admin: false, healthCheck: false, log: { access: false },
        listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
        pools: { web: { backends: [{ url: web.url }] } },
        routes: [
          { name: "old", match: { path: "/old" }, redirect: { to: "/new", status: 308 } },
          { name: "maint", match: { pathExact: "/maint" }, respond: { status: 503, body: "later" } },
          { name: "site", match: { host: "www.example.com" }, pool: "web" },
        ],
      }),
      { env: {}, logger: memoryLogger() },
    );
    try {
      const c = await rawClient(lb.port);
      c.send("GET /old HTTP/1.1\r\nHost: x\r\n\r\nHEAD /maint HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: nobody\r\n\r\nGET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n");
      await c.waitFor((t) => (t.match(/HTTP\/1\.1 /g) ?? []).length >= 4 && t.endsWith("ok 1"), "four answers");
      const text = c.text();
      const heads = [...text.matchAll(/HTTP\/1\.1 (\d{3}) ([^\r]*)/g)].map((m) => `${m[1]} ${m[2]}`);
      expect(heads).toEqual(["308 Permanent Redirect", "503 Service Unavailable", "404 Not Found", "200 OK"]);
      expect(text).not.toContain("connection: close");
      // HEAD: the fields GET would get, no body (RFC 9110 §9.3.2).
      expect(text).toContain("content-length: 5\r\n");
      expect(text).not.toContain("later");
      expect(c.closed).toBe(false);
      c.terminate();
    } finally {
      await lb.stop(false);
      web.stop();
    }
  });
});

describe("a mirror whose pool never answers", () => {
  for (const engine of ["socket", "fetch"] as const) {
    test(`${engine} engine: the client's answers do not wait, and copies in flight stay bounded`, async () => {
      const web = startRecordingBackend();
      // The shadow pool's backend takes connections and never answers: every copy waits.
      let open = 0;
      let most = 0;
      const shadow = Bun.listen({
        hostname: "127.0.0.1", port: 0,
        socket: {
          open() {
            most = Math.max(most, ++open);
          },
          data() {},
          close() {
            open--;
          },
        },
      });
      const lb = await startBalancer(
        validateConfig({
          engine, admin: false, healthCheck: false, log: { access: false }, retry: { timeout: "3s", perTryTimeout: "3s" },
          listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
          pools: { web: { backends: [{ url: web.url }] }, shadow: { backends: [{ url: `http://127.0.0.1:${shadow.port}` }] } },
          routes: [{ name: "main", pool: "web", mirror: { pool: "shadow" } }],
        }),
        { env: {}, logger: memoryLogger() },
      );
      try {
        for (let i = 0; i < 4; i++) {
          const batch = await Promise.all(Array.from({ length: 25 }, () => fetch(`${lb.url}/x`, { method: "POST", body: "copy me" })));
          for (const r of batch) {
            expect(r.status).toBe(200);
            await r.text();
          }
        }
        // Every answer is in while the copies still hang (they wait out their 3 s timeout):
        // no answer waited for its copy.
        expect(web.requests.length).toBe(100);
        await waitFor(() => most > 0, "copies to reach the shadow");
        expect(open).toBeGreaterThan(0);
        // At most 64 copies in flight per route (forward/mirror.ts); the rest were dropped.
        expect(most).toBeLessThanOrEqual(64);
      } finally {
        await lb.stop(false);
        web.stop();
        shadow.stop(true);
      }
    }, 30_000);
  }
});

describe("a connection answered by a route keeps its idle deadline (socket engine)", () => {
  test("a keep-alive client that asked a fixed-answer route and then says nothing is closed after timeouts.idle", async () => {
    const lb = await startBalancer(
      validateConfig({
        engine: "socket", admin: false, healthCheck: false, log: { access: false }, timeouts: { idle: "300ms" },
        listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
        pools: { web: { backends: [{ url: "http://127.0.0.1:1" }] } },
        routes: [{ name: "maint", match: { pathExact: "/maint" }, respond: { status: 503, body: "later" } }, { name: "web", pool: "web" }],
      }),
      { env: {}, logger: memoryLogger() },
    );
    try {
      for (const path of ["/maint", "/nothing-routes-this"]) {
        const c = await rawClient(lb.port);
        c.send(`GET ${path} HTTP/1.1\r\nHost: ${path === "/maint" ? "x" : "x"}\r\n\r\n`);
        await c.waitFor((t) => t.includes("\r\n\r\n"), "the answer");
        // Idle after its answer: closed by the idle timeout, not left open.
        await c.waitClosed(3000);
        expect(c.closed).toBe(true);
      }
    } finally {
      await lb.stop(false);
    }
  });
});

test("a GET with a body on a mirrored route: the copy goes without it, and the shadow's backend is not blamed (socket engine)", async () => {
  const [web, shadow] = [startRecordingBackend(), startRecordingBackend()];
  const lb = await startBalancer(
    validateConfig({
      engine: "socket", admin: false, healthCheck: false, log: { access: false },
      listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
      pools: { web: { backends: [{ url: web.url }] }, shadow: { backends: [{ url: shadow.url }] } },
      routes: [{ name: "main", pool: "web", mirror: { pool: "shadow" } }],
    }),
    { env: {}, logger: memoryLogger() },
  );
  try {
    for (let i = 0; i < 12; i++) {
      const c = await rawClient(lb.port);
      c.send("GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
      await c.waitFor((t) => t.includes("ok"), "the answer");
      c.terminate();
    }
    await waitFor(() => shadow.requests.length === 12, "the 12 copies");
    expect(shadow.requests.every((r) => r.method === "GET" && r.body === "")).toBe(true);
    expect(lb.pools.get("shadow")!.pool.backends[0]!.state()).toBe("up");
  } finally {
    await lb.stop(false);
    web.stop();
    shadow.stop();
  }
});

test("a guard's refusal is answered at once, before the body, with no 100 Continue; then the connection closes (socket engine)", async () => {
  const web = startRecordingBackend();
  const lb = await startBalancer(
    validateConfig({
      engine: "socket", admin: false, healthCheck: false, log: { access: false },
      listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
      pools: { web: { backends: [{ url: web.url }] } },
      routes: [{ name: "private", match: { path: "/private" }, pool: "web", deny: ["0.0.0.0/0", "::/0"] }, { name: "web", pool: "web" }],
    }),
    { env: {}, logger: memoryLogger() },
  );
  try {
    const c = await rawClient(lb.port);
    c.send("POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
    await c.waitFor((t) => t.includes("\r\n\r\n"), "the refusal");
    expect(c.text()).toStartWith("HTTP/1.1 403 Forbidden\r\n");
    expect(c.text()).not.toContain("100 Continue");
    await c.waitClosed(3000);
    expect(web.requests.length).toBe(0);
  } finally {
    await lb.stop(false);
    web.stop();
  }
});
