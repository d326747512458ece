/**
 * Proxy errors with stable codes (in the manner of undici's UND_ERR_*). Code decides what
 * happened; the HTTP status is chosen only at the edge, by `statusFor`.
 */
export type ProxyErrorCode =
  /** No backend is available (all down, draining, ejected or full). 503. */
  | "SY_NO_BACKEND"
  /** Every try failed: refused, reset, or an error status on the last try. 502. */
  | "SY_UPSTREAM_FAILED"
  /**
   * The last try failed for want of the proxy's own resources (file descriptors, local ports,
   * its resolver): no backend is to blame. 503.
   */
  | "SY_LOCAL_RESOURCES"
  /** retry.timeout (or the last per-try timeout) ran out before a response head arrived. 504. */
  | "SY_UPSTREAM_TIMEOUT"
  /** Waited for an upstream slot (limits.upstreamConcurrency) until retry.timeout ran out. 503. */
  | "SY_QUEUE_TIMEOUT"
  /** The backend broke off a response body after its head had gone to the client. Logged only. */
  | "SY_UPSTREAM_TRUNCATED"
  /** The client sent a body over limits.maxBodySize. 413. */
  | "SY_BODY_TOO_LARGE"
  /** The client stopped sending its body for longer than timeouts.idle. 408. */
  | "SY_CLIENT_TIMEOUT"
  /** The client went away; nothing is sent. */
  | "SY_CLIENT_ABORTED";

const STATUS: Record<ProxyErrorCode, number> = {
  SY_NO_BACKEND: 503,
  SY_UPSTREAM_FAILED: 502,
  SY_LOCAL_RESOURCES: 503,
  SY_UPSTREAM_TIMEOUT: 504,
  SY_QUEUE_TIMEOUT: 503,
  // The head already went out with the backend's status; 502 is what the access log records.
  SY_UPSTREAM_TRUNCATED: 502,
  SY_BODY_TOO_LARGE: 413,
  SY_CLIENT_TIMEOUT: 408,
  // 499 is nginx's "client closed request": it appears only in logs, never on the wire.
  SY_CLIENT_ABORTED: 499,
};

const MESSAGE: Record<ProxyErrorCode, string> = {
  SY_NO_BACKEND: "no backend is available to serve this request",
  SY_UPSTREAM_FAILED: "every try to reach a backend failed",
  SY_LOCAL_RESOURCES: "the proxy is short of its own resources (descriptors, ports, resolver)",
  SY_UPSTREAM_TIMEOUT: "the backend did not answer in time",
  SY_QUEUE_TIMEOUT: "too many requests are waiting for a backend",
  SY_UPSTREAM_TRUNCATED: "the backend broke off the response body",
  SY_BODY_TOO_LARGE: "the request body is larger than this server accepts",
  SY_CLIENT_TIMEOUT: "the request body stopped arriving",
  SY_CLIENT_ABORTED: "the client closed the connection",
};

export class ProxyError extends Error {
  constructor(
    readonly code: ProxyErrorCode,
    detail?: string,
  ) {
    super(detail ? `${MESSAGE[code]}: ${detail}` : MESSAGE[code]);
  }
  get status(): number {
    return STATUS[this.code];
  }
}

/**
 * A request given up on because of what its client did, not any backend: the engine aborts the
 * request's signal with this as the reason, and the loop answers it without a word to passive
 * health (a client must never be able to change a backend's standing).
 */
export class ClientFault extends Error {
  constructor(
    readonly code: "SY_BODY_TOO_LARGE" | "SY_CLIENT_TIMEOUT",
    detail?: string,
  ) {
    super(detail ?? MESSAGE[code]);
  }
}

export function statusFor(code: ProxyErrorCode): number {
  return STATUS[code];
}

/** A proxy-made answer, before an engine puts it on its wire. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The client-facing answer: JSON with the stable code, and Retry-After on 503 (RFC 9110 §10.2.3). */
export function errorAnswer(err: ProxyError, requestId: string, retryAfterSeconds = 1): ErrorAnswer {
  const status = err.status;
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-request-id": requestId,
    "cache-control": "no-store",
  };
  if (status === 503) headers["retry-after"] = String(retryAfterSeconds);
  const body = JSON.stringify({ error: err.code, status, message: err.message, requestId });
  return { status, headers, body };
}

export function errorResponse(err: ProxyError, requestId: string, retryAfterSeconds = 1): Response {
  const a = errorAnswer(err, requestId, retryAfterSeconds);
  return new Response(a.body, { status: a.status, headers: a.headers });
}

/**
 * Requests refused before any backend is asked, for how the client framed them or what they
 * ask for: 400 (RFC 9112 §3.2 Host, §6.3 Content-Length) and 405 (proxy/methods.ts). The
 * engine answers them itself and closes the connection: after a framing fault nothing more
 * read from it can be trusted (RFC 9112 §6.3 item 5 requires the close for a bad length).
 */
export type RefusalCode = "SY_BAD_REQUEST" | "SY_METHOD_NOT_ALLOWED";

const REFUSAL_STATUS: Record<RefusalCode, number> = { SY_BAD_REQUEST: 400, SY_METHOD_NOT_ALLOWED: 405 };

export interface Refusal {
  code: RefusalCode;
  detail: string;
  /** Fields the status requires, e.g. Allow on a 405 (RFC 9110 §15.5.6). */
  headers?: Record<string, string>;
}

export function refusalAnswer(r: Refusal): ErrorAnswer {
  const status = REFUSAL_STATUS[r.code];
  return {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", connection: "close", ...r.headers },
    body: JSON.stringify({ error: r.code, status, message: r.detail }),
  };
}
