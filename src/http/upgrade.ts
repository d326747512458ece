/**
 * Protocol upgrades through the proxy: which requests may switch protocols, the fields that
 * must go on to the backend for it. (The count of open WebSockets per backend is the Backend's:
 * OpenWebSocket in pool/backend.ts.)
 *
 * Upgrade and Connection are hop-by-hop (RFC 9110 §7.6.1) and are removed from every request
 * by the header rules; for a WebSocket handshake the proxy then asks the backend for the same
 * upgrade itself, on its own connection (RFC 9110 §7.8: "Upgrade ... applies only to the
 * immediate connection"). The only protocol passed through is WebSocket (RFC 6455 §4.1: a GET,
 * HTTP/1.1, Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key and -Version). Any other
 * Upgrade is ignored and the request is forwarded as plain HTTP, without it.
 */
import type { HeaderFields } from "./fields.ts";

/** The one upgrade token the proxy passes through. */
export const WEBSOCKET = "websocket";

/** Whether a comma-separated field value holds `token` (case-insensitive, RFC 9110 §5.6.1). */
export function hasToken(value: string | null, token: string): boolean {
  if (value === null) return false;
  for (const t of value.split(",")) if (t.trim().toLowerCase() === token) return true;
  return false;
}

/**
 * Whether a request (as the client sent it, before the header rules) is a WebSocket opening
 * handshake the proxy should pass on. Looked up with lower-case names (FieldList's rule).
 */
export function isWebSocketUpgrade(method: string, headers: HeaderFields, http10 = false): boolean {
  return (
    method === "GET" && !http10 &&
    hasToken(headers.get("upgrade"), WEBSOCKET) &&
    hasToken(headers.get("connection"), "upgrade") &&
    headers.has("sec-websocket-key")
  );
}

/** Ask the backend for the upgrade: the fields the hop-by-hop rules removed, for this hop. */
export function requestUpgrade(headers: HeaderFields): void {
  headers.set("connection", "upgrade");
  headers.set("upgrade", WEBSOCKET);
}
