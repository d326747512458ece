/**
 * The socket engine's upstream half of the wire (forward/forward.ts, UpstreamWire): one try's
 * request, built from the client's request (an Exchange, or an HTTP/2 stream: request.ts) and written on a pooled upstream connection
 * (upstream.ts), which reports the response head or the failure straight to the try. Nothing
 * here writes to the client: answers go through the downstream half, in client.ts.
 */
import type { Backend } from "../../pool/backend.ts";
import type { ForwardRequest, TryReceiver, UpstreamWire } from "../../forward/forward.ts";
import type { Cancel } from "../../forward/cancel.ts";
import { isIdempotent } from "../../forward/retry.ts";
import { requestUpgrade } from "../../http/upgrade.ts";
import type { SocketRequest } from "./request.ts";
import { upstreamTargetOf } from "../../forward/router.ts";
import { headWriter } from "./bytes.ts";
import type { UpstreamConn, UpstreamPool } from "./upstream.ts";

/** Tries sent on `pool`'s connections: an idle one if the backend has one, else a new dial. */
export function upstreamWire(pool: UpstreamPool): UpstreamWire<SocketRequest> {
  return {
    send(backend, req, cancel, t) {
      // A streamed body reports its sending (timeouts.send), so a slow client's upload never
      // runs the backend's head timers; a whole one goes in one write and needs none.
      const streamed = req.own.body !== undefined && !req.replayable;
      if (streamed) t.sendWaiting();
      // pools.*.proxyProtocol: a connection is this client's alone (UpstreamPool.take).
      const proxied = backend.upstream?.proxyProtocol !== undefined ? req.own.proxied() : undefined;
      const idle = pool.take(backend, proxied?.key);
      if (idle !== undefined) {
        t.connected?.(true);
        return issue(idle, backend, req, cancel, t, streamed, true);
      }
      pool.dialFor(backend, cancel, t, (c) => {
        t.connected?.(false);
        issue(c, backend, req, cancel, t, streamed, false);
      }, proxied);
    },
    wholeBody(req) {
      const body = req.own.body;
      if (body === undefined) return null;
      return req.replayable ? body.bytes() : undefined;
    },
  };
}

/**
 * One try's request on connection `c`: the head is built now, in the shared head buffer
 * (bytes.ts), and written at once. The connection reports the response to `t`.
 */
function issue(c: UpstreamConn, backend: Backend, req: ForwardRequest<SocketRequest>, cancel: Cancel, t: TryReceiver, streamed: boolean, reused: boolean): void {
  const ex = req.own;
  const stream = streamed ? ex.body : undefined;
  const head = requestHead(backend, req, stream !== undefined);
  if (stream !== undefined) return c.request(head, stream, req.method, cancel, ex, t, false, t);
  // On a reused connection the backend may have closed as we sent: such a request goes
  // once more on a fresh one when that cannot repeat an action (idempotent, body held).
  c.request(head, undefined, req.method, cancel, ex, t, reused && req.replayable && isIdempotent(req.method));
}

/**
 * The request head for one try: request line, the fields after the header rules, and the
 * framing for this hop. A body read whole goes in the same write with a Content-Length; a
 * streamed one keeps its Content-Length or goes chunked. The bytes are the shared head
 * buffer's: valid until the next head is built.
 */
function requestHead(backend: Backend, req: ForwardRequest<SocketRequest>, streamed: boolean): Uint8Array {
  const ex = req.own;
  const h = ex.headers;
  const body = ex.body;
  let whole: Uint8Array | undefined;
  let chunked = false;
  if (body !== undefined) {
    if (!streamed) {
      whole = body.bytes();
      h.set("content-length", String(whole.length));
    } else if (body.chunked) {
      chunked = true;
      h.set("transfer-encoding", "chunked");
    }
  }
  // A WebSocket handshake asks this backend for the upgrade on this hop (http/upgrade.ts).
  if (ex.upgrade !== undefined) requestUpgrade(h);
  const w = headWriter.begin().text(req.method).text(" ").text(backend.basePath).text(upstreamTargetOf(ex)).text(" HTTP/1.1\r\n").fields(h);
  if (chunked) h.delete("transfer-encoding");
  return w.done(whole);
}
