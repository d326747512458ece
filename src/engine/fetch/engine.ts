/**
 * The fetch engine: Bun.serve (behind a Hono catch-all) reads the request, Bun's fetch sends it
 * upstream, and a Response carries the answer back. Only the wire lives here; every decision
 * above it is the shared loop in forward/forward.ts.
 *
 * Defects of Bun 1.4.5 this engine cannot hide (docs/forwarding.md, "What the fetch engine changes"): a pipelining client
 * loses its connection (oven-sh/bun PR #38128), fetch adds `User-Agent` and `Accept` to requests
 * that had none, Bun.serve answers 400 to a chunked body with trailers, joins repeated response
 * fields into one line and discards the body of a GET (refused here: engine/fetch/checks.ts). fetch
 * folds a target's leading `//`: such targets go through engine/fetch/raw-target.ts.
 */
import http from "node:http";
import type { Server } from "bun";
import type { Backend } from "../../pool/backend.ts";
import { createForwarder, type BodyEnd, type ForwardOptions, type ForwardRequest, type RequestDetails, type SendProgress, type UpstreamResponse, type UpstreamWire, type DownstreamWire } from "../../forward/forward.ts";
import { prepareBody, type PreparedBody, type StreamedBody } from "./body.ts";
import { Cancel } from "../../forward/cancel.ts";
import { ClientFault, errorResponse, messageFor } from "../../errors.ts";
import { RoutedKind, upstreamTargetOf } from "../../forward/router.ts";
import { plainAddress } from "../../net/cidr.ts";
import { checkRequest } from "./checks.ts";
import { foldedByFetch, sendRawTarget } from "./raw-target.ts";
import { isWebSocketUpgrade } from "../../http/upgrade.ts";
import { dialWebSocket, WebSocketAnswer } from "./websocket.ts";

export interface FetchEngineOptions extends ForwardOptions {
  /** Response bodies of known length up to this many bytes are read whole (0: always stream). */
  responseBuffer: number;
  /** Client idle timeout in seconds (Bun.serve's idleTimeout). */
  idleTimeoutSec: number;
  /**
   * Read on every answer: once the listener is shutting down, answers carry Connection: close
   * so that keep-alive clients send nothing more on a connection about to close.
   */
  lifecycle?: { readonly draining: boolean };
  /** "https" when the listener terminates TLS (X-Forwarded-Proto, the sticky cookie's Secure). */
  proto?: "http" | "https";
  /**
   * limits.maxHeaderSize: Bun.serve answers 431 to a longer request head. Bun keeps this limit
   * for the whole process (node:http's maxHeaderSize, 16 KB unless set), so the last handler
   * built sets it for every Bun.serve listener of the process, the admin API's too.
   */
  maxHeaderSize?: number;
}

/**
 * Start Bun's HTTP client before the listener opens. fetch() runs on a client thread whose
 * event loop is created by the first fetch of the process; if no file descriptor is left at
 * that moment (a burst of clients has taken them all), Bun 1.4.5 exits the whole process
 * ("bun ran out of file descriptors (ProcessFdQuotaExceeded)": the loop's eventfd(2) failed,
 * oven-sh/bun PR #39641). Measured under `ulimit -n 64`: a fetch with every descriptor taken
 * killed the process unless an earlier fetch had run; after one, it rejected with EMFILE,
 * which the loop counts as the proxy's own error. So the first fetch is made here, at start-up,
 * to port 0, where nothing can listen: refused at once, nothing sent anywhere.
 */
export async function startFetchClient(): Promise<void> {
  await fetch("http://127.0.0.1:0/", { redirect: "manual" }).then(
    (r) => r.body?.cancel(),
    () => {},
  );
}

export type FetchHandler = (req: Request, server: Server<unknown>) => Promise<Response>;

/** A request the proxy answers itself: its body, if any, is not read. */
const NO_BODY_READ: PreparedBody = { bytes: null, stream: undefined };

/** The fetch engine's own part of a request. */
interface FetchOwn {
  request: Request;
  server: Server<unknown>;
  /** The whole body (replayable), or none. */
  bytes: PreparedBody["bytes"];
  /** A body that streams from the client: sent once. */
  stream: StreamedBody | undefined;
  /** A WebSocket handshake (http/upgrade.ts): dialled and answered by websocket.ts. */
  upgrade: boolean;
  /** Its idle timeout was raised for the wait on the backend: put back once the head is out. */
  raisedIdle: boolean;
}

interface FetchResponse extends UpstreamResponse {
  readonly headers: Headers;
  readonly res: Response;
}

/** Statuses whose responses never carry a body (RFC 9110 §6.4.1; HEAD per §9.3.2). */
function bodiless(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

export function createFetchHandler(opts: FetchEngineOptions): FetchHandler {
  // Bun.serve's idle timer runs while the handler awaits the backend (Bun 1.4.5: a 12 s upstream
  // answer reset the client at the default idleTimeout of 10 s). Only when a
  // backend may legitimately take longer than the idle timeout must a request's timer be raised.
  // The route's retry.timeout decides, per request (forward/router.ts).
  const idleTimeoutSec = opts.idleTimeoutSec;
  const lifecycle = opts.lifecycle ?? { draining: false };
  // Settable in Bun though typed read-only (node's own is fixed at start-up by a flag).
  if (opts.maxHeaderSize !== undefined) (http as { maxHeaderSize: number }).maxHeaderSize = opts.maxHeaderSize;

  /** Reading the client's body failed: tell the loop whose fault it is before fetch fails. */
  const bodyFailed = (req: ForwardRequest<FetchOwn>, e: unknown) => req.cancel.abort(bodyFault(e, req.routed.maxBodySize));

  const proto = opts.proto ?? "http";
  /** One try: the response head, or a rejection the loop reads as a network error. */
  async function fetchTry(backend: Backend, req: ForwardRequest<FetchOwn>, cancel: Cancel, progress: SendProgress): Promise<FetchResponse | WebSocketAnswer> {
    const target = upstreamTargetOf(req);
    if (req.own.upgrade) return dialWebSocket(backend, target, req.headers as Headers, cancel, backend.tls);
    // fetch takes an AbortSignal: bridge the try's cancel to one (this engine's cost, not the loop's).
    const controller = new AbortController();
    const signal = controller.signal;
    if (cancel.aborted) controller.abort();
    else cancel.on({ onCancel: () => controller.abort() });
    const path = backend.basePath + target;
    const body = req.own.stream?.toStream({ clientFailed: (e) => bodyFailed(req, e), progress }) ?? req.own.bytes;
    const res = foldedByFetch(path)
      ? await sendRawTarget(backend.origin, path, { method: req.method, headers: req.headers as Headers, body, signal, tls: backend.tls })
      : await fetch(backend.origin + path, {
          method: req.method,
          headers: req.headers as Headers,
          body,
          signal,
          redirect: "manual",
          decompress: false,
          duplex: "half",
          // The response-head wait is bounded by our timers and the body by the client's idle
          // timeout; fetch's own 5-minute idle timer would cut long streams.
          timeout: false,
          // https:// backends: their CA, server name, verification (tls/upstream.ts).
          tls: backend.tls,
        } as RequestInit);
    return {
      status: res.status,
      headers: res.headers,
      res,
      discard: () => void res.body?.cancel().catch(() => {}),
    };
  }

  // The wire's two halves: a try is a fetch() to the backend; the answer is a Response for Bun.serve.
  const upstream: UpstreamWire<FetchOwn> = {
    send(backend, req, cancel, t) {
      fetchTry(backend, req, cancel, t).then(
        (res) => t.headReceived(res),
        (e) => t.tryFailed(e),
      );
    },
    wholeBody: (req) => (req.replayable ? req.own.bytes : undefined),
  };

  const downstream: DownstreamWire<FetchOwn, Response> = {
    async respond(req, up, end) {
      if (up instanceof WebSocketAnswer) return up.respond(req.own.request, req.own.server, end);
      const { res } = up as FetchResponse;
      if (lifecycle.draining) res.headers.set("connection", "close");
      const init = { status: res.status, statusText: res.statusText, headers: res.headers };
      if (res.body === null || bodiless(req.method, res.status)) {
        void res.body?.cancel().catch(() => {});
        end.bodyEnded(0);
        // Bun.serve gives a bodiless answer "content-length: 0" unless it has a length or is
        // chunked. On a HEAD answer that claims a GET would get 0 bytes (RFC 9110 §8.6 allows
        // only the true length there): without a length from the backend, say instead what a
        // GET through this engine gets when the length is unknown, chunked, as RFC 9112 §6.1
        // allows in a HEAD answer.
        if (req.method === "HEAD" && !res.headers.has("content-length")) res.headers.set("transfer-encoding", "chunked");
        return new Response(null, init);
      }
      const length = res.headers.get("content-length");
      if (length !== null && Number(length) <= opts.responseBuffer) {
        // A small body of known length is read whole, as nginx's proxy buffers do: it has
        // usually arrived with the head, and reading it here lets the slot be released and
        // the bytes counted without a JS stream per response, which halves throughput.
        // Nothing has reached the client yet, so a failure here can still be retried.
        const body = await res.arrayBuffer();
        end.bodyEnded(body.byteLength);
        // Bun.serve labels a byte body that has no Content-Type "application/octet-stream", a
        // type the backend never said: RFC 9110 §8.3 leaves the recipient of an unlabelled
        // body free to assume that type or to examine the data, a choice the label takes
        // away. A finished stream Bun.serve leaves unlabelled, and still sends with its
        // Content-Length.
        return new Response(res.headers.has("content-type") ? body : finished(body), init);
      }
      if (req.own.raisedIdle) req.own.server.timeout(req.own.request, idleTimeoutSec);
      return new Response(track(res.body, end), init);
    },

    answer(req, a) {
      const res = new Response(a.body, { status: a.status, headers: a.headers });
      // A body left unread (a client fault, or an answer made without reading it) leaves
      // nothing on the connection to trust; and a listener shutting down takes no more requests on it.
      const unread = req.routed.kind === RoutedKind.Answer && req.own.request.body !== null;
      if (lifecycle.draining || unread || req.cancel.reason instanceof ClientFault) res.headers.set("connection", "close");
      req.own.stream?.discard();
      return res;
    },
    // Nobody reads this: the client has gone.
    gone: () => new Response(null, { status: 499 }),
  };
  const { forward, abandoned, route } = createForwarder(opts, upstream, downstream);

  return async function handle(request, server) {
    const url = request.url;
    // The request target exactly as received: no decoding of %2F, no collapsing of "//".
    // Bun gives an absolute URL, or the bare target when the request had no Host (HTTP/1.0).
    const slash = url.charCodeAt(0) === 47 ? 0 : url.indexOf("/", url.indexOf("//") + 2);
    const target = slash === -1 ? "/" : url.slice(slash);
    const clientIp = plainAddress(server.requestIP(request)?.address ?? "");
    const refusal = checkRequest(request.method, request.headers);
    if (refusal !== undefined) return errorResponse(refusal.code, refusal.detail, { headers: { connection: "close", ...refusal.headers } });
    const upgrade = isWebSocketUpgrade(request.method, request.headers);
    const headers = request.headers;
    // Routed before the body is read: its route may have its own limits (forward/router.ts).
    const routed = route({ method: request.method, target, host: headers.get("host") ?? undefined, headers, clientIp });
    const declared = headers.get("content-length");
    if (declared !== null && Number(declared) > routed.maxBodySize) {
      const detail = `Content-Length ${declared} over ${routed.maxBodySize}`;
      return errorResponse("SY_BODY_TOO_LARGE", messageFor("SY_BODY_TOO_LARGE", detail), { headers: { connection: "close" } });
    }
    const cancel = new Cancel();
    let prepared: PreparedBody | undefined;
    if (routed.kind === RoutedKind.Answer) {
      // Answered by the proxy (a guard's refusal, a redirect, a fixed answer, no route): at once,
      // without reading a body; downstream.answer closes the connection when one was coming.
      prepared = NO_BODY_READ;
    } else {
      try {
        prepared = await prepareBody(request, routed.bufferBody, routed.maxBodySize);
      } catch (e) {
        // The client went away, or broke a rule, while sending its body.
        cancel.abort(bodyFault(e, routed.maxBodySize));
      }
    }
    // Raised for the wait on the backend only: while the client sends what is read before the
    // first try, the listener's own idle timeout bounds a client that dribbles it. Bun.serve's
    // idle timer runs while the handler awaits the backend (Bun 1.4.5: a 12 s upstream answer
    // reset the client at the default idleTimeout of 10 s).
    const waitSec = routed.kind === RoutedKind.Forward ? Math.ceil(routed.dest.retry.timeout / 1000) + 1 : 0;
    const raisedIdle = waitSec > idleTimeoutSec;
    if (raisedIdle) server.timeout(request, waitSec > 255 ? 0 : waitSec);
    const signal = request.signal;
    if (signal.aborted) cancel.abort();
    else if (!cancel.aborted) signal.addEventListener("abort", () => cancel.abort(), { once: true });
    const req: ForwardRequest<FetchOwn> = {
      // A WebSocket handshake's fields go through the header rules as a copy: server.upgrade
      // reads the request's own Upgrade and Connection fields when the backend has switched.
      method: request.method, target, routed, headers: upgrade ? new Headers(request.headers) : request.headers, clientIp, proto,
      own: { request, server, bytes: prepared?.bytes ?? null, stream: prepared?.stream, upgrade, raisedIdle },
      replayable: prepared?.stream === undefined,
      cancel,
      details: fetchDetails,
    };
    return prepared === undefined ? abandoned(req) : forward(req);
  };
}

/**
 * For the access log (ForwardRequest.details). Bun.serve tells neither the HTTP version nor the
 * connection's TLS: "HTTP/1.1" and "-". A body that streamed is counted by its Content-Length.
 */
function fetchDetails(this: ForwardRequest<FetchOwn>): RequestDetails {
  const b = this.own.bytes;
  const bytesIn = b !== null ? b.byteLength : Number(this.headers.get("content-length") ?? 0) || 0;
  return { protocol: "HTTP/1.1", bytesIn };
}

/**
 * Why reading a client's body failed. Over limits.maxBodySize Bun.serve has already answered
 * 413 and closed (it checks chunked bodies as they arrive), and the read fails with this
 * message: a ClientFault, so the loop answers 413 and the backend, whose stream is cut at
 * once, is not blamed. Anything else is the client leaving or breaking the chunked framing
 * (Bun.serve answers 400 itself): a plain abort, logged as 499, never a backend's fault.
 */
function bodyFault(e: unknown, maxBodySize: number): ClientFault | undefined {
  const message = e instanceof Error ? e.message : "";
  return message.includes("maxRequestBodySize") ? new ClientFault("SY_BODY_TOO_LARGE", `body over ${maxBodySize} bytes`) : undefined;
}

/**
 * Pass the body through while counting bytes, and call `end` once when it ends, fails or the
 * client cancels: the loop releases the backend's in-flight slot there, so the count covers
 * the whole exchange, not just the head. A read that fails is the backend's doing (a reset or
 * a body shorter than its Content-Length); a cancel is the client's.
 */
function track(body: ReadableStream<Uint8Array>, end: BodyEnd): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (e) {
          end.bodyEnded(bytes, { by: "backend", detail: `connection reset (${(e as { code?: string })?.code ?? "closed"})` });
          controller.error(e);
          return;
        }
        if (chunk.done) {
          controller.close();
          end.bodyEnded(bytes);
        } else {
          bytes += chunk.value.byteLength;
          controller.enqueue(chunk.value);
        }
      },
      cancel(reason) {
        end.bodyEnded(bytes, { by: "client", detail: "client closed the connection" });
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** A stream already holding all of `body`, and closed. */
function finished(body: ArrayBuffer): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (body.byteLength > 0) controller.enqueue(new Uint8Array(body));
      controller.close();
    },
  });
}


