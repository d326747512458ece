/**
 * Every error code of Switchyard, in the manner of undici's `lib/core/errors.js` (UND_ERR_*):
 * each `SY_*` code is declared here once, with the HTTP status of the answer that carries it
 * (or, for a code that never reaches HTTP, what it becomes instead: an exit code, a log line)
 * and one line of meaning. A code that is not in ERRORS is not an `ErrorCode`, so it does not
 * compile wherever a code is taken; test/errors.test.ts checks that every `SY_` word under src/
 * is declared, and docs/errors.md is rendered from this table (docs/generators/errors.ts).
 *
 * Code decides what happened; the status is chosen only at the edge, by the one answer builder
 * below (errorAnswer), which every error answer of the proxy, its engines and the admin
 * listener goes through.
 *
 * This module imports nothing, so that any layer may depend on it.
 */

/** Who raises a code; the error classes take their codes from these groups. */
export type ErrorSource =
  /** The forwarding loop's own answers, counted by code in /stats `proxyErrors`. */
  | "proxy"
  /** A route's guards (src/guard/): rate limits, access control; counted with the loop's. */
  | "guard"
  /** A request refused by an engine or a listener before any backend is asked. */
  | "engine"
  /**
   * A client connection refused by its listener's per-client bound before any request is read;
   * counted by code with the loop's answers.
   */
  | "listener"
  /** The admin listener: its guards and endpoints. */
  | "admin"
  /** A change refused by Control (admin API, `switchyard ctl`, SIGHUP, `switchyard upgrade`). */
  | "control"
  /** Reading and checking the config. */
  | "config"
  /** Starting the process: listeners and workers. */
  | "start"
  /** Invariants of the runtime state: seen only when there is a bug. */
  | "invariant"
  /** Certificates from ACME (src/acme/): ordering and the store; logged, never an answer. */
  | "acme";

export interface ErrorSpec {
  /** The status of the HTTP answer that carries the code; null when it never reaches HTTP. */
  readonly status: number | null;
  readonly from: ErrorSource;
  /** One line: what happened. */
  readonly meaning: string;
  /** What the code becomes outside an HTTP answer (exit code, log line), when it does. */
  readonly otherwise?: string;
  /** The answer's message when whoever raises the code gives none of its own. */
  readonly message?: string;
}

export const ERRORS = {
  // The forwarding loop (forward/forward.ts): statuses per RFC 9110 §15.6 and §15.5.
  SY_NO_BACKEND: {
    status: 503, from: "proxy",
    meaning: "No backend is available: every one is down, draining, ejected or at its maxConnections.",
    message: "no backend is available to serve this request",
  },
  SY_UPSTREAM_FAILED: {
    status: 502, from: "proxy",
    meaning: "Every try failed: refused, reset, or an error status on the last try.",
    message: "every try to reach a backend failed",
  },
  SY_LOCAL_RESOURCES: {
    status: 503, from: "proxy",
    meaning: "The last try failed for want of the proxy's own resources (file descriptors, local ports, its resolver); no backend is blamed.",
    message: "the proxy is short of its own resources (descriptors, ports, resolver)",
  },
  SY_UPSTREAM_TIMEOUT: {
    status: 504, from: "proxy",
    meaning: "retry.timeout (or the last per-try timeout) ran out before a response head arrived.",
    message: "the backend did not answer in time",
  },
  SY_QUEUE_TIMEOUT: {
    status: 503, from: "proxy",
    meaning: "The request waited for an upstream slot (limits.upstreamConcurrency) until retry.timeout ran out.",
    message: "too many requests are waiting for a backend",
  },
  SY_UPSTREAM_TRUNCATED: {
    status: null, from: "proxy",
    meaning: "The backend broke off a response body after its head had gone to the client.",
    otherwise: "access log (with the backend's status); the client's connection is cut",
    message: "the backend broke off the response body",
  },
  SY_BODY_TOO_LARGE: {
    status: 413, from: "proxy",
    meaning: "The client sent a body over limits.maxBodySize.",
    message: "the request body is larger than this server accepts",
  },
  SY_CLIENT_TIMEOUT: {
    status: 408, from: "proxy",
    meaning: "The client stopped sending its request (head or body) for longer than timeouts.idle.",
    message: "the request body stopped arriving",
  },
  SY_NO_ROUTE: {
    status: 404, from: "proxy",
    meaning: "No route takes the request: no route's match holds for its host, path, method, headers, query and address.",
    message: "no route serves this request",
  },
  SY_BAD_PATH: {
    status: 400, from: "proxy",
    meaning: "The request path cannot be routed safely: an encoded \"/\", \"\\\" or NUL, or dot segments that climb above the root (RFC 3986 §6.2.2); routing and the backend could read it apart.",
    message: "the request path cannot be routed",
  },
  // Refused by a route's guards (src/guard/): counted by code like the loop's own answers.
  SY_FORBIDDEN: {
    status: 403, from: "guard",
    meaning: "A route's access control refused the client: its address is denied, or not allowed.",
    message: "access to this resource is not allowed from this address",
  },
  SY_AUTH_REQUIRED: {
    status: 401, from: "guard",
    meaning: "A route's authentication refused the request: no credentials, or wrong ones; the answer says how to authenticate (WWW-Authenticate).",
    message: "authentication is required",
  },
  SY_RATE_LIMITED: {
    status: 429, from: "guard",
    meaning: "A route's rate limit refused the request (RFC 6585 §4); Retry-After and the RateLimit fields say when to try again.",
    message: "too many requests",
  },
  SY_AUTH_UNAVAILABLE: {
    status: 503, from: "guard",
    meaning: "A guard could not decide: the auth service, the key set or the rate-limit store did not answer (a failure never lets a request through unless the config says so).",
    message: "the request cannot be authorized now",
  },
  SY_CLIENT_ABORTED: {
    status: null, from: "proxy",
    meaning: "The client went away before its answer; nothing is sent.",
    // nginx's "client closed request": in logs and counts only, never on the wire.
    otherwise: "access log as 499",
    message: "the client closed the connection",
  },

  // Refused by an engine before forwarding (RFC 9112 framing, RFC 9110 methods), or by a listener.
  SY_BAD_REQUEST: {
    status: 400, from: "engine",
    meaning: "The request cannot be framed or forwarded: no or two Host fields, a bad Content-Length or Transfer-Encoding, a malformed target (RFC 9112 §3.2, §6.3); with the fetch engine also a GET or HEAD with a body.",
  },
  SY_METHOD_NOT_ALLOWED: {
    status: 405, from: "engine",
    meaning: "CONNECT (a reverse proxy is no tunnel) or TRACE (it would reflect credentials); the answer carries Allow.",
  },
  SY_URI_TOO_LONG: { status: 414, from: "engine", meaning: "The request target is over limits.maxUriLength." },
  SY_EXPECTATION_FAILED: { status: 417, from: "engine", meaning: "An Expect other than 100-continue (RFC 9110 §10.1.1)." },
  SY_HEADERS_TOO_LARGE: { status: 431, from: "engine", meaning: "The request head is over limits.maxHeaderSize (RFC 6585 §5)." },
  SY_NOT_IMPLEMENTED: { status: 501, from: "engine", meaning: "A transfer coding other than chunked (RFC 9112 §6.1)." },
  SY_VERSION_NOT_SUPPORTED: { status: 505, from: "engine", meaning: "An HTTP version other than 1.0 or 1.1 on an HTTP/1 connection." },
  SY_TOO_MANY_CONNECTIONS: {
    status: 503, from: "engine",
    meaning: "The listener already holds limits.maxConnections connections; this one is answered and closed.",
  },
  SY_INTERNAL: { status: 500, from: "engine", meaning: "A fault of Switchyard's own (a bug): logged with its stack." },

  // Refused by a listener when a connection opens (src/net/client-counts.ts).
  SY_TOO_MANY_CLIENT_CONNECTIONS: {
    status: 429, from: "listener",
    meaning: "The client's address already holds limits.maxConnectionsPerClient connections to this listener (RFC 6585 §4): answered with Retry-After and closed (socket engine; a TCP listener closes it before dialling, counted in tcp stats clientConnectionsRefused).",
    message: "too many connections from this client",
  },
  SY_PROXY_PROTOCOL_REFUSED: {
    status: null, from: "listener",
    meaning: "A connection to a listener with proxyProtocol: true closed without an answer: its peer is not in trustedProxies, or it sent no valid PROXY protocol header in time (HAProxy's accept-proxy).",
    otherwise: "closed at once; counted (socket engine: /stats proxyErrors; TCP listeners: tcp stats proxyRefused), the first one logged",
  },

  // The admin listener (admin/app.ts, admin/api.ts).
  SY_ADMIN_HOST_FORBIDDEN: {
    status: 403, from: "admin",
    meaning: "The Host is not a name of the admin listener (against DNS rebinding); see admin.allowedHosts.",
  },
  SY_BAD_ORIGIN: { status: 403, from: "admin", meaning: "A browser request from another origin (RFC 6454 §7.3), against cross-site request forgery." },
  SY_UNAUTHORIZED: { status: 401, from: "admin", meaning: "A change without a valid admin token (RFC 6750 §3)." },
  SY_API_READ_ONLY: { status: 403, from: "admin", meaning: "A change while no admin token is configured: the API is read-only." },
  SY_NOT_FOUND: { status: 404, from: "admin", meaning: "No such endpoint; the answer lists them." },
  SY_UNKNOWN_POOL: { status: 404, from: "admin", meaning: "No pool has that name (in the admin API's path, or /readyz?pool=); the answer lists them." },
  SY_UNKNOWN_ROUTE: { status: 404, from: "admin", meaning: "No route has that name; the answer lists them." },
  SY_TOO_MANY_STREAMS: { status: 503, from: "admin", meaning: "Too many /events streams are open at once." },

  // Changes refused by Control (control/control.ts, control/upgrade.ts); the admin API answers with the status.
  SY_UNKNOWN_BACKEND: { status: 404, from: "control", meaning: "No backend has that name." },
  SY_BACKEND_EXISTS: { status: 409, from: "control", meaning: "A backend of that name already exists." },
  SY_INVALID_REQUEST: { status: 400, from: "control", meaning: "The request's body or parameters are invalid; the answer names the field." },
  SY_NO_CONFIG_FILE: { status: 409, from: "control", meaning: "A reload of a balancer started without --config." },
  SY_LAST_BACKEND: { status: 409, from: "control", meaning: "Removing the last backend; add another first." },
  SY_STOPPING: { status: 503, from: "control", meaning: "The balancer is stopping, or has been upgraded and is draining." },
  SY_UPGRADE_IN_PROGRESS: { status: 409, from: "control", meaning: "An upgrade is already starting a new process." },
  SY_UPGRADE_FAILED: {
    status: 500, from: "control",
    meaning: "The new process of an upgrade could not start; the running one serves on.",
  },
  SY_UPGRADE_UNAVAILABLE: { status: 409, from: "control", meaning: "This balancer was not started by `switchyard serve`: it cannot be replaced." },
  SY_UNKNOWN_CERTIFICATE: { status: 404, from: "control", meaning: "No certificate from ACME has that name; the answer lists them." },
  SY_ACME_BUSY: { status: 409, from: "control", meaning: "An order for that name is under way, here or at a replica sharing the store; its outcome is logged." },
  SY_ACME_RENEW_FAILED: {
    status: 502, from: "control",
    meaning: "An operator's renewal or revocation failed at the CA; the answer says why. The certificate in service stays, and a failed order is tried again with back-off.",
  },

  // The config (config/load.ts, tls/certificates.ts).
  SY_CONFIG_INVALID: {
    status: 422, from: "config",
    meaning: "The config has problems; each names the field, the value and what was expected. A reload keeps the running config.",
    otherwise: "serve and check: exit 2; SIGHUP and --watch: logged",
  },
  SY_TLS_INVALID: {
    status: null, from: "config",
    meaning: "A certificate or key file of listen.tls cannot be read, or they do not belong together.",
    otherwise: "reported as problems of SY_CONFIG_INVALID",
  },

  // Certificates from ACME (acme/manager.ts): logged, never an answer to a client.
  SY_ACME_ORDER_FAILED: {
    status: null, from: "acme",
    meaning: "An ACME order (a new certificate or a renewal) failed: the CA refused, a challenge did not validate, or the CA was unreachable. The certificate in service stays; the order is tried again after a back-off with jitter.",
    otherwise: "logged",
  },
  SY_ACME_RENEWAL_INFO: {
    status: null, from: "acme",
    meaning: "The CA's renewal window (ARI, RFC 9773) for a certificate could not be read: the CA did not answer, or answered no valid window. The certificate renews at two thirds of its lifetime unless a later poll gets a window.",
    otherwise: "logged",
  },
  SY_ACME_STORAGE: {
    status: null, from: "acme",
    meaning: "acme.storage cannot be created or written (its directories, a placeholder certificate).",
    otherwise: "serve: exit 1; a reload: refused",
  },

  // Starting the process (listen-error.ts, workers/supervisor.ts).
  SY_LISTEN_FAILED: { status: null, from: "start", meaning: "A listener cannot bind its address: in use, not of this machine, or a privileged port.", otherwise: "exit 1" },
  SY_WORKER_FAILED: { status: null, from: "start", meaning: "A worker process exited or failed before it served.", otherwise: "exit 1" },
  SY_WORKER_START_TIMEOUT: { status: null, from: "start", meaning: "A worker did not start serving within its start timeout.", otherwise: "exit 1" },

  // Invariants (pool/backend.ts, control/reconcile.ts): thrown where a bug would otherwise go on unseen.
  SY_COUNTER_UNDERFLOW: { status: null, from: "invariant", meaning: "A backend's in-flight count would go below zero.", otherwise: "thrown" },
  SY_BACKEND_IDENTITY: { status: null, from: "invariant", meaning: "A backend was asked to become another (new name or URL) instead of being replaced.", otherwise: "thrown" },
  SY_RECONCILE_INVALID: {
    status: null, from: "invariant",
    meaning: "Two backends of one name in a desired set (config validation refuses that first).",
    otherwise: "thrown; the change is not applied",
  },
} as const satisfies Record<`SY_${string}`, ErrorSpec>;

/** Every code. */
export type ErrorCode = keyof typeof ERRORS;

/** The codes raised by `source`. */
export type CodeFrom<S extends ErrorSource> = { [C in ErrorCode]: (typeof ERRORS)[C]["from"] extends S ? C : never }[ErrorCode];

/** The codes an HTTP answer can carry. */
export type AnswerCode = { [C in ErrorCode]: (typeof ERRORS)[C]["status"] extends number ? C : never }[ErrorCode];

/**
 * The forwarding loop's codes, the guards' and the listeners': counted by code in /stats,
 * /metrics and the workers' figures.
 */
export type ProxyErrorCode = CodeFrom<"proxy" | "guard" | "listener">;

/** The codes a guard refuses with. */
export type GuardCode = CodeFrom<"guard">;

/** The forwarding loop's codes that it answers with (the others are only logged and counted). */
export type ProxyAnswerCode = ProxyErrorCode & AnswerCode;

/** The status of the answer that carries `code` (RFC 9110 §15). */
export function statusFor(code: AnswerCode): number {
  return ERRORS[code].status;
}

/** The message of `code`, with what the raiser knows after it. */
export function messageFor(code: ErrorCode, detail?: string): string {
  const spec: ErrorSpec = ERRORS[code];
  const base = spec.message ?? spec.meaning;
  return detail ? `${base}: ${detail}` : base;
}

/** An error of the forwarding loop, with its stable code. */
export class ProxyError extends Error {
  constructor(
    readonly code: ProxyErrorCode,
    detail?: string,
  ) {
    super(messageFor(code, detail));
  }
  get status(): number | null {
    return ERRORS[this.code].status;
  }
}

/**
 * A request given up on because of what its client did, not any backend: the engine aborts the
 * request's signal with this as the reason, and the loop answers it without a word to passive
 * health (a client must never be able to change a backend's standing).
 */
export class ClientFault extends Error {
  constructor(
    readonly code: Extract<ProxyErrorCode, "SY_BODY_TOO_LARGE" | "SY_CLIENT_TIMEOUT">,
    detail?: string,
  ) {
    super(detail ?? ERRORS[code].message);
  }
}

/**
 * The code of each status the socket engine's own framing checks answer with (it finds the
 * status, per the RFC section it applies; engine/socket/client.ts).
 */
export const FRAMING_CODES = {
  400: "SY_BAD_REQUEST",
  405: "SY_METHOD_NOT_ALLOWED",
  408: "SY_CLIENT_TIMEOUT",
  413: "SY_BODY_TOO_LARGE",
  414: "SY_URI_TOO_LONG",
  417: "SY_EXPECTATION_FAILED",
  431: "SY_HEADERS_TOO_LARGE",
  500: "SY_INTERNAL",
  501: "SY_NOT_IMPLEMENTED",
  505: "SY_VERSION_NOT_SUPPORTED",
} as const satisfies Record<number, AnswerCode>;
export type FramingStatus = keyof typeof FRAMING_CODES;

/** A proxy-made answer, before an engine puts it on its wire. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * The forms an error answer can take, chosen from the request: `json` for HTTP clients, `grpc`
 * for gRPC calls (content-type application/grpc, grpc.ts isGrpcCall), which read no HTTP
 * status and no body: HTTP 200 with `grpc-status` and `grpc-message` in the head and nothing
 * after it, gRPC's Trailers-Only response (PROTOCOL-HTTP2.md: on HTTP/2 the head ends the stream).
 */
export type AnswerFormat = "json" | "grpc";

/**
 * gRPC status codes (grpc/doc/statuscodes.md) the proxy's own answers take, by the HTTP status
 * their code carries: gRPC's own HTTP-to-gRPC table (grpc/doc/http-grpc-status-mapping.md),
 * except where the proxy knows better what happened: a limit a client ran into (429, 413, 431) is
 * RESOURCE_EXHAUSTED (a per-client quota, not an outage: a client should not retry at once), and
 * a backend that gave no answer in time (504) is DEADLINE_EXCEEDED, as the call's deadline.
 */
export const GRPC_STATUS = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusName = keyof typeof GRPC_STATUS;

const GRPC_BY_HTTP: Readonly<Record<number, number>> = {
  400: GRPC_STATUS.INTERNAL,
  401: GRPC_STATUS.UNAUTHENTICATED,
  403: GRPC_STATUS.PERMISSION_DENIED,
  404: GRPC_STATUS.UNIMPLEMENTED,
  408: GRPC_STATUS.DEADLINE_EXCEEDED,
  413: GRPC_STATUS.RESOURCE_EXHAUSTED,
  429: GRPC_STATUS.RESOURCE_EXHAUSTED,
  431: GRPC_STATUS.RESOURCE_EXHAUSTED,
  500: GRPC_STATUS.INTERNAL,
  501: GRPC_STATUS.UNIMPLEMENTED,
  502: GRPC_STATUS.UNAVAILABLE,
  503: GRPC_STATUS.UNAVAILABLE,
  504: GRPC_STATUS.DEADLINE_EXCEEDED,
};

/** The gRPC status of an answer the proxy makes with HTTP status `status`. */
export function grpcStatusFor(status: number): number {
  return GRPC_BY_HTTP[status] ?? GRPC_STATUS.UNKNOWN;
}

/**
 * grpc-message is percent-encoded (PROTOCOL-HTTP2.md, "Responses"): every byte outside
 * printable ASCII, and `%` itself, as %XX of its UTF-8 bytes.
 */
export function grpcMessage(message: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(message)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export interface AnswerOptions {
  /** The request's id: an `x-request-id` field, and `requestId` in the body. */
  requestId?: string;
  /** Retry-After on a 503, in seconds (RFC 9110 §10.2.3). Default 1. */
  retryAfter?: number;
  /** Fields the answer needs besides the usual: Allow on a 405 (RFC 9110 §15.5.6), connection: close... */
  headers?: Record<string, string>;
  /** Members of the body after error, status and message: `problems`, `endpoints`... */
  extra?: Record<string, unknown>;
  format?: AnswerFormat;
}

type Form = (code: AnswerCode, status: number, message: string, o: AnswerOptions) => ErrorAnswer;

const FORMS: Record<AnswerFormat, Form> = {
  json(code, status, message, o) {
    // no-store: 404, 405, 414 and 501 are cacheable by default (RFC 9110 §15.1), and no error
    // answer should outlive its cause in a cache.
    const headers: Record<string, string> = { "content-type": "application/json", "cache-control": "no-store" };
    if (o.requestId !== undefined) headers["x-request-id"] = o.requestId;
    if (status === 503) headers["retry-after"] = String(o.retryAfter ?? 1);
    if (o.headers !== undefined) Object.assign(headers, o.headers);
    const body = JSON.stringify({ error: code, status, message, ...(o.requestId !== undefined ? { requestId: o.requestId } : {}), ...o.extra });
    return { status, headers, body };
  },
  grpc(code, status, message, o) {
    // The fields the answer needs besides (Connection: close, WWW-Authenticate...) go as they
    // are; what describes an HTTP body does not, since there is none.
    const headers: Record<string, string> = {};
    if (o.headers !== undefined) for (const k in o.headers) if (k !== "content-type" && k !== "content-length" && k !== "cache-control") headers[k] = o.headers[k]!;
    headers["content-type"] = "application/grpc";
    headers["grpc-status"] = String(grpcStatusFor(status));
    headers["grpc-message"] = grpcMessage(`${code}: ${message}`);
    if (o.requestId !== undefined) headers["x-request-id"] = o.requestId;
    return { status: 200, headers, body: "" };
  },
};

const NONE: AnswerOptions = {};

/**
 * The one builder of error answers: `{"error": code, "status": ..., "message": ...}` (with
 * `requestId` and `extra` when given), its status from ERRORS. Every engine and the admin
 * listener put what this returns on their wire.
 */
export function errorAnswer(code: AnswerCode, message: string, o: AnswerOptions = NONE): ErrorAnswer {
  return FORMS[o.format ?? "json"](code, ERRORS[code].status, message, o);
}

/** errorAnswer as a Response, for the handlers that answer with one (Bun.serve, Hono). */
export function errorResponse(code: AnswerCode, message: string, o?: AnswerOptions): Response {
  const a = errorAnswer(code, message, o);
  return new Response(a.body, { status: a.status, headers: a.headers });
}
