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
import type { HeldResponse, InterimSink } from "./upstream.ts";
import type { ProxiedClient } from "./client.ts";

/**
 * Where the answer to one request is (an Exchange's or an H2Stream's `answering`). Waiting ->
 * Started -> Writing -> Done, or Started -> Done (an answer of ours) or Gone; changed only by
 * the request's own methods. Reading the request is apart from this (its `parsed`): a backend
 * may answer before the request's body is all in.
 */
export const enum Answering {
  /** Not begun: waiting for its turn (an HTTP/1.1 pipeline), or for enough of its body. */
  Waiting = 0,
  /** Forwarding has begun, or a fault of the request is being answered: nothing written yet. */
  Started = 1,
  /** The answer's head is written (or a 101 made the connection a tunnel); its body is going out. */
  Writing = 2,
  /** The answer is complete, or broken off after its head: nothing more is written for it. */
  Done = 3,
  /** The client went away (or reset the stream) before anything was written: nothing ever is. */
  Gone = 4,
}

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
  respond(res: HeldResponse, end: BodyEnd): void;
  /** An answer the proxy makes itself. */
  answer(a: ErrorAnswer): void;
  /** The client went away: nothing to write. */
  gone(): void;
  /** A fault of ours broke the loop: answer 500 if nothing was written yet, else cut. Must not throw. */
  internalError(e: unknown): void;
}

/** The socket engine's downstream half of the wire: each request answers through its own client side. */
export const socketDownstream: DownstreamWire<SocketRequest, void> = {
  // Both upstream wires (HTTP/1.1 and HTTP/2) answer with a HeldResponse (upstream.ts).
  respond: (req, res, end) => req.own.respond(res as HeldResponse, end),
  answer: (req, a) => req.own.answer(a),
  gone: (req) => req.own.gone(),
  internalError: (req, e) => req.own.internalError(e),
};

export type SocketForwardRequest = ForwardRequest<SocketRequest>;
