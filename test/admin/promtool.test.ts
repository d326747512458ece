/**
 * /metrics of real balancers as Prometheus's own linter reads it: `promtool check metrics`
 * (Debian's prometheus package) on the exposition of an HTTP balancer with routes, pools,
 * guards' refusals and queueing, and of a TCP one. Also the series the exposition must carry:
 * switchyard_build_info, and switchyard_queued_requests_total counting requests that waited
 * for an upstream slot.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { requirePrograms } from "../helpers/system.ts";
import { parseExposition, sampleOf } from "./helpers.ts";
import { makePki } from "../helpers/pki.ts";
import { waitFor } from "../helpers/wait.ts";
import { AcmeStore } from "../../src/acme/store.ts";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";

const promtool = requirePrograms("the promtool checks of /metrics", { promtool: "prometheus" });

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

async function metricsOf(r: TestRig): Promise<string> {
  await r.balancer.refresh();
  const res = await fetch(`${r.balancer.adminUrl}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

async function check(text: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn([promtool.path("promtool"), "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

describe.skipIf(promtool.skip)("promtool check metrics", () => {
  test("HTTP: routes, pools, a rate limit's refusals, retries and queueing: no problem found", async () => {
    rig = await startRig(2, {
      engine: "fetch",
      admin: { host: "127.0.0.1", port: 0 },
      limits: { upstreamConcurrency: 1 },
      pools: {
        web: { backends: [{ name: "w1", url: "http://127.0.0.1:1" }] },
      },
      routes: [
        { name: "api", match: { path: "/api" }, pool: "default", rateLimit: { rate: "1/m", burst: 1, key: "route" } },
        { name: "slow", match: { path: "/delay" }, pool: "default" },
        { name: "web", match: { path: "/web" }, pool: "web" },
      ],
    });
    const url = rig.balancer.url;
    for (let i = 0; i < 3; i++) await (await fetch(`${url}/api/x`)).text();
    await (await fetch(`${url}/web/`)).text();
    // Four at once through one upstream slot: three wait in line.
    await Promise.all(Array.from({ length: 4 }, () => fetch(`${url}/delay/50`).then((r) => r.text())));
    const text = await metricsOf(rig);
    const lint = await check(text);
    expect(lint.out).toBe("");
    expect(lint.code).toBe(0);
    const m = parseExposition(text);
    const build = sampleOf(m, "switchyard_build_info", { version: (await import("../../package.json")).version, bun_version: Bun.version });
    expect(build.value).toBe(1);
    expect(sampleOf(m, "switchyard_queued_requests_total", {}).value).toBeGreaterThanOrEqual(1);
    expect(sampleOf(m, "switchyard_route_proxy_errors_total", { route: "api", code: "SY_RATE_LIMITED" }).value).toBe(2);
  });

  test("ACME: a stored certificate's expiry and renewal time, a placeholder, failed orders in a row; also in /stats", async () => {
    const pki = await makePki();
    const storage = mkdtempSync(join(tmpdir(), "switchyard-acme-metrics-"));
    let cleanupCa = () => {};
    try {
      // a.test has a certificate from "the CA" in the store; b.test has none, and its CA cannot be reached.
      const stored = await pki.issue("a", ["a.test"]);
      const store = new AcmeStore(storage);
      store.prepare();
      store.writeCert("a.test", readFileSync(stored.key, "utf8"), readFileSync(stored.cert, "utf8"));
      const notAfter = new X509Certificate(readFileSync(stored.cert)).validTo;
      // A "CA" that answers every request 404 at once (a refused connect is retried by acme-client for a minute).
      const caCert = await pki.issue("ca-server", ["IP:127.0.0.1"]);
      const ca = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: Bun.file(caCert.cert), key: Bun.file(caCert.key) }, fetch: () => new Response("no such directory", { status: 404 }) });
      cleanupCa = () => ca.stop(true);
      rig = await startRig(1, {
        admin: { host: "127.0.0.1", port: 0 },
        acme: { storage, directoryCa: pki.ca },
        listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: `https://127.0.0.1:${ca.port}/dir`, domains: ["a.test", "b.test"] } } },
      });
      await waitFor(() => rig!.balancer.acme.figures().find((a) => a.name === "b.test")!.failures >= 1, "b.test's order to fail", 20_000, 20);
      const text = await metricsOf(rig);
      const lint = await check(text);
      expect(lint.out).toBe("");
      expect(lint.code).toBe(0);
      const m = parseExposition(text);
      expect(sampleOf(m, "switchyard_acme_certificate_expiry_timestamp_seconds", { name: "a.test" }).value).toBe(Date.parse(notAfter) / 1000);
      expect(() => sampleOf(m, "switchyard_acme_certificate_expiry_timestamp_seconds", { name: "b.test" })).toThrow();
      const renewA = sampleOf(m, "switchyard_acme_renewal_timestamp_seconds", { name: "a.test" }).value;
      // A one-day certificate: due two thirds into it, so between now and its end.
      expect(renewA).toBeGreaterThan(Date.now() / 1000);
      expect(renewA).toBeLessThan(Date.parse(notAfter) / 1000);
      expect(sampleOf(m, "switchyard_acme_placeholder", { name: "a.test" }).value).toBe(0);
      expect(sampleOf(m, "switchyard_acme_placeholder", { name: "b.test" }).value).toBe(1);
      expect(sampleOf(m, "switchyard_acme_order_failures", { name: "a.test" }).value).toBe(0);
      expect(sampleOf(m, "switchyard_acme_order_failures", { name: "b.test" }).value).toBeGreaterThanOrEqual(1);
      expect(sampleOf(m, "switchyard_acme_certificates_issued_total", { name: "b.test" }).value).toBe(0);
      const stats = (await (await fetch(`${rig.balancer.adminUrl}/stats`)).json()) as { acme: { name: string; serving: string; notAfter: string | null; listener: string }[] };
      expect(stats.acme.map((a) => [a.name, a.serving, a.listener])).toEqual([["a.test", "issued", "listen.tls.acme"], ["b.test", "placeholder", "listen.tls.acme"]]);
      expect(stats.acme[0]!.notAfter).toBe(new Date(notAfter).toISOString());
      expect(stats.acme[1]!.notAfter).toBeNull();
    } finally {
      await rig?.stop();
      rig = undefined;
      cleanupCa();
      await pki.remove();
      rmSync(storage, { recursive: true, force: true });
    }
  });

  test("TCP mode: no problem found", async () => {
    rig = await startRig(1, (c) => ({ mode: "tcp", admin: { host: "127.0.0.1", port: 0 }, backends: c.backends.map((b) => ({ name: b.name, url: `tcp://127.0.0.1:${b.port}` })) }));
    const text = await metricsOf(rig);
    const lint = await check(text);
    expect(lint.out).toBe("");
    expect(lint.code).toBe(0);
  });
});
