/**
 * The one place that reads a network error: what kind of failure it was and how the log
 * words it. The proxy's retry decision, passive health, the health probes, the TCP relay and
 * the admin poller all ask here, so that a code Bun renames (ConnectionRefused became
 * ECONNREFUSED in 1.4, oven-sh/bun#34397) is mended once.
 */

/**
 * - `connect`: no connection was made (refused, no such host, unreachable): nothing was sent,
 *   so any request may go elsewhere.
 * - `reset`: the connection broke after it was made; the request may have been acted on.
 */
export type NetworkFailure = "connect" | "reset";

/** Codes that mean the connection was never made. Bun 1.3 and 1.4 spellings both. */
const CONNECT_CODES = new Set([
  "ECONNREFUSED", "ConnectionRefused", "ENOTFOUND", "EAI_NONAME", "EAI_AGAIN", "FailedToOpenSocket",
  "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ETIMEDOUT_CONNECT",
]);

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
