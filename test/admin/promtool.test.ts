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

  test("TCP mode: no problem found", async () => {
    rig = await startRig(1, (c) => ({ mode: "tcp", admin: { host: "127.0.0.1", port: 0 }, backends: c.backends.map((b) => ({ name: b.name, url: `tcp://127.0.0.1:${b.port}` })) }));
    const text = await metricsOf(rig);
    const lint = await check(text);
    expect(lint.out).toBe("");
    expect(lint.code).toBe(0);
  });
});
