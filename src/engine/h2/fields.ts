/**
 * One request head from HTTP/1.1 fields to HTTP/2 headers, and a response's HTTP/2 headers back
 * to the fields the client side writes. Pure: no session, no stream.
 */
import { constants, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { FieldList } from "../../http/fields.ts";

/**
 * Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2): Connection and the
 * fields it names are gone already (the header rules, http/headers.ts), these are dropped here
 * whatever they say. Host travels as `:authority` (RFC 9113 §8.3.1). `te` is dropped and set
 * again as `te: trailers`, the one value HTTP/2 allows.
 */
const NOT_IN_HTTP2: ReadonlySet<string> = new Set([
  "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te", "http2-settings",
]);

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_SCHEME, HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_STATUS } = constants;

/**
 * The HTTP/2 request headers for one try: the pseudo-header fields first (RFC 9113 §8.3.1), then
 * the fields with lower-case names (§8.2: uppercase is malformed), repeated names as arrays.
 * `te: trailers` always: this hop takes trailers (the response exposes them, HeldResponse.trailers),
 * and gRPC servers require it (gRPC's PROTOCOL-HTTP2.md) though the front of the proxy, as
 * every hop-by-hop field, removed the client's own.
 */
export function requestHeaders(method: string, path: string, scheme: "http" | "https", authority: string, fields: FieldList): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {
    [HTTP2_HEADER_METHOD]: method,
    [HTTP2_HEADER_PATH]: path,
    [HTTP2_HEADER_SCHEME]: scheme,
    [HTTP2_HEADER_AUTHORITY]: fields.get("host") ?? authority,
  };
  fields.forEach((value, name) => {
    const lower = name.toLowerCase();
    if (NOT_IN_HTTP2.has(lower)) return;
    const had = out[lower];
    if (had === undefined) out[lower] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[lower] = [String(had), value];
  });
  out.te = "trailers";
  return out;
}

/** The response's (or a trailer section's) fields, without pseudo-headers; repeated names stay repeated. */
export function responseFields(headers: IncomingHttpHeaders): FieldList {
  const f = new FieldList();
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) f.append(name, v);
    else f.append(name, String(value));
  }
  return f;
}

/** The `:status` of a response head (RFC 9113 §8.3.2): 0 when missing or not a number (malformed). */
export function statusOf(headers: IncomingHttpHeaders): number {
  const s = Number(headers[HTTP2_HEADER_STATUS]);
  return Number.isInteger(s) && s >= 100 && s <= 999 ? s : 0;
}
