/** The hand-written OTLP encoder (src/tracing/otlp.ts) read back with the official definitions. */
import { expect, test } from "bun:test";
import { encodeExport } from "../../src/tracing/otlp.ts";
import { SpanKind, SpanRecord } from "../../src/tracing/span.ts";
import { decodeExport } from "./collector.ts";

test("every field set comes back as written: long and non-ASCII strings, large ints, times to the microsecond", () => {
  const start = 1_765_000_000_123.456;
  const s = new SpanRecord("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a0b1c2d3e4f50617", "k=v", "GET", SpanKind.Client, start);
  s.endMs = start + 2.5;
  s.error = true;
  const long = "/" + "x".repeat(300);
  s.attrs.push("url.path", long, "user_agent.original", "naïve—agent ✓", "server.port", 8080, "big", 2 ** 40, "short", "");
  const spans = decodeExport(encodeExport({ serviceName: "svc", resource: [["service.instance.id", "h:1"]], scopeName: "switchyard", scopeVersion: "0.1.0" }, [s, s]));
  expect(spans.length).toBe(2);
  const d = spans[0]!;
  expect(d).toMatchObject({ traceId: s.traceId, spanId: s.spanId, parentSpanId: "a0b1c2d3e4f50617", traceState: "k=v", name: "GET", kind: 3, statusCode: 2, service: "svc", instance: "h:1" });
  expect(d.attributes).toEqual({ "url.path": long, "user_agent.original": "naïve—agent ✓", "server.port": 8080, big: 2 ** 40, short: "" });
  expect(d.start).toBe(1_765_000_000_123_456_000n);
  expect(d.end - d.start).toBe(2_500_000n);
});
