/**
 * The names `log.fields` may list, and what each one reads from an access entry. One table, so
 * that the schema's check, the text and JSON formats and the docs cannot disagree.
 */
import type { AccessEntry } from "./access.ts";

/** Every field name, in the order docs/forwarding.md lists them. */
export const ACCESS_FIELDS = [
  "client_ip", "method", "host", "target", "status", "bytes_in", "bytes_out", "user_agent", "referer",
  "route", "pool", "backend", "tries", "error", "trace_id", "request_id", "tls_version", "tls_cipher",
  "upstream_connect_time", "upstream_first_byte_time", "upstream_time", "duration",
] as const;
export type AccessField = (typeof ACCESS_FIELDS)[number];

/** A field's value: a string, a number, or undefined when the request has none (`-` in text, null in JSON). */
type Read = (e: AccessEntry) => string | number | undefined;

/** Milliseconds to 0.1 ms, as `durationMs` always was. */
export const tenths = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : Math.round(ms * 10) / 10);

export const FIELD_READERS: Readonly<Record<AccessField, Read>> = {
  client_ip: (e) => e.client,
  method: (e) => e.method,
  host: (e) => e.host,
  target: (e) => e.path,
  status: (e) => e.status,
  bytes_in: (e) => e.bytesIn,
  bytes_out: (e) => e.bytes,
  user_agent: (e) => e.userAgent,
  referer: (e) => e.referer,
  route: (e) => e.route,
  pool: (e) => e.pool,
  // The backend that answered (the last tried); `tries` says how many were.
  backend: (e) => e.backends[e.backends.length - 1],
  tries: (e) => e.attempts,
  error: (e) => e.error,
  trace_id: (e) => e.traceId,
  request_id: (e) => e.requestId,
  tls_version: (e) => e.tlsVersion,
  tls_cipher: (e) => e.tlsCipher,
  upstream_connect_time: (e) => tenths(e.upstreamConnectMs),
  upstream_first_byte_time: (e) => tenths(e.upstreamFirstByteMs),
  upstream_time: (e) => tenths(e.upstreamMs),
  duration: (e) => tenths(e.durationMs),
};

/** What a set of fields (or a format) needs the loop to gather beyond the usual entry. */
export interface AccessNeeds {
  /** Host, User-Agent and Referer as the client sent them. */
  clientHeaders: boolean;
  /** The upstream timings (connect, first byte, total). */
  timings: boolean;
  /** Bytes of request body received, and the client's TLS version and cipher. */
  connection: boolean;
}

export function needsOf(fields: readonly AccessField[]): AccessNeeds {
  const has = (...names: AccessField[]) => names.some((n) => fields.includes(n));
  return {
    clientHeaders: has("host", "user_agent", "referer"),
    timings: has("upstream_connect_time", "upstream_first_byte_time", "upstream_time"),
    connection: has("bytes_in", "tls_version", "tls_cipher"),
  };
}
