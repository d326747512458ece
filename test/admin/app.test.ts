/** The admin port end to end: a real balancer in front of real sim backends, over HTTP. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createAdminApp } from "../../src/admin/app.ts";
import type { StatsDocument } from "../../src/admin/snapshot.ts";
import { startRig } from "../helpers/balancer.ts";
import { fakeSource, serve } from "./fixtures.ts";
import { parseExposition, sampleOf, sseConnect, startStack, traffic, type Stack } from "./helpers.ts";
import { waitFor } from "../helpers/wait.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack(3);
});
afterAll(async () => {
  await stack.stop();
});

const getStats = async (): Promise<StatsDocument> => (await fetch(`${stack.adminUrl}/stats`)).json() as Promise<StatsDocument>;

describe("admin port", () => {
  test("/healthz answers while the balancer runs; HEAD works too", async () => {
    const res = await fetch(`${stack.adminUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok" });
    const head = await fetch(`${stack.adminUrl}/healthz`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  test("/stats: every backend's figures, with the uptime and memory it reports itself", async () => {
    for (let i = 0; i < 30; i++) await (await fetch(`${stack.balancer.url}/`)).text();
    const res = await fetch(`${stack.adminUrl}/stats`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const s = (await res.json()) as StatsDocument;
    expect(s.balancer).toMatchObject({ mode: "http", strategy: "least-connections", backends: { total: 3, available: 3, up: 3 } });
    expect(s.totals.requests).toBeGreaterThanOrEqual(30);
    expect(s.totals.responses["2xx"]).toBeGreaterThanOrEqual(30);
    expect(s.backends.map((b) => b.name)).toEqual(["backend-1", "backend-2", "backend-3"]);
    let requests = 0;
    for (const [i, b] of s.backends.entries()) {
      expect(b.url).toBe(`${stack.cluster.backends[i]!.url}/`);
      expect(b).toMatchObject({ state: "up", alive: true, available: true, weight: 1, inFlight: 0 });
      expect(b.errors).toEqual({ "4xx": 0, "5xx": 0, proxy: 0, total: 0 });
      expect(b.latencyMsAllTime!.p50).toBeGreaterThan(0);
      expect(b.latencyMsAllTime!.p99).toBeGreaterThanOrEqual(b.latencyMsAllTime!.p50);
      expect(b.lastCheck).toMatchObject({ ok: true, detail: "status 200" });
      // Reported by the sim's own /stats, polled by the admin app.
      expect(b.uptime).toMatch(/^\d\dh:\d\dm:\d\ds$/);
      expect(b.uptimeSeconds).toBeGreaterThanOrEqual(0);
      expect(b.memoryUsage).toBeGreaterThan(1024 * 1024);
      expect(b.reportError).toBeNull();
      requests += b.requests;
    }
    expect(requests).toBe(s.totals.requests);
  });

  test("/stats: requests/s, error shares and percentiles over the recent window", async () => {
    const t = traffic(`${stack.balancer.url}/`);
    try {
      await waitFor(async () => {
        const s = await getStats();
        return s.balancer.windowSeconds >= 1 && (s.totals.rps ?? 0) > 0 && s.backends.every((b) => (b.rps ?? 0) > 0);
      }, "a rate over a window of at least a second", 4000);
      const s = await getStats();
      expect(s.totals.errorRate).toEqual({ "4xx": 0, "5xx": 0, proxy: 0 });
      expect(s.totals.latencyMs!.p95).toBeGreaterThan(0);
      for (const b of s.backends) expect(b.latencyMs!.p50).toBeGreaterThan(0);
    } finally {
      await t.stop();
    }
  });

  test("/metrics parses as the Prometheus text format and matches /stats", async () => {
    for (let i = 0; i < 9; i++) await (await fetch(`${stack.balancer.url}/status/404`)).text();
    const res = await fetch(`${stack.adminUrl}/metrics`);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const m = parseExposition(await res.text());
    const s = await getStats();
    for (const b of s.backends) {
      expect(sampleOf(m, "switchyard_backend_requests_total", { backend: b.name }).value).toBe(b.requests);
      expect(sampleOf(m, "switchyard_backend_up", { backend: b.name }).value).toBe(1);
      expect(sampleOf(m, "switchyard_backend_in_flight", { backend: b.name }).value).toBe(0);
      expect(sampleOf(m, "switchyard_backend_response_latency_seconds", { backend: b.name }, "switchyard_backend_response_latency_seconds_count").value).toBe(b.requests);
      expect(sampleOf(m, "switchyard_backend_reported_memory_bytes", { backend: b.name }).value).toBeGreaterThan(0);
    }
    expect(sampleOf(m, "switchyard_requests_total", { method: "GET", code_class: "4xx" }).value).toBe(9);
    expect(sampleOf(m, "switchyard_requests_total", { method: "GET", code_class: "2xx" }).value).toBe(s.totals.responses["2xx"]);
    expect(sampleOf(m, "switchyard_retries_total").value).toBe(0);
    expect(sampleOf(m, "switchyard_backend_ejections_total", { backend: "backend-1" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_backends_available").value).toBe(3);
  });

  test("/events: a real SSE stream; hello, then a tick every second with rising counters", async () => {
    const es = await sseConnect(`${stack.adminUrl}/events`);
    const t = traffic(`${stack.balancer.url}/`);
    try {
      expect(es.status).toBe(200);
      expect(es.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
      expect(es.headers.get("cache-control")).toContain("no-cache");
      const hello = await es.next();
      expect(hello.event).toBe("hello");
      expect(es.retry).toBe(1000);
      const h = JSON.parse(hello.data);
      expect(h.stats.backends).toHaveLength(3);
      expect(h.history.t).toBeArray();
      const started = performance.now();
      const first = await es.next(2500);
      const second = await es.next(2500);
      // Two ticks within about two seconds: at least one a second.
      expect(performance.now() - started).toBeLessThan(2600);
      expect([first.event, second.event]).toEqual(["tick", "tick"]);
      expect(Number(second.id)).toBe(Number(first.id) + 1);
      const a = JSON.parse(first.data);
      const b = JSON.parse(second.data);
      expect(b.stats.totals.requests).toBeGreaterThan(a.stats.totals.requests);
      expect(b.point.t - a.point.t).toBeGreaterThanOrEqual(900);
      expect(b.point.total.rps).toBeGreaterThan(0);
      expect(Object.keys(b.point.backends)).toEqual(["backend-1", "backend-2", "backend-3"]);
    } finally {
      await t.stop();
      await es.close();
    }
  });

  test("the dashboard page: embedded, self-contained, locked down by its CSP", async () => {
    const res = await fetch(`${stack.adminUrl}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await res.text();
    expect(html).toContain("<title>Switchyard</title>");
    expect(html).toContain('new EventSource("events")');
    // Nothing to fetch from anywhere else: no external src/href, no @import, no url(http...).
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*["']?https?:/i);
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
    const hash = new Bun.CryptoHasher("sha256").update(script).digest("base64");
    expect(csp).toContain(`script-src 'sha256-${hash}'`);
    expect(html.match(/<script/g)).toHaveLength(1);
  });

  test("unknown paths get a JSON 404 naming the endpoints", async () => {
    const res = await fetch(`${stack.adminUrl}/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { endpoints: string[] }).endpoints).toContain("/metrics");
  });

  test("never reachable through the proxy port: there the backends answer", async () => {
    const metrics = await fetch(`${stack.balancer.url}/metrics`);
    expect(metrics.status).toBe(404);
    expect(await metrics.text()).not.toContain("switchyard_");
    const stats = (await (await fetch(`${stack.balancer.url}/stats`)).json()) as Record<string, unknown>;
    expect(stats.name).toMatch(/^backend-\d$/);
    expect(stats.balancer).toBeUndefined();
    const events = await fetch(`${stack.balancer.url}/events`);
    expect(events.status).toBe(404);
    await events.text();
  });
});

describe("/readyz", () => {
  test("503 when no backend is available, 200 again when one comes back", async () => {
    const s = await startStack(2);
    try {
      const ready = async () => (await fetch(`${s.adminUrl}/readyz`)).status;
      expect(await ready()).toBe(200);
      expect(await (await fetch(`${s.adminUrl}/readyz`)).json()).toEqual({ ready: true, available: 2, total: 2 });
      s.cluster.backends[0]!.setHealth("down");
      await waitFor(async () => (await getStatsOf(s)).balancer.backends.down === 1, "one backend down", 3000);
      expect(await ready()).toBe(200);
      s.cluster.backends[1]!.setHealth("down");
      await waitFor(async () => (await ready()) === 503, "readyz to say 503", 3000);
      expect(await (await fetch(`${s.adminUrl}/readyz`)).json()).toEqual({ ready: false, available: 0, total: 2 });
      s.cluster.backends[1]!.setHealth("up");
      await waitFor(async () => (await ready()) === 200, "readyz to recover", 3000);
    } finally {
      await s.stop();
    }
  });
});

/**
 * TCP ports this process listens on (Linux): the LISTEN sockets of /proc/net/tcp and tcp6
 * whose inodes are among this process's open files. Exact, unlike probing a port that some
 * other program could take at any moment.
 */
function listeningPorts(): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const m = readlinkSync(`/proc/self/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.add(m[1]!);
    } catch {
      // The fd closed while listing.
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; st 0A is LISTEN; the inode is the tenth field.
      if (f[3] === "0A" && inodes.has(f[9]!)) ports.add(parseInt(f[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

async function getStatsOf(s: Stack): Promise<StatsDocument> {
  return (await fetch(`${s.adminUrl}/stats`)).json() as Promise<StatsDocument>;
}

describe("admin lifecycle", () => {
  test("admin: false opens no admin port: this process listens on the proxy port alone", async () => {
    const config = { listen: { host: "127.0.0.1", port: 0 }, log: { access: false }, healthCheck: false, backends: [{ url: "http://127.0.0.1:9" }] };
    // The control: with an admin port, two new listening ports, and the second one answers.
    const before = listeningPorts();
    const onRig = await startRig(0, { ...config, admin: { host: "127.0.0.1", port: 0 } });
    const on = onRig.balancer;
    try {
      const opened = [...listeningPorts()].filter((p) => !before.has(p)).sort();
      const adminPort = Number(new URL(on.adminUrl!).port);
      expect(opened).toEqual([on.port, adminPort].sort());
      expect((await fetch(`${on.adminUrl}/healthz`)).status).toBe(200);
    } finally {
      await onRig.stop();
    }
    const offRig = await startRig(0, { ...config, admin: false });
    const off = offRig.balancer;
    try {
      expect(off.adminUrl).toBeUndefined();
      expect([...listeningPorts()].filter((p) => !before.has(p))).toEqual([off.port]);
      // Nor does the proxy port answer for it: /healthz goes to the (refusing) backend.
      const res = await fetch(`${off.url}/healthz`);
      expect(res.status).toBe(502);
      expect(((await res.json()) as { error: string }).error).toBe("SY_UPSTREAM_FAILED");
    } finally {
      await offRig.stop();
    }
  });

  test("a client that goes away is unsubscribed; stop() ends streams, sampler and polls", async () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:9" }]);
    const admin = createAdminApp(src, { sampler: { intervalMs: 100, idleStopMs: 0 } });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req, srv) => admin.fetch(req, { server: srv }) });
    try {
      const url = `http://127.0.0.1:${server.port}/events`;
      const one = await sseConnect(url);
      const two = await sseConnect(url);
      expect((await one.next()).event).toBe("hello");
      expect((await two.next()).event).toBe("hello");
      expect(admin.events.size).toBe(2);
      expect(admin.sampler.running).toBe(true);
      serve(src, "a", 200, 1);
      expect((await one.next()).event).toBe("tick");
      await one.close();
      await waitFor(() => admin.events.size === 1, "the closed client to be unsubscribed", 2000);
      const head = await fetch(url, { method: "HEAD" });
      expect(head.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
      expect(admin.events.size).toBe(1);
      expect(admin.sampler.running).toBe(true);
      await admin.stop();
      expect(admin.events.size).toBe(0);
      expect(admin.sampler.running).toBe(false);
      // The stream ends on the server's side: the client sees it close.
      await expect(drain(two)).rejects.toThrow("the event stream ended");
    } finally {
      await admin.stop();
      await server.stop(true);
    }
  });

  test("with nobody watching, the sampler stops by itself", async () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:9" }]);
    const admin = createAdminApp(src, { sampler: { intervalMs: 50, idleStopMs: 0 } });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req, srv) => admin.fetch(req, { server: srv }) });
    try {
      expect(admin.sampler.running).toBe(false);
      await (await fetch(`http://127.0.0.1:${server.port}/stats`)).json();
      expect(admin.sampler.running).toBe(true);
      await waitFor(() => !admin.sampler.running, "the idle sampler to stop", 1000);
      const es = await sseConnect(`http://127.0.0.1:${server.port}/events`);
      expect(admin.sampler.running).toBe(true);
      await es.close();
      await waitFor(() => !admin.sampler.running, "the sampler to stop after the last client left", 1000);
    } finally {
      await admin.stop();
      await server.stop(true);
    }
  });
});

async function drain(es: Awaited<ReturnType<typeof sseConnect>>): Promise<never> {
  for (;;) await es.next(2000);
}
