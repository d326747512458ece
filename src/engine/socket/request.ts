/**
 * What the socket engine's upstream wire (upstream-wire.ts, upstream.ts) needs of a client's
 * request, whichever client side made it: an HTTP/1.1 Exchange (client.ts) or an HTTP/2 stream
 * (engine/h2/stream.ts). Both are the ForwardRequest's `own` and answer through their own
 * methods, so one forwarding loop per listener serves both protocols (one set of limits and
 * figures), and the downstream wire below only dispatches.
 */
import type { BodyEnd, DownstreamWire, ForwardRequest } from "../../forward/forward.ts";
import type { Routed } from "../../forward/router.ts";
import type { ErrorAnswer } from "../../errors.ts";
import type { FieldList } from "../../http/fields.ts";
import type { RequestBody } from "./request-body.ts";
import type { InterimSink, SocketResponse } from "./upstream.ts";
import type { ProxiedClient } from "./client.ts";

export interface SocketRequest extends InterimSink {
  readonly target: string;
  readonly routed: Routed;
  readonly headers: FieldList;
  /** The body to send upstream (undefined: none). */
  readonly body: RequestBody | undefined;
  /** A WebSocket handshake to pass on (http/upgrade.ts); HTTP/1.1 only. */
  readonly upgrade: string | undefined;
  /** The client as a PROXY header to a backend names it (pools.*.proxyProtocol). */
  proxied(): ProxiedClient;
  /** Write the backend's response head, then its body as it comes (DownstreamWire.respond). */
  respond(res: SocketResponse, end: BodyEnd): void;
  /** An answer the proxy makes itself. */
  answer(a: ErrorAnswer): void;
  /** The client went away: nothing to write. */
  gone(): void;
  /** A fault of ours broke the loop: answer 500 if nothing was written yet, else cut. Must not throw. */
  internalError(e: unknown): void;
}

/** The socket engine's downstream half of the wire: each request answers through its own client side. */
export const socketDownstream: DownstreamWire<SocketRequest, void> = {
  respond: (req, res, end) => req.own.respond(res as SocketResponse, end),
  answer: (req, a) => req.own.answer(a),
  gone: (req) => req.own.gone(),
  internalError: (req, e) => req.own.internalError(e),
};

export type SocketForwardRequest = ForwardRequest<SocketRequest>;
