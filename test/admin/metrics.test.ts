import { describe, expect, test } from "bun:test";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { bucketPlan, EXPORTED_BOUNDS_SECONDS, escapeLabelValue, METRICS_CONTENT_TYPE, renderMetrics } from "../../src/admin/metrics.ts";
import { BackendStatsPoller } from "../../src/admin/poller.ts";
import { LATENCY_BOUNDS_MS } from "../../src/stats/histogram.ts";
import { TcpStats } from "../../src/tcp/stats.ts";
import { fakeSource, serve } from "./fixtures.ts";
import { parseExposition, sampleOf } from "./helpers.ts";

const WEIRD = 'we"ird\\name\nwith newline';

function source() {
  const src = fakeSource([
    { name: "a", url: "http://127.0.0.1:1" },
    { name: "b", url: "http://127.0.0.1:2", weight: 3 },
    { name: WEIRD, url: "http://127.0.0.1:3" },
  ]);
  for (let i = 0; i < 90; i++) serve(src, "a", 200, 4);
  for (let i = 0; i < 10; i++) serve(src, "a", 503, 40);
  for (let i = 0; i < 5; i++) serve(src, "b", 404, 0.3, "POST");
  serve(src, WEIRD, 200, 7000);
  src.pool.get("b")!.setHealthy(false, "test: probe failed");
  src.traffic.proxyErrors.SY_NO_BACKEND = 2;
  src.traffic.record("GET", 503, 0.05);
  src.traffic.record("GET", 503, 0.05);
  return src;
}

describe("/metrics exposition", () => {
  test("parses under the strict parser, with HELP and TYPE for every family", () => {
    const families = parseExposition(renderMetrics(source()));
    expect(families.size).toBeGreaterThan(15);
    for (const f of families.values()) {
      expect(f.help, f.name).toBeString();
      expect(f.type, f.name).not.toBe("untyped");
      expect(f.name.startsWith("switchyard_"), f.name).toBe(true);
      if (f.type === "counter") expect(f.name.endsWith("_total"), f.name).toBe(true);
    }
  });

  test("an independent parser (parse-prometheus-text-format) reads the same families and types", () => {
    const text = renderMetrics(source());
    const ours = parseExposition(text);
    const theirs = parsePrometheusTextFormat(text);
    expect(theirs.map((f) => f.name)).toEqual([...ours.keys()]);
    for (const f of theirs) expect(f.type.toLowerCase()).toBe(ours.get(f.name)!.type);
    const unlabelled = theirs.find((f) => f.name === "switchyard_request_duration_seconds")!;
    expect(unlabelled.metrics[0]!.count).toBe("108");
    expect(unlabelled.metrics[0]!.buckets!["+Inf"]).toBe("108");
  });

  test("request counters by method and status class; backend counters and gauges", () => {
    const m = parseExposition(renderMetrics(source()));
    expect(sampleOf(m, "switchyard_requests_total", { method: "GET", code_class: "2xx" }).value).toBe(91);
    expect(sampleOf(m, "switchyard_requests_total", { method: "GET", code_class: "5xx" }).value).toBe(12);
    expect(sampleOf(m, "switchyard_requests_total", { method: "POST", code_class: "4xx" }).value).toBe(5);
    expect(sampleOf(m, "switchyard_proxy_errors_total", { code: "SY_NO_BACKEND" }).value).toBe(2);
    expect(sampleOf(m, "switchyard_backend_requests_total", { backend: "a" }).value).toBe(100);
    expect(sampleOf(m, "switchyard_backend_responses_total", { backend: "a", method: "GET", code_class: "5xx" }).value).toBe(10);
    expect(sampleOf(m, "switchyard_backend_responses_total", { backend: "b", method: "POST", code_class: "4xx" }).value).toBe(5);
    expect(sampleOf(m, "switchyard_backend_responses_total", { backend: "b", method: "GET", code_class: "4xx" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_backend_up", { backend: "a" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_backend_up", { backend: "b" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_backend_state", { backend: "b", state: "down" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_backend_state", { backend: "b", state: "up" }).value).toBe(0);
    expect(sampleOf(m, "switchyard_backend_weight", { backend: "b" }).value).toBe(3);
    expect(sampleOf(m, "switchyard_backends", { state: "down" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_backends_available").value).toBe(2);
    expect(sampleOf(m, "switchyard_backend_in_flight", { backend: "a" }).value).toBe(0);
  });

  test("label values are escaped and read back exactly", () => {
    const text = renderMetrics(source());
    expect(text).toContain(`backend="${escapeLabelValue(WEIRD)}"`);
    expect(escapeLabelValue(WEIRD)).toBe('we\\"ird\\\\name\\nwith newline');
    const m = parseExposition(text);
    expect(sampleOf(m, "switchyard_backend_requests_total", { backend: WEIRD }).value).toBe(1);
  });

  test("latency histograms: cumulative buckets in seconds, +Inf equals _count, _sum in seconds", () => {
    const m = parseExposition(renderMetrics(source()));
    const fam = m.get("switchyard_backend_response_latency_seconds")!;
    const a = fam.samples.filter((s) => s.labels.backend === "a");
    const bucket = (le: string) => a.find((s) => s.name.endsWith("_bucket") && s.labels.le === le)!.value;
    expect(bucket("0.0025")).toBe(0);
    expect(bucket("0.005")).toBe(90); // 4 ms
    expect(bucket("0.025")).toBe(90);
    expect(bucket("0.05")).toBe(100); // 40 ms
    expect(bucket("+Inf")).toBe(100);
    expect(a.find((s) => s.name.endsWith("_count"))!.value).toBe(100);
    expect(a.find((s) => s.name.endsWith("_sum"))!.value).toBeCloseTo((90 * 4 + 10 * 40) / 1000, 9);
    const w = fam.samples.filter((s) => s.labels.backend === WEIRD && s.name.endsWith("_bucket"));
    expect(w.find((s) => s.labels.le === "5")!.value).toBe(0);
    expect(w.find((s) => s.labels.le === "10")!.value).toBe(1);
    // Every exported bound is one of the histogram's own, so the counts are exact.
    expect(bucketPlan(LATENCY_BOUNDS_MS).le).toEqual(EXPORTED_BOUNDS_SECONDS.map(String));
  });

  test("TCP figures appear in TCP mode, and per-backend bytes whenever any were counted", () => {
    const http = source();
    expect(renderMetrics(http)).not.toContain("switchyard_backend_bytes_total");
    http.pool.get("a")!.stats.countBytes(10, 0);
    expect(sampleOf(parseExposition(renderMetrics(http)), "switchyard_backend_bytes_total", { backend: "a", direction: "in" }).value).toBe(10);

    const tcp = fakeSource([{ name: "t1", url: "http://127.0.0.1:4" }], "tcp");
    tcp.tcpStats = Object.assign(new TcpStats(), { accepted: 7, open: 2, rejected: 1, bytesIn: 100, bytesOut: 2000 });
    tcp.pool.get("t1")!.acquire();
    const m = parseExposition(renderMetrics(tcp));
    expect(sampleOf(m, "switchyard_tcp_connections_total").value).toBe(7);
    expect(sampleOf(m, "switchyard_tcp_open_connections").value).toBe(2);
    expect(sampleOf(m, "switchyard_tcp_closed_unserved_total", { reason: "no_backend" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_tcp_bytes_total", { direction: "out" }).value).toBe(2000);
    expect(sampleOf(m, "switchyard_backend_connections_total", { backend: "t1" }).value).toBe(1);
    expect(sampleOf(m, "switchyard_backend_in_flight", { backend: "t1" }).value).toBe(1);
  });

  test("SNI routing's, the PROXY protocol's and the per-client bound's refusals are reasons of switchyard_tcp_closed_unserved_total", () => {
    const tcp = fakeSource([{ name: "t1", url: "http://127.0.0.1:4" }], "tcp");
    tcp.tcpStats = Object.assign(new TcpStats(), { rejected: 1, unreachable: 2, sniTimeouts: 3, sniInvalid: 4, sniNotTls: 5, sniNoRoute: 6, proxyRefused: 7, clientConnectionsRefused: 8 });
    const m = parseExposition(renderMetrics(tcp));
    const reasons = Object.fromEntries(m.get("switchyard_tcp_closed_unserved_total")!.samples.map((x) => [x.labels.reason, x.value]));
    expect(reasons).toEqual({ no_backend: 1, unreachable: 2, sni_timeout: 3, sni_invalid: 4, not_tls: 5, no_route: 6, proxy_protocol: 7, per_client: 8 });
  });

  test("the pool's retry budget: refusals counted beside the retries (HTTP mode only)", () => {
    const src = source();
    const none = { percent: 0, minRetriesPerSecond: 0 };
    src.traffic.retries = 4;
    for (let i = 0; i < 3; i++) src.pool.retryBudget.admit(none, performance.now());
    const m = parseExposition(renderMetrics(src));
    expect(m.get("switchyard_retry_budget_exhausted_total")!.type).toBe("counter");
    expect(sampleOf(m, "switchyard_retry_budget_exhausted_total").value).toBe(3);
    expect(sampleOf(m, "switchyard_retries_total").value).toBe(4);
    const tcp = fakeSource([{ name: "t1", url: "http://127.0.0.1:4" }], "tcp");
    expect(renderMetrics(tcp)).not.toContain("switchyard_retry_budget_exhausted_total");
  });

  test("backend-reported figures and poll counts come from the poller", async () => {
    const src = fakeSource([{ name: "s", url: "http://127.0.0.1:5", statsPath: "/stats" }]);
    const poller = new BackendStatsPoller({
      fetch: (async () => Response.json({ uptime: "00h:01m:05s", uptimeSeconds: 65, memoryUsage: 1234567 })) as unknown as typeof fetch,
    });
    await poller.pollAll(src.pool.backends);
    const m = parseExposition(renderMetrics(src, poller));
    expect(sampleOf(m, "switchyard_backend_reported_uptime_seconds", { backend: "s" }).value).toBe(65);
    expect(sampleOf(m, "switchyard_backend_reported_memory_bytes", { backend: "s" }).value).toBe(1234567);
    expect(sampleOf(m, "switchyard_backend_stats_polls_total", { result: "ok" }).value).toBe(1);
  });

  test("the strict parser rejects what the format forbids", () => {
    const bad = [
      "x_total 1", // no final line feed
      "# TYPE x counter\n# TYPE x counter\nx 1\n",
      "x 1\n# TYPE x counter\n",
      'x{a="1",a="2"} 1\n',
      'x{a="\\t"} 1\n',
      "x{a=1} 1\n",
      "x one\n",
      "x 1\ny 1\nx 2\n",
      "x 1\nx 2\n",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
    ];
    for (const text of bad) expect(() => parseExposition(text), JSON.stringify(text)).toThrow();
  });

  test("content type is the 0.0.4 text format", () => {
    expect(METRICS_CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8");
  });
});
