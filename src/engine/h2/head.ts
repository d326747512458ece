/**
 * An HTTP/2 request head (a HEADERS frame's field list, as node:http2 decoded it) read into
 * what the forwarding loop takes from an HTTP/1.1 head: method, origin-form target, and the
 * fields with Host, or the reason it is malformed (RFC 9113 §8.1.1: a stream error of type
 * PROTOCOL_ERROR, never forwarded).
 */
import { FieldList } from "../../http/fields.ts";

/** A request head, ready for the loop. */
export interface H2Head {
  readonly method: string;
  readonly target: string;
  /** "http" or "https" as :scheme said (informational: the listener's own proto is what X-Forwarded-Proto carries). */
  readonly scheme: string;
  /** `Host` is first, from :authority (or the client's Host when :authority is absent). */
  readonly fields: FieldList;
  /** content-length as declared, or -1. */
  readonly length: number;
}

/** Why a head is malformed: the stream is reset with PROTOCOL_ERROR. */
export interface Malformed {
  readonly malformed: string;
}

/**
 * Connection-specific fields (RFC 9113 §8.2.2): a request carrying one is malformed; a response
 * from an HTTP/1.1 backend has them removed before it goes out on HTTP/2.
 */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

const PSEUDO_REQUEST: ReadonlySet<string> = new Set([":method", ":scheme", ":authority", ":path", ":protocol"]);

/** Upper-case ASCII in a field name (RFC 9113 §8.2.1: names must be lower-case on HTTP/2). */
function hasUpper(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return true;
  }
  return false;
}

/** Read `raw` ([name, value, name, value, ...] in frame order). */
export function readHead(raw: readonly string[]): H2Head | Malformed {
  let method: string | undefined;
  let scheme: string | undefined;
  let authority: string | undefined;
  let path: string | undefined;
  let regular = false;
  const f: string[] = [];
  let cookies: string[] | undefined;
  let host: string | undefined;
  let length = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (hasUpper(name)) return { malformed: `field name "${name}" is not lower-case` };
    if (name.charCodeAt(0) === 58 /* : */) {
      // §8.3: pseudo-header fields come before every regular field, each once, and only the
      // ones defined for requests.
      if (regular) return { malformed: `pseudo-header ${name} after a regular field` };
      if (!PSEUDO_REQUEST.has(name)) return { malformed: `unknown pseudo-header ${name}` };
      switch (name) {
        case ":method":
          if (method !== undefined) return { malformed: "more than one :method" };
          method = value;
          break;
        case ":scheme":
          if (scheme !== undefined) return { malformed: "more than one :scheme" };
          scheme = value;
          break;
        case ":authority":
          if (authority !== undefined) return { malformed: "more than one :authority" };
          authority = value;
          break;
        case ":path":
          if (path !== undefined) return { malformed: "more than one :path" };
          path = value;
          break;
        case ":protocol":
          // Extended CONNECT (RFC 8441) is not offered (SETTINGS_ENABLE_CONNECT_PROTOCOL stays 0).
          return { malformed: ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL" };
      }
      continue;
    }
    regular = true;
    if (CONNECTION_SPECIFIC.has(name)) return { malformed: `connection-specific field ${name}` };
    // §8.2.2: TE may be present only with the value "trailers"; it is hop-by-hop, so not passed on.
    if (name === "te") {
      if (value.trim().toLowerCase() !== "trailers") return { malformed: `te "${value}"` };
      continue;
    }
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (length !== -1 && Number(value) !== length)) return { malformed: `content-length "${value}"` };
      if (length !== -1) continue;
      length = Number(value);
    } else if (name === "cookie") {
      // §8.2.3: several cookie fields are one to an HTTP/1.1 hop, joined with "; ".
      (cookies ??= []).push(value);
      continue;
    } else if (name === "host") {
      if (host !== undefined) return { malformed: "more than one host field" };
      host = value;
      continue;
    }
    f.push(name, value);
  }
  if (method === undefined) return { malformed: "no :method" };
  // §8.5: CONNECT has only :method and :authority. Refused after the head is read (405).
  if (method !== "CONNECT") {
    if (scheme === undefined || path === undefined) return { malformed: "no :scheme or :path" };
    if (path === "") return { malformed: "empty :path" };
  }
  // §8.3.1: :authority is what Host is to HTTP/1.1; when both are present they must agree
  // (a proxy that read one and routed by the other would be a desync).
  if (authority !== undefined && host !== undefined && authority !== host) return { malformed: "host differs from :authority" };
  const hostValue = authority ?? host;
  const fields: string[] = hostValue !== undefined ? ["host", hostValue] : [];
  for (const x of f) fields.push(x);
  if (cookies !== undefined) fields.push("cookie", cookies.join("; "));
  return { method, target: path ?? "", scheme: scheme ?? "", fields: new FieldList(fields), length };
}
