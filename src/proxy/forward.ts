/**
 * The forwarding loop both HTTP engines share: wait for an upstream slot, choose a backend,
 * apply the header rules, send one try through the engine's wire, decide on failure whether to
 * try another, and hand the response to the client. Selection, header rules, the retry
 * decision, passive health, stats and logging each live in their own module; this file only
 * sequences them. What differs between engines (how bytes reach a backend and the client) is
 * the `Wire`, in the manner of Caddy's Transport: the loop never knows which it has.
 */
import type { Pool } from "../pool/pool.ts";
import type { Backend } from "../pool/backend.ts";
import type { PassiveSignals } from "../health/passive.ts";
import type { AccessLog } from "../log/access.ts";
import { methodLabel, type TrafficStats } from "../stats/traffic.ts";
import { classifyNetworkError, errorCode } from "../net/network-error.ts";
import type { CidrMatcher } from "./cidr.ts";
import type { HeaderFields } from "./fields.ts";
import { toClientHeaders, toUpstreamHeaders, type ResponseHeaderRules } from "./headers.ts";
import { shouldRetry, type TryFailure } from "./retry.ts";
import { ClientFault, ProxyError, errorAnswer, type ErrorAnswer, type ProxyErrorCode } from "./errors.ts";
import { AdmissionGate } from "./gate.ts";

export interface ForwardOptions {
  pool: Pool;
  passive: PassiveSignals;
  traffic: TrafficStats;
  accessLog?: AccessLog;
  trusted: CidrMatcher;
  preserveHost: boolean;
  /** The operator's response header rules, compiled once (headers.ts). */
  responseHeaders?: ResponseHeaderRules;
  retry: {
    attempts: number;
    perTryTimeout: number;
    timeout: number;
    onStatus: number[];
    nonIdempotent: boolean;
  };
  /** Upstream requests in flight at once, over all backends (0: no bound). */
  upstreamConcurrency: number;
}

/** One client request as an engine hands it to the loop. */
export interface ForwardRequest<Body> {
  readonly method: string;
  /** The request target exactly as received (origin-form): no decoding, no "//" folding. */
  readonly target: string;
  /** Changed in place by the header rules. */
  readonly headers: HeaderFields;
  readonly clientIp: string;
  readonly proto: "http" | "https";
  /** What only the engine reads: the body to send upstream, its own client-side state. */
  readonly own: Body;
  /** The body can be sent again (none, or read whole): a retry is possible. */
  readonly replayable: boolean;
  /** Fires when the client goes away. */
  readonly signal: AbortSignal;
}

/** A response head from a backend, the body still to come. */
export interface UpstreamResponse {
  readonly status: number;
  readonly headers: HeaderFields;
  /** Throw the body away and give the connection back (or close it): the try is retried. */
  discard(): void;
}

/** Who broke off a body that was already flowing, and in the log's words what happened. */
export interface BodyFailure {
  by: "client" | "backend";
  detail: string;
}

/** Called exactly once when a response body is done: with the bytes sent and how it failed, if it did. */
export type BodyEnd = (bytes: number, failure?: BodyFailure) => void;

/** The half of an engine below the loop: how a try reaches a backend and the answer reaches the client. */
export interface Wire<Body, Out> {
  /**
   * One try against `backend`: resolve with the response head, or reject with a network error
   * (read by net/network-error.ts). Aborting `signal` gives up on the try and destroys its
   * upstream connection.
   */
  send(backend: Backend, req: ForwardRequest<Body>, signal: AbortSignal): Promise<UpstreamResponse>;
  /**
   * Answer the client with `res` (its headers already prepared). May reject before anything
   * reached the client (a small body read whole failed): the loop then counts a failed try.
   * `end` is called exactly once, when the body is done or broken off.
   */
  respond(req: ForwardRequest<Body>, res: UpstreamResponse, end: BodyEnd): Out | Promise<Out>;
  /** An answer the proxy makes itself (no backend, every try failed). */
  answer(req: ForwardRequest<Body>, a: ErrorAnswer): Out;
  /** The client has gone: nothing will be read. */
  gone(req: ForwardRequest<Body>): Out;
}

export interface Forwarder<Body, Out> {
  forward(req: ForwardRequest<Body>): Promise<Out>;
  /** Count and log a request whose client left before it could be forwarded (mid-body). */
  abandoned(req: ForwardRequest<Body>): Out;
}

/** Why a try's AbortController fired. */
const enum Abort {
  PerTry = 1,
  Deadline = 2,
  Client = 3,
}

/** How one try ended. */
type TryOutcome<Out> =
  | { out: Out }
  | { failure: TryFailure; detail: string; deadline: boolean }
  | { clientGone: true };

export function createForwarder<Body, Out>(opts: ForwardOptions, wire: Wire<Body, Out>): Forwarder<Body, Out> {
  const { pool, passive, traffic, accessLog, retry } = opts;
  // Work done once, not per request.
  const retryOn = new Set(retry.onStatus);
  const gate = new AdmissionGate(opts.upstreamConcurrency);

  const log = (req: ForwardRequest<Body>, time: number, started: number, requestId: string, tried: Backend[], status: number, bytes: number, error?: ProxyErrorCode) => {
    accessLog?.write({
      time, client: req.clientIp, method: req.method, path: req.target, status, bytes,
      durationMs: performance.now() - started,
      backends: tried.map((b) => b.name), attempts: tried.length, requestId, error,
    });
  };

  function abandoned(req: ForwardRequest<Body>): Out {
    traffic.proxyErrors.SY_CLIENT_ABORTED++;
    traffic.record(req.method, 499, 0);
    log(req, Date.now(), performance.now(), req.headers.get("x-request-id") ?? "-", [], 499, 0, "SY_CLIENT_ABORTED");
    return wire.gone(req);
  }

  async function forward(req: ForwardRequest<Body>): Promise<Out> {
    const started = performance.now();
    const time = Date.now();
    const { method, headers } = req;
    const methodKey = methodLabel(method);
    const requestId = headers.get("x-request-id") ?? crypto.randomUUID();
    const tried: Backend[] = [];

    const finish = (status: number, bytes: number, error?: ProxyErrorCode) => log(req, time, started, requestId, tried, status, bytes, error);
    const fail = (code: ProxyErrorCode, detail?: string): Out => {
      traffic.proxyErrors[code]++;
      const a = errorAnswer(new ProxyError(code, detail), requestId);
      traffic.record(method, a.status, performance.now() - started);
      finish(a.status, 0, code);
      return wire.answer(req, a);
    };
    const clientGone = (): Out => {
      // The client broke a rule (a body too large, too slow): answered, but never a backend's fault.
      const reason: unknown = req.signal.reason;
      if (reason instanceof ClientFault) return fail(reason.code, reason.message);
      traffic.proxyErrors.SY_CLIENT_ABORTED++;
      traffic.record(method, 499, performance.now() - started);
      finish(499, 0, "SY_CLIENT_ABORTED");
      return wire.gone(req);
    };

    const rewriteHost = toUpstreamHeaders(headers, { clientIp: req.clientIp, proto: req.proto, requestId }, opts);
    const deadline = started + retry.timeout;

    /**
     * One try against one backend. The in-flight slot, the timer and the client-abort listener
     * are released in the finally, unless the response took them over (then `end` does).
     */
    const attempt = async (backend: Backend): Promise<TryOutcome<Out>> => {
      const lease = backend.acquire();
      backend.stats.requests++;
      const tryStarted = performance.now();
      // One controller per try: fired by the per-try timer, the overall deadline, or the
      // client going away; `why` tells which.
      const controller = new AbortController();
      let why = 0;
      const perTry = Math.min(retry.perTryTimeout, deadline - tryStarted);
      const timer = setTimeout(() => {
        why = perTry < retry.perTryTimeout ? Abort.Deadline : Abort.PerTry;
        controller.abort();
      }, perTry);
      const onClientAbort = () => {
        why = Abort.Client;
        controller.abort();
      };
      req.signal.addEventListener("abort", onClientAbort, { once: true });
      const failed = (e: unknown, stage = ""): TryOutcome<Out> => {
        if (why === Abort.Client || req.signal.aborted) return { clientGone: true };
        const timedOut = why === Abort.PerTry || why === Abort.Deadline;
        const failure: TryFailure = timedOut ? { kind: "timeout" } : { kind: classifyNetworkError(e) };
        const detail = (timedOut ? "timed out waiting for the response head" : describeTry(failure.kind, e)) + stage;
        backend.stats.proxyErrors++;
        if (failure.kind === "connect") passive.connectFailed(backend, detail);
        else passive.failed(backend, detail);
        return { failure, detail, deadline: why === Abort.Deadline };
      };

      let handedOff = false;
      try {
        if (rewriteHost) headers.set("host", backend.url.host);
        let res: UpstreamResponse;
        try {
          res = await wire.send(backend, req, controller.signal);
        } catch (e) {
          return failed(e);
        }
        const status = res.status;
        passive.succeeded(backend, status);
        backend.stats.recordResponse(methodKey, status, performance.now() - tryStarted);

        if (retryOn.has(status) && mayRetry({ kind: "status", status })) {
          res.discard();
          return { failure: { kind: "status", status }, detail: `status ${status}`, deadline: false };
        }
        toClientHeaders(res.headers, requestId, opts);
        let ended = false;
        const end: BodyEnd = (bytes, failure) => {
          if (ended) return;
          ended = true;
          req.signal.removeEventListener("abort", onClientAbort);
          lease.release();
          if (failure?.by === "backend") {
            // The head went out with the backend's status, but the body did not arrive whole:
            // the backend's fault, and it counts against its health (never a client's abort).
            backend.stats.proxyErrors++;
            traffic.proxyErrors.SY_UPSTREAM_TRUNCATED++;
            passive.failed(backend, `${failure.detail} in the response body`);
            finish(status, bytes, "SY_UPSTREAM_TRUNCATED");
          } else if (failure?.by === "client") {
            finish(status, bytes, "SY_CLIENT_ABORTED");
          } else {
            finish(status, bytes);
          }
        };
        let out: Out;
        try {
          const r = wire.respond(req, res, end);
          out = r instanceof Promise ? await r : r;
        } catch (e) {
          // Nothing reached the client yet: a failed try like any other.
          return failed(e, " while reading the body");
        }
        handedOff = !ended;
        traffic.record(method, status, performance.now() - started);
        return { out };
      } finally {
        // From here only idle timeouts apply to the body: a long download or an event stream
        // is never cut by the retry timeouts.
        clearTimeout(timer);
        if (!handedOff) {
          req.signal.removeEventListener("abort", onClientAbort);
          lease.release();
        }
      }
    };

    const mayRetry = (failure: TryFailure) =>
      shouldRetry({
        failure, method, tries: tried.length, maxTries: retry.attempts,
        // A streamed body may be partly read by the failed try, even on a connect failure:
        // only a buffered body (or none) can be sent again.
        replayableBody: req.replayable,
        retryNonIdempotent: retry.nonIdempotent,
        timeLeft: deadline - performance.now(),
      });

    const exclude = new Set<Backend>();
    for (;;) {
      // Wait for an upstream slot before choosing: the choice then sees current load.
      const entered = gate.enter(deadline - performance.now());
      if (entered !== true && !(await entered)) return fail("SY_QUEUE_TIMEOUT", `no upstream slot within ${retry.timeout}ms`);
      let outcome: TryOutcome<Out>;
      try {
        if (req.signal.aborted) return clientGone();
        const backend = pool.pick(exclude);
        if (backend === undefined) return fail("SY_NO_BACKEND");
        if (tried.length > 0) {
          traffic.retries++;
          backend.stats.retries++;
        }
        tried.push(backend);
        exclude.add(backend);
        outcome = await attempt(backend);
      } finally {
        // Held until the head (and a buffered body) is in; a streamed body does not hold it,
        // so long downloads and event streams cannot starve the gate.
        gate.leave();
      }
      if ("out" in outcome) return outcome.out;
      if ("clientGone" in outcome) return clientGone();
      const { failure, detail } = outcome;
      if (outcome.deadline) return fail("SY_UPSTREAM_TIMEOUT", `no response head within ${retry.timeout}ms`);
      if (mayRetry(failure) && pool.availableCount() > 0) continue;
      return fail(failure.kind === "timeout" ? "SY_UPSTREAM_TIMEOUT" : "SY_UPSTREAM_FAILED", detail);
    }
  }

  return { forward, abandoned };
}

/** The log's words for a failed try: "connection failed (ECONNREFUSED)", "connection reset (ECONNRESET)". */
function describeTry(kind: TryFailure["kind"], e: unknown): string {
  return kind === "connect" ? `connection failed (${errorCode(e) ?? "refused"})` : `connection reset (${errorCode(e) ?? "closed"})`;
}
