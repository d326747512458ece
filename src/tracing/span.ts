/**
 * The spans of one recorded request: a SERVER span for the request as the client sees it and a
 * CLIENT span per try, children of it, so that a retry shows as two children (OpenTelemetry
 * HTTP semantic conventions, "HTTP spans"). Only a sampled request makes any of this; the
 * forwarding loop calls these hooks, and a finished span goes to the SpanSink (exporter.ts).
 *
 * Attributes beside the semantic conventions' own (docs/observability.md):
 * `switchyard.route`, `switchyard.pool`, `switchyard.backend`, `switchyard.try` (1 for the
 * first try), `switchyard.tries` (on the server span), `switchyard.request_id`.
 */
import type { Backend } from "../pool/backend.ts";
import type { HeaderFields } from "../http/fields.ts";
import { formatTraceparent, newSpanId } from "./context.ts";

/** OTLP's Span.SpanKind (opentelemetry/proto/trace/v1/trace.proto). */
export const enum SpanKind {
  Server = 2,
  Client = 3,
}

/** The wall clock in ms with sub-ms precision (performance.now() on the epoch). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** One finished or running span, as the encoder (otlp.ts) reads it. */
export class SpanRecord {
  endMs = 0;
  /** Status ERROR (5xx, a proxy error); else UNSET, as the conventions ask of a server span. */
  error = false;
  /** Attributes as key, value pairs: a string is sent as string_value, a number as int_value. */
  readonly attrs: (string | number)[] = [];

  constructor(
    readonly traceId: string,
    readonly spanId: string,
    readonly parentId: string | undefined,
    readonly traceState: string | undefined,
    readonly name: string,
    readonly kind: SpanKind,
    readonly startMs: number,
  ) {}
}

/** Where finished spans go: the exporter's bounded queue. Never blocks. */
export interface SpanSink {
  add(span: SpanRecord): void;
}

/** What the request is, for the server span (the loop's ForwardRequest, read-only). */
export interface TracedRequest {
  readonly method: string;
  readonly target: string;
  readonly headers: HeaderFields;
  readonly clientIp: string;
  readonly proto: "http" | "https";
}

/** "example.com" of "example.com:8080", "[::1]" of "[::1]:80". */
function hostOnly(host: string): string {
  const colon = host.lastIndexOf(":");
  return colon > 0 && host.indexOf("]", colon) < 0 ? host.slice(0, colon) : host;
}

/** One sampled request's spans, from its start to its log line. */
export class RequestTrace {
  readonly server: SpanRecord;
  private client: SpanRecord | undefined = undefined;

  constructor(
    private readonly sink: SpanSink,
    readonly traceId: string,
    parentId: string | undefined,
    /** As received, passed on unchanged (W3C Trace Context §3.3: a vendor that adds no entry of its own). */
    private readonly traceState: string | undefined,
    req: TracedRequest,
    requestId: string,
  ) {
    const method = req.method;
    const server = (this.server = new SpanRecord(traceId, newSpanId(), parentId, traceState, method, SpanKind.Server, nowMs()));
    const target = req.target;
    const q = target.indexOf("?");
    const a = server.attrs;
    a.push("http.request.method", method, "url.path", q < 0 ? target : target.slice(0, q), "url.scheme", req.proto, "client.address", req.clientIp, "switchyard.request_id", requestId);
    if (q >= 0) a.push("url.query", target.slice(q + 1));
    const host = req.headers.get("host");
    if (host !== null) a.push("server.address", hostOnly(host));
    const ua = req.headers.get("user-agent");
    if (ua !== null) a.push("user_agent.original", ua);
  }

  /**
   * A try starts: its CLIENT span, and the `traceparent` the backend gets names it as the
   * parent (W3C Trace Context §3.2: the parent-id is the caller's span), with tracestate as received.
   */
  tryStarted(backend: Backend, tryNumber: number, route: string, pool: string, method: string, upstreamTarget: string, headers: HeaderFields): void {
    this.endClient();
    const c = (this.client = new SpanRecord(this.traceId, newSpanId(), this.server.spanId, this.traceState, method, SpanKind.Client, nowMs()));
    const url = backend.url;
    c.attrs.push(
      "http.request.method", method, "server.address", url.hostname, "server.port", Number(url.port) || (url.protocol === "https:" ? 443 : 80),
      "url.full", url.origin + upstreamTarget, "switchyard.route", route, "switchyard.pool", pool, "switchyard.backend", backend.name, "switchyard.try", tryNumber,
    );
    // The conventions' count of resends: absent on the first try.
    if (tryNumber > 1) c.attrs.push("http.request.resend_count", tryNumber - 1);
    headers.set("traceparent", formatTraceparent(this.traceId, c.spanId, true));
  }

  /** The try's response head arrived. */
  tryAnswered(status: number): void {
    const c = this.client;
    if (c === undefined) return;
    c.attrs.push("http.response.status_code", status);
    if (status >= 500) c.error = true;
  }

  /** The try ended without answering the client: a network failure, a timeout, a status retried, the client gone. */
  tryFailed(errorType: string): void {
    const c = this.client;
    if (c === undefined) return;
    c.attrs.push("error.type", errorType);
    c.error = true;
    this.endClient();
  }

  private endClient(): void {
    const c = this.client;
    if (c === undefined) return;
    this.client = undefined;
    c.endMs = nowMs();
    this.sink.add(c);
  }

  /** The request is over (its log line): end the last try's span and the server span. */
  end(status: number, tries: number, route: string | undefined, pool: string | undefined, error: string | undefined): void {
    this.endClient();
    const s = this.server;
    s.attrs.push("http.response.status_code", status, "switchyard.tries", tries);
    if (route !== undefined) s.attrs.push("switchyard.route", route);
    if (pool !== undefined) s.attrs.push("switchyard.pool", pool);
    // Server spans: only a 5xx is an error (the conventions leave 4xx UNSET); a body the backend cut short is one too.
    if (status >= 500 || error === "SY_UPSTREAM_TRUNCATED") {
      s.error = true;
      s.attrs.push("error.type", error ?? String(status));
    } else if (error !== undefined) s.attrs.push("error.type", error);
    s.endMs = nowMs();
    this.sink.add(s);
  }
}
