/**
 * The access log: one line per request, in the format and with the fields the config chooses,
 * for the requests `log.only` lets through, queued in memory and written off the event loop
 * (access-sink.ts), so that logging costs a string build and an array push per request, never
 * a syscall or a wait.
 */
import { ACCESS_FIELDS, needsOf, type AccessField, type AccessNeeds } from "./access-fields.ts";
import { formatterFor, formatJson, formatText, type AccessFormat } from "./access-format.ts";
import { parseOnly, type AccessFilter } from "./access-filter.ts";
import { AccessSink } from "./access-sink.ts";

export { formatJson, formatText };

export interface AccessEntry {
  time: number;
  client: string;
  method: string;
  path: string;
  status: number;
  /** Response body bytes sent to the client. */
  bytes: number;
  durationMs: number;
  /** Backends tried, in order; empty when none was available. */
  backends: string[];
  attempts: number;
  requestId: string;
  /** Stable error code when the balancer answered itself. */
  error?: string;
  /** The route that took the request and the pool it went to (names from the config). */
  route?: string;
  pool?: string;
  /** The W3C trace id of the request's trace, when tracing gives it one ("-" in text when absent). */
  traceId?: string;
  // Gathered only when a chosen field or format needs them (AccessLog.needs).
  /** Host, User-Agent and Referer as the client sent them. */
  host?: string;
  userAgent?: string;
  referer?: string;
  /** "HTTP/1.1", "HTTP/1.0", "HTTP/2.0": the request line's version (common, combined). */
  protocol?: string;
  /** Request body bytes received from the client. */
  bytesIn?: number;
  /** The client connection's TLS, when the listener terminates it and the engine can tell. */
  tlsVersion?: string;
  tlsCipher?: string;
  /** The answering try: connect (0 on a reused connection), response head, and to its body's end, in ms. */
  upstreamConnectMs?: number;
  upstreamFirstByteMs?: number;
  upstreamMs?: number;
}

export interface AccessLog {
  /** What the loop gathers for this log beyond the usual entry. */
  readonly needs: AccessNeeds;
  /** Whether a request with these figures is logged (`log.only`): asked before the entry is built. */
  admits(status: number, durationMs: number, error: string | undefined): boolean;
  write(e: AccessEntry): void;
  /** Stop the flush timer and write out what is queued. */
  close(): Promise<void>;
}

export interface LineSink {
  write(line: string): void;
  flush(): void | Promise<unknown> | number;
  end?(): void | Promise<unknown> | number;
}

/** The shape of one access log, as `log` in the config says it. */
export interface AccessShape {
  format: AccessFormat;
  /** text and json only; absent: today's line. */
  fields?: readonly AccessField[];
  /** `log.only`; absent: every request. */
  only?: string;
}

const ALL: AccessFilter = () => true;
const NO_NEEDS: AccessNeeds = { clientHeaders: false, timings: false, connection: false };

/** What a shape needs gathered: its fields, or what common/combined print. */
export function shapeNeeds(shape: AccessShape): AccessNeeds {
  if (shape.format === "common") return { ...NO_NEEDS, connection: true };
  if (shape.format === "combined") return { ...NO_NEEDS, clientHeaders: true, connection: true };
  return shape.fields === undefined ? NO_NEEDS : needsOf(shape.fields);
}

/**
 * An access log writing to `sink` (the process's stdout sink by default). The sink writes by
 * itself once a batch is full; a timer owned by this log flushes the tail at least every
 * `flushMs`.
 */
export function createAccessLog(shape: AccessFormat | AccessShape, sink: LineSink = new AccessSink(undefined), flushMs = 250): AccessLog {
  const s: AccessShape = typeof shape === "string" ? { format: shape } : shape;
  const fmt = formatterFor(s.format, s.fields);
  const admits = s.only === undefined ? ALL : parseOnly(s.only);
  if (admits === undefined) throw new Error(`log.only: ${JSON.stringify(s.only)} is not a filter`);
  const timer = setInterval(() => sink.flush(), flushMs);
  timer.unref();
  return {
    needs: shapeNeeds(s),
    admits,
    write: (e) => sink.write(fmt(e)),
    async close() {
      clearInterval(timer);
      await sink.flush();
    },
  };
}

export { ACCESS_FIELDS, type AccessField, type AccessFormat };
