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
import { parseIp } from "../proxy/cidr.ts";
import { isWildcardHost, listenHostProblem } from "../config/address.ts";

interface HostPort {
  /** A name lower-cased, or an IP literal without brackets. */
  host: string;
  port: number | undefined;
}

/**
 * `value` as a Host field or an allowedHosts entry: uri-host [":" port] (RFC 9110 §7.2), an IPv6
 * literal in brackets. Undefined when malformed.
 */
export function parseHostPort(value: string): HostPort | undefined {
  let host: string;
  let portText: string | undefined;
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close === -1) return undefined;
    host = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return undefined;
    portText = rest === "" ? undefined : rest.slice(1);
    if (!host.includes(":") || parseIp(host) === undefined) return undefined;
  } else {
    const colon = value.lastIndexOf(":");
    host = colon === -1 ? value : value.slice(0, colon);
    portText = colon === -1 ? undefined : value.slice(colon + 1);
    if (host.includes(":")) return undefined;
    host = host.toLowerCase().replace(/\.$/, "");
    if (host === "" || listenHostProblem(host) !== undefined) return undefined;
  }
  if (portText === undefined) return { host, port: undefined };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return undefined;
  return { host, port: Number(portText) };
}

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
