/**
 * The admin views of a TCP listener that routes by TLS server name: its pool and SNI route in
 * /api/pools, /api/routes and /stats (a route counted by connections, not per route), the
 * balancer's totals as connections, and the clients it closed before dialling, by reason, in
 * /metrics.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import tls from "node:tls";
import type { TCPSocketListener } from "bun";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import type { StatsDocument } from "../../src/admin/snapshot.ts";
import type { PoolReport, RouteReport } from "../../src/admin/api.ts";
import { waitFor } from "../helpers/wait.ts";
import { parseExposition, sampleOf } from "./helpers.ts";

let echo: TCPSocketListener<undefined>;
let lb: Balancer;
let port: number;

beforeAll(async () => {
  echo = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s, chunk) => void s.write(chunk) } });
  lb = await startBalancer(
    validateConfig({
      admin: { host: "127.0.0.1", port: 0 }, healthCheck: false, log: { access: false },
      listeners: [{ name: "edge", mode: "tcp", host: "127.0.0.1", port: 0 }],
      pools: { a: { backends: [{ name: "a1", url: `tcp://127.0.0.1:${echo.port}` }] } },
      routes: [{ name: "sni-a", match: { sni: "a.example.com" }, pool: "a" }],
    }),
    { env: {}, logger: memoryLogger() },
  );
  port = Number(new URL(lb.url).port);
});

afterAll(async () => {
  await lb?.stop(false);
  echo?.stop(true);
});

/** Resolves when the proxy closes the connection. */
function closedAfter(send: (done: () => void) => void): Promise<void> {
  return new Promise((resolve) => send(resolve));
}

describe("a TCP listener routing by SNI, as the admin port shows it", () => {
  test("refusals by reason in /metrics; the SNI route and its pool in /api and /stats", async () => {
    // Not a TLS handshake: closed at once.
    await closedAfter((done) => {
      void Bun.connect({ hostname: "127.0.0.1", port, socket: { open: (s) => void s.write("GET / HTTP/1.1\r\n\r\n"), data() {}, close: done, error: done } });
    });
    // A ClientHello for a name no route takes, and no listener pool to fall back on.
    await closedAfter((done) => {
      const s = tls.connect({ host: "127.0.0.1", port, servername: "nobody.example.com", rejectUnauthorized: false });
      s.once("error", () => {});
      s.once("close", done);
    });
    await waitFor(() => lb.tcpStats!.sniNotTls === 1 && lb.tcpStats!.sniNoRoute === 1, "both refusals counted");

    const m = parseExposition(await (await fetch(`${lb.adminUrl}/metrics`)).text());
    expect(sampleOf(m, "switchyard_tcp_closed_unserved_total", { reason: "not_tls" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_tcp_closed_unserved_total", { reason: "no_route" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_tcp_closed_unserved_total", { reason: "sni_timeout" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_tcp_closed_unserved_total", { reason: "sni_invalid" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_backend_connections_total", { pool: "a", backend: "a1" }).value).toBe(0);
    // An SNI route is counted by connections, not per route: no route series.
    expect(m.has("switchyard_route_requests_total")).toBe(false);

    const s = (await (await fetch(`${lb.adminUrl}/stats`)).json()) as StatsDocument;
    expect(s.balancer.mode).toBe("tcp");
    expect(s.totals.requests).toBe(2);
    expect(s.totals.tcp).toMatchObject({ accepted: 2, sniNotTls: 1, sniNoRoute: 1 });
    expect(s.routes).toEqual([expect.objectContaining({ name: "sni-a", match: "sni a.example.com", action: "pool", pools: ["a"], listeners: ["edge"], sni: true, traffic: null })]);
    expect(s.pools).toEqual([expect.objectContaining({ name: "a", mode: "tcp", routes: ["sni-a"], members: ["a1"] })]);
    expect(s.pools[0]!.retryBudget).toBeUndefined();

    const { pools } = (await (await fetch(`${lb.adminUrl}/api/pools`)).json()) as { pools: PoolReport[] };
    expect(pools.map((p) => [p.name, p.mode, p.backends.map((b) => b.name)])).toEqual([["a", "tcp", ["a1"]]]);
    const { routes } = (await (await fetch(`${lb.adminUrl}/api/routes`)).json()) as { routes: RouteReport[] };
    expect(routes.map((r) => [r.name, r.sni, r.traffic])).toEqual([["sni-a", true, null]]);
    // The SNI route's pool takes traffic: ready while it has a backend.
    expect((await fetch(`${lb.adminUrl}/readyz`)).status).toBe(200);
  });
});
