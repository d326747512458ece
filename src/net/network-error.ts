/**
 * The one place that reads a network error: what kind of failure it was and how the log
 * words it. The proxy's retry decision, passive health, the health probes, the TCP relay and
 * the admin poller all ask here, so that a code Bun renames (ConnectionRefused became
 * ECONNREFUSED in 1.4, oven-sh/bun#34397) is mended once.
 */

import { closeSync, openSync } from "node:fs";

/**
 * - `connect`: no connection was made (refused, no such host, unreachable): nothing was sent,
 *   so any request may go elsewhere.
 * - `reset`: the connection broke after it was made; the request may have been acted on.
 * - `refused`: the backend refused the request without processing it: an HTTP/2 stream reset
 *   with REFUSED_STREAM, or above a GOAWAY's last stream id (RFC 9113 §8.7, §6.8). Nothing was
 *   acted on, so any request may go elsewhere; the backend answered, though, so it is alive.
 * - `local`: the proxy itself could not try (out of descriptors or local ports, its resolver
 *   unable to answer now): nothing was sent, and the backend is not to blame for it.
 */
export type NetworkFailure = "connect" | "refused" | "reset" | "local";

/** Codes that mean the connection was never made. Bun 1.3 and 1.4 spellings both. */
const CONNECT_CODES = new Set([
  "ECONNREFUSED", "ConnectionRefused", "ENOTFOUND", "EAI_NONAME", "FailedToOpenSocket",
  "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT_CONNECT",
  // An https:// backend whose TLS handshake agreed on no h2 (engine/h2/session-pool.ts): nothing was sent.
  "ERR_H2_NOT_NEGOTIATED",
]);

/** Codes of a request the backend refused unprocessed (engine/h2/try.ts). */
const REFUSED_CODES = new Set(["ERR_H2_REFUSED_STREAM"]);

/**
 * Failures of the proxy's own resources, never a backend's (Envoy keeps such "local origin"
 * errors apart too): EMFILE/ENFILE, no descriptor left (process, system); EADDRNOTAVAIL, on
 * connect(2) the local port range is used up (no ephemeral port for the 4-tuple); ENOBUFS and
 * ENOMEM, the kernel's memory; EAI_AGAIN, the resolver could not answer now (getaddrinfo(3):
 * "a temporary failure in name resolution"), which says nothing of the backend behind the name.
 * Counted in TrafficStats.localErrors, in this order.
 */
export const LOCAL_CODES = ["EMFILE", "ENFILE", "EADDRNOTAVAIL", "ENOBUFS", "ENOMEM", "EAI_AGAIN"] as const;
export type LocalCode = (typeof LOCAL_CODES)[number];
const LOCAL_SET: ReadonlySet<string> = new Set(LOCAL_CODES);

export function isLocalCode(code: string | undefined): code is LocalCode {
  return code !== undefined && LOCAL_SET.has(code);
}

/**
 * Bun 1.4.5's Bun.connect reports a socket(2) that failed with EMFILE as ECONNREFUSED (errno
 * -111, syscall "connect"; strace shows `socket(...) = -1 EMFILE`), so a refused connect cannot
 * be read from its code alone. Asked only on that failure path: whether this process can open
 * a descriptor at all right now. An open(2) and a close(2) of /dev/null, a few microseconds;
 * the code it failed with when it cannot (EMFILE or ENFILE), else undefined.
 */
export function descriptorShortage(): LocalCode | undefined {
  try {
    closeSync(openSync("/dev/null", "r"));
    return undefined;
  } catch (e) {
    const code = errorCode(e);
    return code === "EMFILE" || code === "ENFILE" ? code : undefined;
  }
}

/**
 * A refused connect as Bun reported it, or the proxy's own EMFILE/ENFILE under that name (see
 * descriptorShortage): the error to classify. Other errors are returned as they are.
 */
export function refinedConnectError(e: unknown): unknown {
  const code = errorCode(e);
  if (code !== "ECONNREFUSED" && code !== "ConnectionRefused" && code !== "FailedToOpenSocket") return e;
  const local = descriptorShortage();
  return local === undefined ? e : new NetworkError(local, `no file descriptor left (${local}); Bun reported ${code}`);
}

const WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ConnectionRefused: "connection refused",
  ECONNRESET: "connection reset",
  ConnectionClosed: "connection reset",
  EPIPE: "connection reset",
  ENOTFOUND: "host not found",
  EAI_NONAME: "host not found",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EMFILE: "no file descriptor left in the proxy (EMFILE)",
  ENFILE: "no file descriptor left in the system (ENFILE)",
  EADDRNOTAVAIL: "no local address or port left (EADDRNOTAVAIL)",
  ENOBUFS: "no kernel buffer space (ENOBUFS)",
  ENOMEM: "out of memory (ENOMEM)",
  EAI_AGAIN: "the resolver could not answer now (EAI_AGAIN)",
  ERR_H2_REFUSED_STREAM: "refused unprocessed by the backend (HTTP/2 REFUSED_STREAM or GOAWAY)",
  ERR_H2_NOT_NEGOTIATED: "the backend did not agree to HTTP/2 (ALPN)",
};

export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * A backend certificate that fails verification (expired, another host's, an unknown CA) ends
 * the connection in its handshake, before a byte of the request went: a connect failure.
 * Codes as OpenSSL and Node name them: CERT_HAS_EXPIRED, ERR_TLS_CERT_ALTNAME_INVALID,
 * UNABLE_TO_VERIFY_LEAF_SIGNATURE, DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN, ...
 */
const TLS_CODE = /CERT|^ERR_TLS_|^ERR_SSL_|^UNABLE_TO_/;

export function classifyNetworkError(e: unknown): NetworkFailure {
  const code = errorCode(e);
  if (isLocalCode(code)) return "local";
  if (code !== undefined && REFUSED_CODES.has(code)) return "refused";
  return code !== undefined && (CONNECT_CODES.has(code) || TLS_CODE.test(code)) ? "connect" : "reset";
}

/** "connection refused", "connection reset", "host not found", "error EFOO", "error <message>". */
export function describeNetworkError(e: unknown): string {
  const code = errorCode(e);
  if (code !== undefined && TLS_CODE.test(code)) return `TLS certificate refused (${code})`;
  if (code !== undefined) return WORDS[code] ?? `error ${code}`;
  return `error ${e instanceof Error ? e.message : String(e)}`;
}

/** An error with a code, for failures our own socket code detects (a close before the head). */
export class NetworkError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
