/**
 * OpenTelemetry tracing end to end (docs/observability.md, "Tracing"): a balancer in front of a
 * recording backend exports to a real OTLP/HTTP receiver (collector.ts), whose bodies are
 * decoded with the official OTLP definitions. Runs on the engine SWITCHYARD_TEST_ENGINE names.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";
import { waitFor } from "../helpers/wait.ts";
import { startCollector, type Collector, type DecodedSpan } from "./collector.ts";

let rig: TestRig | undefined;
let backend: RecordingBackend | undefined;
let collector: Collector | undefined;
afterEach(async () => {
  // A collector told to hang lets go first, so that the balancer's last flush is not held.
  collector?.release();
  await rig?.stop();
  rig = undefined;
  backend?.stop();
  backend = undefined;
  await collector?.stop();
  collector = undefined;
});

async function start(tracing: Record<string, unknown> = {}, more: Record<string, unknown> = {}, backends?: { name: string; url: string }[]): Promise<{ port: number; backend: RecordingBackend; collector: Collector }> {
  backend = startRecordingBackend();
  collector = startCollector();
  rig = await startRig(0, {
    backends: backends ?? [{ name: "rec", url: backend.url }],
    tracing: { batchDelay: 20, ...tracing, otlp: { endpoint: collector.url, headers: { "x-token": "sekret" }, ...(tracing.otlp as object | undefined) } },
    ...more,
  });
  return { port: rig.balancer.port, backend, collector };
}

const header = (b: RecordingBackend, i: number, name: string): string | undefined => b.requests[i]?.headers.find(([n]) => n.toLowerCase() === name)?.[1];
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

async function spansOf(c: Collector, n: number): Promise<DecodedSpan[]> {
  await waitFor(() => c.spans.length >= n, `${n} spans at the collector`, 10_000);
  return c.spans;
}

describe("tracing", () => {
  test("a new trace: a server span, a client span as its child, and the backend's traceparent names the client span", async () => {
    const { port, backend, collector } = await start();
    const res = await fetch(`http://127.0.0.1:${port}/items?x=1`, { headers: { "user-agent": "tester/1" } });
    expect(res.status).toBe(200);
    await res.text();
    const spans = await spansOf(collector, 2);
    const server = spans.find((s) => s.kind === 2)!;
    const client = spans.find((s) => s.kind === 3)!;
    expect(server.parentSpanId).toBe("");
    expect(client.traceId).toBe(server.traceId);
    expect(client.parentSpanId).toBe(server.spanId);
    expect(server.service).toBe("switchyard");
    expect(server.name).toBe("GET");
    expect(server.attributes).toMatchObject({
      "http.request.method": "GET", "url.path": "/items", "url.query": "x=1", "url.scheme": "http", "client.address": "127.0.0.1",
      "user_agent.original": "tester/1", "http.response.status_code": 200, "switchyard.tries": 1,
    });
    expect(client.attributes).toMatchObject({ "switchyard.backend": "rec", "switchyard.try": 1, "http.response.status_code": 200, "server.address": "127.0.0.1" });
    expect(server.statusCode).toBe(0);
    expect(client.start >= server.start && client.end <= server.end).toBe(true);
    const tp = TRACEPARENT.exec(header(backend, 0, "traceparent") ?? "");
    expect(tp?.[1]).toBe(server.traceId);
    expect(tp?.[2]).toBe(client.spanId);
    expect(tp?.[3]).toBe("01");
    // Exported as protobuf, with the configured headers.
    expect(collector.batches[0]!.contentType).toBe("application/x-protobuf");
    expect(collector.batches[0]!.headers.get("x-token")).toBe("sekret");
  });

  test("an incoming traceparent is honoured, and tracestate passes through unchanged", async () => {
    const { port, backend, collector } = await start({ sampleRatio: 0 });
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parent = "00f067aa0ba902b7";
    const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { traceparent: `00-${traceId}-${parent}-01`, tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" } });
    await res.text();
    const spans = await spansOf(collector, 2);
    const server = spans.find((s) => s.kind === 2)!;
    const client = spans.find((s) => s.kind === 3)!;
    expect(server.traceId).toBe(traceId);
    expect(server.parentSpanId).toBe(parent);
    expect(server.traceState).toBe("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    expect(header(backend, 0, "traceparent")).toBe(`00-${traceId}-${client.spanId}-01`);
    expect(header(backend, 0, "tracestate")).toBe("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  });

  test("a parent not sampled is never recorded, and its traceparent passes through unchanged", async () => {
    const { port, backend, collector } = await start({ sampleRatio: 1 });
    const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    for (let i = 0; i < 20; i++) await (await fetch(`http://127.0.0.1:${port}/`, { headers: { traceparent: tp, tracestate: "a=b" } })).text();
    // One sampled request after them: once its spans are in, nothing of the 20 came before it.
    await (await fetch(`http://127.0.0.1:${port}/`)).text();
    await spansOf(collector, 2);
    expect(collector.spans.every((s) => s.traceId !== "4bf92f3577b34da6a3ce929d0e0e4736")).toBe(true);
    for (let i = 0; i < 20; i++) {
      expect(header(backend, i, "traceparent")).toBe(tp);
      expect(header(backend, i, "tracestate")).toBe("a=b");
    }
  });

  test("a malformed traceparent is ignored: a new trace, and the old tracestate is not passed on", async () => {
    const { port, backend, collector } = await start();
    const bad = [
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version we do not take
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ];
    for (const tp of bad) await (await fetch(`http://127.0.0.1:${port}/`, { headers: { traceparent: tp, tracestate: "old=1" } })).text();
    const spans = await spansOf(collector, 2 * bad.length);
    for (let i = 0; i < bad.length; i++) {
      const sent = TRACEPARENT.exec(header(backend, i, "traceparent") ?? "");
      expect(sent).not.toBeNull();
      expect(sent![1]).not.toBe("4bf92f3577b34da6a3ce929d0e0e4736");
      expect(header(backend, i, "tracestate")).toBeUndefined();
    }
    expect(spans.filter((s) => s.kind === 2).every((s) => s.parentSpanId === "")).toBe(true);
  });

  test("a retry: the server span has two client children, the first failed", async () => {
    // A port with nothing listening: a refused connection, retried on the other backend.
    const dead = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const deadUrl = `http://127.0.0.1:${dead.port}`;
    dead.stop(true);
    const rec = startRecordingBackend();
    const { port, collector } = await start({}, {}, [{ name: "dead", url: deadUrl }, { name: "rec", url: rec.url }]);
    try {
      for (let i = 0; i < 3; i++) expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200);
      await waitFor(() => collector.spans.filter((s) => s.kind === 2).length >= 3, "3 server spans", 10_000);
      const servers = collector.spans.filter((s) => s.kind === 2);
      const retried = servers.filter((s) => s.attributes["switchyard.tries"] === 2);
      expect(retried.length).toBe(1);
      const server = retried[0]!;
      const children = collector.spans.filter((s) => s.kind === 3 && s.parentSpanId === server.spanId).sort((a, b) => a.attributes["switchyard.try"] as number - (b.attributes["switchyard.try"] as number));
      expect(children.length).toBe(2);
      expect(children.every((c) => c.traceId === server.traceId)).toBe(true);
      expect(children[0]!.attributes).toMatchObject({ "switchyard.backend": "dead", "switchyard.try": 1 });
      expect(children[0]!.statusCode).toBe(2);
      expect(String(children[0]!.attributes["error.type"])).toMatch(/^(refused|connect)$/);
      expect(children[1]!.attributes).toMatchObject({ "switchyard.backend": "rec", "switchyard.try": 2, "http.request.resend_count": 1, "http.response.status_code": 200 });
      expect(children[1]!.statusCode).toBe(0);
      expect(children[0]!.end <= children[1]!.start).toBe(true);
    } finally {
      rec.stop();
    }
  });

  test("a 5xx marks the server span and its try ERROR", async () => {
    const failing = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("no", { status: 500 }) });
    try {
      const { port, collector } = await start({}, {}, [{ name: "failing", url: `http://127.0.0.1:${failing.port}` }]);
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(500);
      const spans = await spansOf(collector, 2);
      const server = spans.find((s) => s.kind === 2)!;
      const client = spans.find((s) => s.kind === 3)!;
      expect(server.statusCode).toBe(2);
      expect(server.attributes["error.type"]).toBe("500");
      expect(client.statusCode).toBe(2);
      expect(client.attributes["http.response.status_code"]).toBe(500);
    } finally {
      await failing.stop(true);
    }
  });

  test("the sampling ratio: 0.25 of 2,000 new traces, within a binomial tolerance, decided alike at the backend", async () => {
    const { port, backend, collector } = await start({ sampleRatio: 0.25, batchSize: 512, queueSize: 4096 });
    const n = 2000;
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, async () => (await fetch(`http://127.0.0.1:${port}/`)).text()));
    const flags = backend.requests.map((r) => TRACEPARENT.exec(r.headers.find(([k]) => k.toLowerCase() === "traceparent")?.[1] ?? "")?.[3]);
    expect(flags.every((f) => f === "00" || f === "01")).toBe(true);
    const sampled = flags.filter((f) => f === "01").length;
    // p = 0.25, n = 2000: mean 500, sd 19.4; ±5 sd.
    expect(sampled).toBeGreaterThan(403);
    expect(sampled).toBeLessThan(597);
    await waitFor(() => collector.spans.filter((s) => s.kind === 2).length >= sampled, "every sampled request's server span", 20_000);
    expect(collector.spans.filter((s) => s.kind === 2).length).toBe(sampled);
  });

  test("a route's own sampleRatio replaces the top-level one for its requests", async () => {
    const { port, backend, collector } = await start({ sampleRatio: 0 }, {
      routes: [{ name: "traced", match: { path: "/traced" }, pool: "default", tracing: { sampleRatio: 1 } }, { name: "rest", match: { path: "/" }, pool: "default" }],
    });
    for (const path of ["/other", "/traced/a", "/other", "/traced/b"]) await (await fetch(`http://127.0.0.1:${port}${path}`)).text();
    await spansOf(collector, 4);
    const servers = collector.spans.filter((s) => s.kind === 2);
    expect(servers.map((s) => s.attributes["url.path"]).sort()).toEqual(["/traced/a", "/traced/b"]);
    expect(servers.every((s) => s.attributes["switchyard.route"] === "traced")).toBe(true);
    // The rest still pass a decision on: not sampled.
    expect(backend.requests.map((r) => TRACEPARENT.exec(header(backend, backend.requests.indexOf(r), "traceparent") ?? "")?.[3])).toEqual(["00", "01", "00", "01"]);
  });

  test("export batches hold at most batchSize spans", async () => {
    const { port, collector } = await start({ batchSize: 4, queueSize: 100, batchDelay: 5_000 });
    for (let i = 0; i < 10; i++) await (await fetch(`http://127.0.0.1:${port}/`)).text();
    // 20 spans: five full batches go at once, without waiting for batchDelay.
    await spansOf(collector, 20);
    expect(collector.batches.every((b) => b.spans <= 4)).toBe(true);
    expect(collector.batches.length).toBe(5);
    expect(rig!.balancer.traffic.tracing.exported).toBe(20);
  });

  test("a hanging collector: requests complete while it hangs, the queue fills and drops are counted", async () => {
    const { port, collector } = await start({ queueSize: 8, batchSize: 4, batchDelay: 5_000 }, { admin: { host: "127.0.0.1", port: 0 } });
    collector.hang();
    const traffic = rig!.balancer.traffic;
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(res.status).toBe(200);
      await res.text();
    }
    // 100 spans: one batch of 4 is held by the collector, 8 wait in the queue, the rest are dropped.
    expect(traffic.tracing.dropped).toBe(100 - 4 - 8);
    expect(traffic.tracing.exported).toBe(0);
    const admin = rig!.balancer.adminUrl!;
    expect(await (await fetch(`${admin}/metrics`)).text()).toContain(`switchyard_tracing_spans_dropped_total ${100 - 12}`);
    const stats = (await (await fetch(`${admin}/stats`)).json()) as { totals: { tracing?: { dropped: number } } };
    expect(stats.totals.tracing?.dropped).toBe(100 - 12);
  });

  test("a dead collector: requests are answered, failed exports counted", async () => {
    const { port, collector } = await start({ batchSize: 2, batchDelay: 10, otlp: { endpoint: "http://127.0.0.1:9/v1/traces", timeout: 1000 } });
    void collector;
    for (let i = 0; i < 10; i++) expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200);
    const traffic = rig!.balancer.traffic;
    await waitFor(() => traffic.tracing.failed + traffic.tracing.dropped === 20, "every span failed or dropped", 10_000);
    expect(traffic.tracing.exported).toBe(0);
    expect(traffic.tracing.exportFailures).toBeGreaterThan(0);
  });
});
