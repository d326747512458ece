/**
 * Header transforms between client and backend, in both directions. Written once against
 * `HeaderFields`, so both HTTP engines apply the same rules (fetch: `Headers`; socket: `FieldList`).
 */
import type { CidrMatcher } from "../net/cidr.ts";
import { FieldList, type HeaderFields } from "./fields.ts";

/**
 * Hop-by-hop fields: they describe one connection, not the message, so a proxy must not
 * forward them (RFC 9110 §7.6.1; RFC 9112 §9.6 for Connection, §6.1 for Transfer-Encoding).
 * Keep-Alive and Proxy-Connection are legacy hop-by-hop names still sent in the wild;
 * Proxy-Authenticate/Proxy-Authorization are addressed to this proxy, not the backend
 * (RFC 9110 §11.7), and are removed as Go's ReverseProxy and HAProxy do.
 */
export const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
] as const;

const HOP_BY_HOP_SET: ReadonlySet<string> = new Set(HOP_BY_HOP);

/**
 * An HTTP version other than 1.1, as Via's received-protocol writes it (RFC 9110 §7.6.3: the
 * protocol name omitted for HTTP, "2" for HTTP/2). Absent: 1.1.
 */
export type OtherVersion = "1.0" | "2";

export const VIA = "1.1 switchyard";
/** Via's entry for a message received over `version`: made once, not per message. */
const VIA_BY_VERSION: Record<OtherVersion, string> = { "1.0": "1.0 switchyard", "2": "2 switchyard" };

function appendVia(headers: HeaderFields, version: OtherVersion | undefined): void {
  const ours = version === undefined ? VIA : VIA_BY_VERSION[version];
  const via = headers.get("via");
  headers.set("via", via ? `${via}, ${ours}` : ours);
}

/**
 * Remove hop-by-hop fields and every field named in Connection (RFC 9110 §7.6.1: "a proxy or
 * gateway MUST parse a received Connection header field ... and remove ... each field named").
 * Mutates `headers` in place: it is ours to change, and a copy per request costs more.
 *
 * Except Host: it carries the target URI's authority, end-to-end information that every
 * HTTP/1.1 request must have (RFC 9112 §3.2, RFC 9110 §7.2), so it can never be a connection
 * option. Dropping it would let a client swap its Host for the backend's (fetch fills one in).
 * nginx and HAProxy never drop Host whatever Connection says; neither do we.
 */
export function stripHopByHop(headers: HeaderFields): void {
  // The socket engine's FieldList does it in one pass over the lines.
  if (headers instanceof FieldList) return headers.dropHopByHop(HOP_BY_HOP_SET);
  const connection = headers.get("connection");
  if (connection !== null) {
    for (const token of connection.split(",")) {
      // Lower-cased: HeaderFields names are looked up lower-case (FieldList compares them so).
      const name = token.trim().toLowerCase();
      if (name !== "" && name !== "host") headers.delete(name);
    }
  }
  for (const name of HOP_BY_HOP) headers.delete(name);
}

export interface ForwardedInfo {
  /** The address of the peer that connected to us. */
  clientIp: string;
  /** "http" or "https": the scheme the client used to reach us. */
  proto: string;
  requestId: string;
  /** The version the client's request came in (Via's received-protocol); absent: 1.1. */
  version?: OtherVersion;
}

export interface RequestHeaderOptions {
  trusted: CidrMatcher;
  /** Keep the client's Host (default) or send the backend's. */
  preserveHost: boolean;
}

/**
 * Prepare the client's request headers for the backend, in place.
 *
 * X-Forwarded-* and X-Real-IP are de-facto standard, not RFC-defined; the trust rule follows
 * Envoy's use_remote_address and nginx's real_ip: a client can write anything into them, so their
 * values are kept (X-Forwarded-For appended to) only when the peer is a proxy we trust. From
 * anyone else they are replaced, and a Forwarded field (RFC 7239) is dropped for the same reason.
 * X-Real-IP is the original client (nginx's `proxy_set_header X-Real-IP $remote_addr` at the
 * edge): a trusted proxy's value is kept, and set from the peer when it sent none.
 *
 * Returns whether Host must be the backend's (preserveHost is off, or the client sent none, as
 * an HTTP/1.0 client may): set it to `backendHost` here when given, or per try by the caller
 * when the backend is not chosen yet.
 */
export function toUpstreamHeaders(
  headers: HeaderFields,
  info: ForwardedInfo,
  opts: RequestHeaderOptions,
  backendHost?: string,
): boolean {
  stripHopByHop(headers);
  const host = headers.get("host");
  if (opts.trusted(info.clientIp)) {
    const prior = headers.get("x-forwarded-for");
    headers.set("x-forwarded-for", prior ? `${prior}, ${info.clientIp}` : info.clientIp);
    if (!headers.has("x-forwarded-proto")) headers.set("x-forwarded-proto", info.proto);
    if (!headers.has("x-forwarded-host") && host !== null) headers.set("x-forwarded-host", host);
    if (!headers.has("x-real-ip")) headers.set("x-real-ip", info.clientIp);
  } else {
    headers.set("x-forwarded-for", info.clientIp);
    headers.set("x-real-ip", info.clientIp);
    headers.set("x-forwarded-proto", info.proto);
    if (host !== null) headers.set("x-forwarded-host", host);
    else headers.delete("x-forwarded-host");
    headers.delete("forwarded");
  }
  // Via is a list each intermediary appends to, with the version it received (RFC 9110 §7.6.3).
  appendVia(headers, info.version);
  if (!headers.has("x-request-id")) headers.set("x-request-id", info.requestId);
  const rewriteHost = !opts.preserveHost || host === null;
  if (rewriteHost && backendHost !== undefined) headers.set("host", backendHost);
  return rewriteHost;
}

/**
 * The operator's rules for response headers (config `responseHeaders`), lower-cased and
 * checked once at start-up by compileResponseHeaderRules; per response they are two loops.
 */
export interface ResponseHeaderRules {
  readonly remove: readonly string[];
  readonly set: readonly (readonly [name: string, value: string])[];
}

export interface ClientHeaderOptions {
  responseHeaders?: ResponseHeaderRules;
}

const NO_CLIENT_OPTIONS: ClientHeaderOptions = {};

/**
 * Build the rules from the validated config. The schema has already refused names that are
 * not tokens, values with CR/LF/NUL, framing and hop-by-hop fields, and a name in both lists.
 */
export function compileResponseHeaderRules(config: { remove: readonly string[]; set: Readonly<Record<string, string>> }): ResponseHeaderRules {
  return {
    remove: [...new Set(config.remove.map((n) => n.toLowerCase()))],
    set: Object.entries(config.set).map(([n, value]) => [n.toLowerCase(), value] as const),
  };
}

/**
 * Prepare the backend's response headers for the client, in place. The operator's rules run
 * last, so that they may also remove or replace what the proxy adds (Via, X-Request-Id).
 * `version`: the response's own, when not 1.1.
 */
export function toClientHeaders(headers: HeaderFields, requestId: string, opts: ClientHeaderOptions = NO_CLIENT_OPTIONS, version?: OtherVersion): void {
  stripHopByHop(headers);
  // The version the backend's response came in (RFC 9110 §7.6.3).
  appendVia(headers, version);
  if (!headers.has("x-request-id")) headers.set("x-request-id", requestId);
  const rules = opts.responseHeaders;
  if (rules !== undefined) {
    for (const name of rules.remove) headers.delete(name);
    for (const [name, value] of rules.set) headers.set(name, value);
  }
}
