/**
 * The HTTP/2 upstream half of the socket engine's wire (forward/forward.ts, UpstreamWire): each
 * try is a stream on a session of its backend (try.ts, session-pool.ts). The request is the
 * socket engine's own (an Exchange or an H2Stream, socket/request.ts, and its RequestBody), whichever client side read it.
 */
import type { UpstreamWire } from "../../forward/forward.ts";
import type { SocketRequest } from "../socket/request.ts";
import type { H2SessionPool } from "./session-pool.ts";
import { H2Try } from "./try.ts";

export function h2Wire(pool: H2SessionPool): UpstreamWire<SocketRequest> {
  return {
    send(backend, req, cancel, t) {
      // A streamed body reports its sending (timeouts.send), as on the HTTP/1.1 wire.
      const streamed = req.own.body !== undefined && !req.replayable;
      if (streamed) t.sendWaiting();
      new H2Try(pool, backend, req, cancel, t, streamed).start();
    },
    wholeBody(req) {
      const body = req.own.body;
      if (body === undefined) return null;
      return req.replayable ? body.bytes() : undefined;
    },
  };
}
