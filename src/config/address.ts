/**
 * Addresses in the config: backends' and the hosts listeners bind to. Error texts complete
 * "expected ...".
 */
import { parseIp } from "../net/cidr.ts";

/** HTTP mode takes http(s) URLs with a host; TCP mode takes tcp://host:port or host:port. */
export function parseBackendAddress(text: string, mode: "http" | "tcp"): URL {
  if (mode === "tcp") {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `tcp://${text}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new Error(`a TCP address like "tcp://127.0.0.1:6379" or "127.0.0.1:6379"`);
    }
    if (url.protocol !== "tcp:" || !url.hostname || !url.port || (url.pathname && url.pathname !== "/")) {
      throw new Error(`a TCP address like "tcp://127.0.0.1:6379" or "127.0.0.1:6379" (with a port)`);
    }
    return url;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`an http(s) URL with a host, like "http://127.0.0.1:5001"`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) {
    throw new Error(`an http(s) URL with a host, like "http://127.0.0.1:5001"`);
  }
  if (url.search || url.hash || url.username) {
    throw new Error(`a URL without query, fragment or credentials`);
  }
  return url;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * A host to listen on: an IPv4 address, an IPv6 address (no brackets) or a host name
 * (RFC 1123 §2.1: dot-separated labels of letters, digits and inner hyphens, at most 253
 * characters). Checked here so that a typo is a config error naming the field rather than
 * EINVAL from listen(). Returns what was expected, or undefined when the host is fine.
 */
export function listenHostProblem(host: string): string | undefined {
  if (host.startsWith("[") && host.endsWith("]")) return `an IPv6 address without brackets, like "${host.slice(1, -1)}"`;
  if (host.includes(":")) return parseIp(host) === undefined ? `an IPv6 address like "::" or "::1"` : undefined;
  // All digits and dots cannot be a name (RFC 1123 §2.1, WHATWG URL): it must be an IPv4 address.
  if (/^[\d.]+$/.test(host)) return parseIp(host) === undefined ? `an IPv4 address of four numbers 0-255, like "0.0.0.0" or "127.0.0.1"` : undefined;
  if (host.length > 253 || !host.split(".").every((l) => LABEL.test(l))) {
    return `an IP address or a host name (letters, digits, "-" and "."), like "0.0.0.0", "::" or "localhost"`;
  }
  return undefined;
}

/** Every address of this family: the wildcard a listener binds to accept on all interfaces. */
export function isWildcardHost(host: string): boolean {
  return host === "0.0.0.0" || host === "::";
}

export interface HostPort {
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
