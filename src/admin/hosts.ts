/**
 * The admin listener answers only requests addressed to one of its own names, against DNS
 * rebinding: a web page on evil.example whose name is re-pointed at 127.0.0.1 can make the
 * browser send requests here, but the browser still sends `Host: evil.example:8081`. Checking
 * Host is what Caddy's admin endpoint (`origins`), Jupyter and Vite's dev server do.
 *
 * Accepted, always with the listener's port (a Host without a port means 80, RFC 9110 §4.2.1):
 * - `localhost`, `127.0.0.1` and `[::1]`: a page on these names is this machine's own;
 * - the configured admin host, when it is a name or a specific address;
 * - for a wildcard listener (`0.0.0.0`, `::`), the machine's host name and the addresses of its
 *   interfaces, read when the listener takes its first request (an address added later needs
 *   `admin.allowedHosts` or a restart);
 * - each `admin.allowedHosts` entry: `name` (with the admin port) or `name:port` (any port,
 *   for a proxy in front that keeps the client's Host).
 * IP literals compare by value, so `[0:0:0:0:0:0:0:1]` is `[::1]`; names compare
 * case-insensitively (RFC 9110 §4.2.3), without a trailing dot.
 */
import { hostname, networkInterfaces } from "node:os";
import { parseIp } from "../net/cidr.ts";
import { isWildcardHost, parseHostPort } from "../config/address.ts";


/** One key per host: IP literals by their value (v4 as v4-mapped v6), names as written. */
function key(host: string, port: number): string {
  const ip = parseIp(host);
  return `${ip === undefined ? host : `#${ip.toString(16)}`} ${port}`;
}

/** The checker of one listener at `listenHost`:`port`, built once per listener. */
export function adminHostChecker(listenHost: string, port: number, allowedHosts: readonly string[] = []): (hostField: string | null) => boolean {
  const keys = new Set<string>();
  const names = ["localhost", "127.0.0.1", "::1"];
  if (isWildcardHost(listenHost)) {
    names.push(hostname());
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.push(a.address);
  } else {
    names.push(listenHost);
  }
  for (const n of names) {
    const parsed = parseHostPort(n.includes(":") ? `[${n}]` : n);
    if (parsed) keys.add(key(parsed.host, port));
  }
  for (const entry of allowedHosts) {
    const parsed = parseHostPort(entry);
    if (parsed) keys.add(key(parsed.host, parsed.port ?? port));
  }
  return (hostField) => {
    // No Host at all: an HTTP/1.0 client, never a browser (which always sends one); nothing to
    // rebind. Bun.serve answers an HTTP/1.1 request without Host with 400 itself (RFC 9112 §3.2).
    if (hostField === null) return true;
    const parsed = parseHostPort(hostField);
    return parsed !== undefined && keys.has(key(parsed.host, parsed.port ?? 80));
  };
}
