/**
 * What the proxy reads of a gRPC call (grpc/doc/PROTOCOL-HTTP2.md): whether a request is one,
 * and its deadline. gRPC runs over HTTP/2 requests, so routes, pools and the forwarding loop
 * treat a call as any other request; only the proxy's own answers (errors.ts, the `grpc` form)
 * and the call's deadline differ.
 */
import type { HeaderFields } from "./fields.ts";

/**
 * A gRPC call: content-type `application/grpc`, alone or with a `+format` suffix
 * (`application/grpc+proto`), parameters allowed. Not gRPC-Web (`application/grpc-web`),
 * which is a different protocol, answered over HTTP/1.1 with its trailers in the body.
 */
export function isGrpcCall(headers: HeaderFields): boolean {
  const ct = headers.get("content-type");
  if (ct === null || ct.length < 16) return false;
  if (ct.slice(0, 16).toLowerCase() !== "application/grpc") return false;
  const next = ct.charCodeAt(16);
  // End, "+format", ";param" or whitespace before a parameter.
  return Number.isNaN(next) || next === 0x2b || next === 0x3b || next === 0x20 || next === 0x09;
}

/** Milliseconds per grpc-timeout unit (Hours, Minutes, Seconds, milli, micro, nano). */
const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * The call's deadline from `grpc-timeout` (`TimeoutValue TimeoutUnit`: at most 8 digits and one
 * unit letter), in ms, or undefined when there is none or it is malformed (then the route's own
 * time limits apply, as for any request).
 */
export function grpcTimeoutMs(headers: HeaderFields): number | undefined {
  const v = headers.get("grpc-timeout");
  if (v === null) return undefined;
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(v);
  if (m === null) return undefined;
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}
