/**
 * Addresses in the config: backends' and the hosts listeners bind to. Error texts complete
 * "expected ...".
 */
import { parseIp } from "../proxy/cidr.ts";

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
