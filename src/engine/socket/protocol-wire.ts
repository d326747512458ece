/**
 * The socket engine's upstream wire as the forwarding loop sees it: each try goes out on the
 * wire of its backend's `protocol`, HTTP/1.1 (upstream-wire.ts) or HTTP/2 (engine/h2/), so one
 * pool may mix them and a reload may change a backend's.
 */
import type { UpstreamWire } from "../../forward/forward.ts";

export function protocolWire<Body>(http1: UpstreamWire<Body>, http2: UpstreamWire<Body>): UpstreamWire<Body> {
  return {
    send(backend, req, cancel, t) {
      (backend.protocol === "http1" ? http1 : http2).send(backend, req, cancel, t);
    },
    // The body is the engine's own either way.
    wholeBody: (req) => http1.wholeBody(req),
  };
}
