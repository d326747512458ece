/**
 * The forwarding loop: choose a backend, send the request, decide on failure whether to try
 * another, and hand the response back as a stream. Selection, header rules, the retry decision,
 * passive health and logging each live in their own module; this file only sequences them.
 */
import type { Server } from "bun";
import type { Pool } from "../pool/pool.ts";
import type { Backend } from "../pool/backend.ts";
import type { PassiveSignals } from "../health/passive.ts";
import type { AccessLog } from "../log/access.ts";
import { methodLabel, type TrafficStats } from "../stats/traffic.ts";
import type { CidrMatcher } from "./cidr.ts";
import { toClientHeaders, toUpstreamHeaders } from "./headers.ts";
import { prepareBody, type PreparedBody } from "./body.ts";
import { shouldRetry, type TryFailure } from "./retry.ts";
import { ProxyError, errorResponse, type ProxyErrorCode } from "./errors.ts";
import { AdmissionGate } from "./gate.ts";

export interface ProxyOptions {
  pool: Pool;
  passive: PassiveSignals;
  traffic: TrafficStats;
  accessLog?: AccessLog;
  trusted: CidrMatcher;
  preserveHost: boolean;
  retry: {
    attempts: number;
    perTryTimeout: number;
    timeout: number;
    onStatus: number[];
    nonIdempotent: boolean;
    bufferBody: number;
  };
  /** Upstream requests in flight at once, over all backends (0: no bound). */
  upstreamConcurrency: number;
  /** Response bodies of known length up to this many bytes are read whole (0: always stream). */
  responseBuffer: number;
  /** Client idle timeout in seconds (Bun.serve's idleTimeout). */
  idleTimeoutSec: number;
}

export type ProxyHandler = (req: Request, server: Server<unknown>) => Promise<Response>;

/** fetch error codes meaning the connection was never made, so nothing was sent. */
const CONNECT_CODES = new Set(["ECONNREFUSED", "ConnectionRefused", "ENOTFOUND", "FailedToOpenSocket", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);

/** Why a try's AbortController fired. */
const enum Abort {
  PerTry = 1,
  Deadline = 2,
  Client = 3,
}

/** Statuses whose responses never carry a body (RFC 9110 §6.4.1; HEAD per §9.3.2). */
function bodiless(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** How one try ended when it produced no response for the client. */
type TryOutcome =
  | { response: Response }
  | { failure: TryFailure; detail: string; deadline: boolean }
  | { clientGone: true };

export function createProxyHandler(opts: ProxyOptions): ProxyHandler {
  const { pool, passive, traffic, accessLog, retry } = opts;
  // Work done once, not per request.
  const retryOn = new Set(retry.onStatus);
  const gate = new AdmissionGate(opts.upstreamConcurrency);
  // Bun.serve's idle timer runs while the handler awaits the backend (field notes). Only when a
  // backend may legitimately take longer than the idle timeout must a request's timer be raised.
  const waitSec = Math.ceil(retry.timeout / 1000) + 1;
  const raiseIdle = waitSec > opts.idleTimeoutSec;
  const waitTimeout = waitSec > 255 ? 0 : waitSec;

  return async function handle(req, server) {
    const started = performance.now();
    const time = Date.now();
    const url = req.url;
    // The request target exactly as received: no decoding of %2F, no collapsing of "//".
    // Bun gives an absolute URL, or the bare target when the request had no Host (HTTP/1.0).
    const slash = url.charCodeAt(0) === 47 ? 0 : url.indexOf("/", url.indexOf("//") + 2);
    const target = slash === -1 ? "/" : url.slice(slash);
    const method = req.method;
    const methodKey = methodLabel(method);
    const clientIp = normalizeIp(server.requestIP(req)?.address ?? "");
    const headers = req.headers;
    const requestId = headers.get("x-request-id") ?? crypto.randomUUID();
    const tried: Backend[] = [];

    const finish = (status: number, bytes: number, error?: ProxyErrorCode) => {
      accessLog?.write({
        time, client: clientIp, method, path: target, status, bytes,
        durationMs: performance.now() - started,
        backends: tried.map((b) => b.name), attempts: tried.length, requestId, error,
      });
    };
    const fail = (code: ProxyErrorCode, detail?: string): Response => {
      traffic.proxyErrors[code]++;
      const res = errorResponse(new ProxyError(code, detail), requestId);
      traffic.record(method, res.status, performance.now() - started);
      finish(res.status, 0, code);
      return res;
    };

    const clientGone = (): Response => {
      traffic.proxyErrors.SY_CLIENT_ABORTED++;
      traffic.record(method, 499, performance.now() - started);
      finish(499, 0, "SY_CLIENT_ABORTED");
      // Nobody reads this: the client has gone.
      return new Response(null, { status: 499 });
    };

    if (raiseIdle) server.timeout(req, waitTimeout);
    const rewriteHost = toUpstreamHeaders(headers, { clientIp, proto: "http", requestId }, opts);
    let prepared: PreparedBody;
    try {
      prepared = await prepareBody(req, retry.bufferBody);
    } catch {
      // The client went away (or broke the framing) while sending its body.
      return clientGone();
    }
    const deadline = started + retry.timeout;

    /**
     * One try against one backend. The in-flight slot, the timer and the client-abort listener
     * are released in the finally, unless a streamed response takes them over.
     */
    const attempt = async (backend: Backend): Promise<TryOutcome> => {
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
      const failed = (e: unknown, stage = ""): TryOutcome => {
        if (why === Abort.Client || req.signal.aborted) return { clientGone: true };
        const failure = classify(e, why);
        const detail = describe(failure, e) + stage;
        backend.stats.proxyErrors++;
        if (failure.kind === "connect") passive.connectFailed(backend, detail);
        else passive.failed(backend, detail);
        return { failure, detail, deadline: why === Abort.Deadline };
      };

      let handedOff = false;
      try {
        if (rewriteHost) headers.set("host", backend.url.host);
        let res: Response;
        try {
          res = await fetch(backend.origin + backend.basePath + target, {
            method,
            headers,
            body: prepared.body,
            signal: controller.signal,
            redirect: "manual",
            decompress: false,
            duplex: "half",
            // The response-head wait is bounded by our timers and the body by the client's
            // idle timeout; fetch's own 5-minute idle timer would cut long streams.
            timeout: false,
          } as RequestInit);
        } catch (e) {
          return failed(e);
        }
        const status = res.status;
        passive.succeeded(backend, status);
        backend.stats.recordResponse(methodKey, status, performance.now() - tryStarted);

        if (retryOn.has(status) && mayRetry({ kind: "status", status })) {
          void res.body?.cancel().catch(() => {});
          return { failure: { kind: "status", status }, detail: `status ${status}`, deadline: false };
        }
        toClientHeaders(res.headers, requestId);
        const init = { status, statusText: res.statusText, headers: res.headers };
        const respond = (body: BodyInit | null, bytes: number): TryOutcome => {
          traffic.record(method, status, performance.now() - started);
          finish(status, bytes);
          return { response: new Response(body, init) };
        };
        if (res.body === null || bodiless(method, status)) {
          void res.body?.cancel().catch(() => {});
          return respond(null, 0);
        }
        const length = res.headers.get("content-length");
        if (length !== null && Number(length) <= opts.responseBuffer) {
          // A small body of known length is read whole, as nginx's proxy buffers do: it has
          // usually arrived with the head, and reading it here lets the slot be released and
          // the bytes counted without a JS stream per response, which halves throughput.
          // Nothing has reached the client yet, so a failure here can still be retried.
          let body: ArrayBuffer;
          try {
            body = await res.arrayBuffer();
          } catch (e) {
            return failed(e, " while reading the body");
          }
          return respond(body, body.byteLength);
        }
        // From here only the idle timeout between bytes applies: a long download or an event
        // stream is never cut by the retry timeouts.
        clearTimeout(timer);
        if (raiseIdle) server.timeout(req, opts.idleTimeoutSec);
        handedOff = true;
        traffic.record(method, status, performance.now() - started);
        return {
          response: new Response(
            track(res.body, (bytes) => {
              req.signal.removeEventListener("abort", onClientAbort);
              lease.release();
              finish(status, bytes);
            }),
            init,
          ),
        };
      } finally {
        if (!handedOff) {
          clearTimeout(timer);
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
        replayableBody: prepared.replayable,
        retryNonIdempotent: retry.nonIdempotent,
        timeLeft: deadline - performance.now(),
      });

    const exclude = new Set<Backend>();
    for (;;) {
      // Wait for an upstream slot before choosing: the choice then sees current load.
      const entered = gate.enter(deadline - performance.now());
      if (entered !== true && !(await entered)) return fail("SY_QUEUE_TIMEOUT", `no upstream slot within ${retry.timeout}ms`);
      let outcome: TryOutcome;
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
      if ("response" in outcome) return outcome.response;
      if ("clientGone" in outcome) return clientGone();
      const { failure, detail } = outcome;
      if (outcome.deadline) return fail("SY_UPSTREAM_TIMEOUT", `no response head within ${retry.timeout}ms`);
      if (mayRetry(failure) && pool.availableCount() > 0) continue;
      return fail(failure.kind === "timeout" ? "SY_UPSTREAM_TIMEOUT" : "SY_UPSTREAM_FAILED", detail);
    }
  };
}

/**
 * Pass the body through while counting bytes, and call `done` once when it ends, fails or the
 * client cancels: the caller releases the backend's in-flight slot there, so the count covers
 * the whole exchange, not just the head.
 */
function track(body: ReadableStream<Uint8Array>, done: (bytes: number) => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let finished = false;
  const end = () => {
    if (finished) return;
    finished = true;
    done(bytes);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done: eof, value } = await reader.read();
          if (eof) {
            controller.close();
            end();
          } else {
            bytes += value.byteLength;
            controller.enqueue(value);
          }
        } catch (e) {
          end();
          controller.error(e);
        }
      },
      cancel(reason) {
        end();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

function classify(e: unknown, why: number): TryFailure {
  if (why === Abort.PerTry || why === Abort.Deadline) return { kind: "timeout" };
  const code = (e as { code?: string }).code;
  if (code !== undefined && CONNECT_CODES.has(code)) return { kind: "connect" };
  return { kind: "reset" };
}

function describe(f: TryFailure, e?: unknown): string {
  switch (f.kind) {
    case "connect":
      return `connection failed (${(e as { code?: string })?.code ?? "refused"})`;
    case "reset":
      return `connection reset (${(e as { code?: string })?.code ?? "closed"})`;
    case "timeout":
      return "timed out waiting for the response head";
    case "status":
      return `status ${f.status}`;
  }
}

/** "::ffff:127.0.0.1" → "127.0.0.1": IPv4 clients on a dual-stack socket. */
function normalizeIp(ip: string): string {
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}
