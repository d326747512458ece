/**
 * Trailer fields passed on to an HTTP/1.1 client, in the last chunk of a chunked body (RFC 9112
 * §7.1.2): only to a client that said it takes them (`TE: trailers`, RFC 9110 §10.1.4), since
 * an intermediary may otherwise drop them (RFC 9110 §6.5.1), and only fields that may be
 * trailers at all.
 */
import type { FieldList } from "./fields.ts";
import { hasToken } from "./upgrade.ts";

/**
 * Fields a sender must not put in a trailer section, or whose meaning a trailer cannot carry
 * (RFC 9110 §6.5.1: framing, routing, request modifiers, authentication, response control,
 * content metadata), and the hop-by-hop ones (§7.6.1). Dropped, never passed on.
 */
const NOT_TRAILERS: ReadonlySet<string> = new Set([
  "content-length", "transfer-encoding", "content-type", "content-encoding", "content-range", "content-language", "content-location",
  "host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
  "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "set-cookie", "cookie",
  "cache-control", "expires", "age", "date", "location", "retry-after", "vary", "warning", "expect", "max-forwards", "range", "if-match",
  "if-none-match", "if-modified-since", "if-unmodified-since", "if-range",
]);

/** A field value that would end its line early or carry a NUL: never written (request smuggling). */
const UNSAFE = /[\r\n\0]/;
/** A token per RFC 9110 §5.6.2, for field names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The request's TE says the client takes trailers (read before the header rules remove TE). */
export function takesTrailers(te: string | null): boolean {
  return hasToken(te, "trailers");
}

/** Whether a trailer field may be passed on at all (to an HTTP/1.1 or an HTTP/2 client). */
export function mayTrail(name: string, value: string): boolean {
  return !NOT_TRAILERS.has(name.toLowerCase()) && TOKEN.test(name) && !UNSAFE.test(value);
}

/** The last chunk with `trailers` (RFC 9112 §7.1.2); undefined when none of them may go. */
export function lastChunkWith(trailers: FieldList): Uint8Array | undefined {
  let lines = "";
  trailers.forEach((value, name) => {
    if (!mayTrail(name, value)) return;
    lines += `${name}: ${value}\r\n`;
  });
  return lines === "" ? undefined : Buffer.from(`0\r\n${lines}\r\n`, "latin1");
}
