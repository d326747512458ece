/**
 * The `tracing` options (docs/observability.md): where spans go and how many requests are
 * recorded. Apart from schema.ts, as the rate-limit options are, so that the tracing code and
 * its tests read the one definition.
 */
import * as v from "valibot";
import { doc, positiveDuration } from "../config/option-schemas.ts";

const positiveInt = (what: string) => v.pipe(v.number(`expected ${what}`), v.integer(`expected ${what}`), v.minValue(1, `expected ${what}`));

/** A share of requests, 0 to 1. */
export const sampleRatio = v.pipe(
  v.number("expected a ratio from 0 to 1"),
  v.minValue(0, "expected a ratio from 0 to 1"),
  v.maxValue(1, "expected a ratio from 0 to 1"),
);

const endpoint = v.pipe(
  v.string('expected the OTLP/HTTP traces URL, like "http://127.0.0.1:4318/v1/traces"'),
  v.check((u) => {
    if (!URL.canParse(u)) return false;
    const p = new URL(u).protocol;
    return p === "http:" || p === "https:";
  }, 'expected an http:// or https:// URL, like "http://127.0.0.1:4318/v1/traces"'),
  doc({ type: "URL" }),
);

/** RFC 9110 §5.1 token, §5.5 field value (no CR, LF, NUL). */
const headerName = v.pipe(v.string("expected a header field name"), v.regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, "expected a header field name (letters, digits and !#$%&'*+-.^_`|~)"));
const headerValue = v.pipe(v.string("expected a header value string"), v.regex(/^[\t\x20-\x7e\x80-\xff]*$/, "expected a header value without control characters (CR, LF, NUL)"));

export const TracingSchema = v.pipe(
  v.strictObject({
    otlp: v.pipe(
      v.strictObject({
        endpoint: v.pipe(endpoint, v.description("The collector's OTLP/HTTP traces URL, path included (the OTLP default is `http://HOST:4318/v1/traces`). Spans are POSTed there as protobuf (`application/x-protobuf`).")),
        headers: v.optional(
          v.pipe(v.record(headerName, headerValue, "expected an object of header names and values"), v.description("Fields sent with every export, e.g. an API token."), doc({ type: "object of header names and values" })),
          {},
        ),
        timeout: v.optional(v.pipe(positiveDuration, v.description("An export still unanswered after this long is given up; its spans count as failed.")), 10_000),
      }),
      v.description("Where spans are exported: OTLP over HTTP with protobuf."),
    ),
    sampleRatio: v.optional(
      v.pipe(sampleRatio, v.description("The share of new traces recorded, decided from the trace id (OpenTelemetry's TraceIdRatioBased). A request whose `traceparent` carries a decision keeps it (parent-based): sampled is always recorded, not sampled never.")),
      1,
    ),
    serviceName: v.optional(v.pipe(v.string("expected a service name"), v.nonEmpty("expected a service name"), v.description("The resource's `service.name` on every span.")), "switchyard"),
    queueSize: v.optional(
      v.pipe(positiveInt("a whole number of spans, at least 1"), v.description("Spans waiting for export, at most; past it new spans are dropped and counted (`switchyard_tracing_spans_dropped_total`): a slow or dead collector never holds up a request.")),
      2048,
    ),
    batchSize: v.optional(v.pipe(positiveInt("a whole number of spans, at least 1"), v.description("Spans in one export request, at most; a full batch is sent at once.")), 512),
    batchDelay: v.optional(v.pipe(positiveDuration, v.description("A span waits at most this long before its batch is sent, full or not.")), 5_000),
  }),
  v.check((t) => t.batchSize <= t.queueSize, "expected batchSize at most queueSize"),
  v.description("OpenTelemetry tracing (docs/observability.md): a server span per request and a client span per try, W3C `traceparent`/`tracestate` read and passed on, exported in batches to an OTLP/HTTP collector. Absent: no tracing, and `traceparent` passes through untouched."),
);

export type TracingConfig = v.InferOutput<typeof TracingSchema>;

/** A route's own share of traces (`routes[].tracing`): a busy or a critical route apart from the rest. */
export const RouteTracingSchema = v.pipe(
  v.strictObject({
    sampleRatio: v.pipe(sampleRatio, v.description("The share of this route's new traces recorded, in place of `tracing.sampleRatio`; a `traceparent` with a decision still decides (parent-based).")),
  }),
  v.description("This route's own tracing settings; needs the top-level `tracing` (where spans go)."),
);

/** A route's tracing settings without the top-level section that says where spans go. */
export function routeTracingProblems(config: { tracing?: unknown; routes?: readonly { tracing?: unknown }[] }): string[] {
  if (config.tracing !== undefined) return [];
  const problems: string[] = [];
  config.routes?.forEach((r, i) => {
    if (r.tracing !== undefined) problems.push(`routes[${i}].tracing: expected the top-level tracing section too (tracing.otlp says where spans go)`);
  });
  return problems;
}
