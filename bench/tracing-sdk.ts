/**
 * The official OpenTelemetry JS SDK against tracing/ for what one request costs, in-process:
 * a server span and a client span with the same attributes, started, ended and exported as
 * OTLP/protobuf to a receiver that discards (encoding and the POSTs counted, as they run in
 * the proxy's process). Sampled and not sampled. Why tracing/ writes its own spans and
 * encoder (docs/observability.md): the figures this prints.
 *
 *   bun add --no-save @opentelemetry/api @opentelemetry/sdk-trace-base @opentelemetry/exporter-trace-otlp-proto
 *   bun bench/tracing-sdk.ts [--iterations 50000]
 *
 * Without those packages it measures tracing/ alone. CPU per request from process.cpuUsage().
 */
import { parseArgs } from "node:util";
import { FieldList } from "../src/http/fields.ts";
import { Tracing } from "../src/tracing/tracer.ts";
import { TracingCounts } from "../src/tracing/counts.ts";
import type { Backend } from "../src/pool/backend.ts";
import { spread } from "./harness.ts";

const { values } = parseArgs({ args: Bun.argv.slice(2), options: { iterations: { type: "string", default: "50000" } } });
const N = Number(values.iterations);
const receiver = Bun.serve({ hostname: "127.0.0.1", port: 0, async fetch(req) { await req.arrayBuffer(); return new Response(new Uint8Array(0)); } });
const endpoint = `http://127.0.0.1:${receiver.port}/v1/traces`;
const backend = { name: "b1", url: new URL("http://127.0.0.1:9001") } as unknown as Backend;

async function cpuOf(run: () => Promise<void>): Promise<number> {
  const t0 = process.cpuUsage();
  await run();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / N;
}

async function ours(ratio: number): Promise<number> {
  const tracing = new Tracing(new TracingCounts());
  const tracer = tracing.tracerFor({ tracing: { otlp: { endpoint, headers: {}, timeout: 10_000 }, sampleRatio: ratio, serviceName: "bench", queueSize: 4096, batchSize: 512, batchDelay: 5_000 } })!;
  const holder = { traceId: undefined as string | undefined };
  return cpuOf(async () => {
    for (let i = 0; i < N; i++) {
      const headers = new FieldList(["host", "example.com", "user-agent", "bench/1"]);
      const req = { method: "GET", target: "/items/1?x=1", headers, clientIp: "10.0.0.1", proto: "http" as const };
      const t = tracer.begin(req, "req-id", holder);
      if (t !== undefined) {
        t.tryStarted(backend, 1, "api", "default", "GET", "/items/1?x=1", headers);
        t.tryAnswered(200);
        t.end(200, 1, "api", "default", undefined);
      }
      // Let the exporter run as it would between requests.
      if ((i & 1023) === 0) await Bun.sleep(0);
    }
    await tracing.stop();
  });
}

async function sdk(ratio: number): Promise<number | undefined> {
  let api: any, base: any, proto: any;
  try {
    api = await import("@opentelemetry/api" as string);
    base = await import("@opentelemetry/sdk-trace-base" as string);
    proto = await import("@opentelemetry/exporter-trace-otlp-proto" as string);
  } catch {
    return undefined;
  }
  const exporter = new proto.OTLPTraceExporter({ url: endpoint });
  const provider = new base.BasicTracerProvider({
    sampler: new base.ParentBasedSampler({ root: new base.TraceIdRatioBasedSampler(ratio) }),
    spanProcessors: [new base.BatchSpanProcessor(exporter, { maxQueueSize: 4096, maxExportBatchSize: 512, scheduledDelayMillis: 5000 })],
  });
  const tracer = provider.getTracer("bench");
  return cpuOf(async () => {
    for (let i = 0; i < N; i++) {
      const server = tracer.startSpan("GET", { kind: api.SpanKind.SERVER, attributes: { "http.request.method": "GET", "url.path": "/items/1", "url.query": "x=1", "url.scheme": "http", "client.address": "10.0.0.1", "server.address": "example.com", "user_agent.original": "bench/1", "switchyard.request_id": "req-id" } });
      const ctx = api.trace.setSpan(api.ROOT_CONTEXT, server);
      const client = tracer.startSpan("GET", { kind: api.SpanKind.CLIENT, attributes: { "http.request.method": "GET", "server.address": "127.0.0.1", "server.port": 9001, "url.full": "http://127.0.0.1:9001/items/1?x=1", "switchyard.route": "api", "switchyard.pool": "default", "switchyard.backend": "b1", "switchyard.try": 1 } }, ctx);
      const carrier: Record<string, string> = {};
      const sc = client.spanContext();
      carrier.traceparent = `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & 1}`;
      client.setAttribute("http.response.status_code", 200);
      client.end();
      server.setAttributes({ "http.response.status_code": 200, "switchyard.tries": 1, "switchyard.route": "api", "switchyard.pool": "default" });
      server.end();
      if ((i & 1023) === 0) await Bun.sleep(0);
    }
    await provider.shutdown();
  });
}

const rows = new Map<string, number[]>();
for (let round = 0; round < 4; round++) {
  for (const [name, f] of [["tracing/ sampled", () => ours(1)], ["tracing/ not sampled", () => ours(0)], ["OTel SDK sampled", () => sdk(1)], ["OTel SDK not sampled", () => sdk(0)]] as const) {
    const us = await f();
    if (us !== undefined && round > 0) (rows.get(name) ?? rows.set(name, []).get(name)!).push(us);
  }
}
console.log(`CPU µs per request (${N.toLocaleString("en")} requests, median (min-max) of 3 rounds after a warm-up):`);
for (const [name, xs] of rows) console.log(`  ${name.padEnd(22)} ${spread(xs, 2)}`);
await receiver.stop(true);
