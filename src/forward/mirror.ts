/**
 * Route `mirror`: a copy of a share of a route's requests goes to another pool, and its answer
 * is thrown away (Envoy's request mirroring, nginx's `mirror`). The copy must never delay or
 * fail the client's request, so:
 * - it is sent after the client's request has its first try under way, from the same head,
 *   with the body only when the request's body was read whole (retry.bufferBody); a streamed
 *   body is never held back for a copy, and such requests are mirrored without their body
 *   only when they have none;
 * - copies in flight per route are bounded (`MAX_IN_FLIGHT`); past it a copy is dropped and
 *   counted, never queued;
 * - each copy has its own timeout, and its failures count against the mirror pool's backend
 *   (its passive health), never against the client's request.
 *
 * Copies go out with Bun's fetch whichever engine serves the client: the copy is the shadow
 * pool's only traffic, off the client's path, and needs no connection pool of its own.
 */
import type { HeaderFields } from "../http/fields.ts";
import type { MirrorRequest, MirrorSink, PoolTarget } from "./router.ts";
import { methodLabel } from "../stats/traffic.ts";

/** Copies in flight at once, per mirroring route. */
export const MAX_IN_FLIGHT = 64;

export class Mirror implements MirrorSink {
  private inFlight = 0;
  /** Copies not sent: the bound was reached, or the mirror pool had no backend. */
  dropped = 0;
  sent = 0;

  constructor(
    private target: PoolTarget,
    private readonly timeoutMs: number,
  ) {}

  /** A reload rebuilt the pool's target (its sticky and hash settings): copies go through the new one. */
  retarget(target: PoolTarget): void {
    this.target = target;
  }

  /** Send a copy of `req` (the route table has drawn route.mirror.percent for it). */
  send(req: MirrorRequest): void {
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.dropped++;
      return;
    }
    const { pool, passive } = this.target;
    const backend = pool.pick();
    if (backend === undefined) {
      this.dropped++;
      return;
    }
    const lease = backend.acquire();
    backend.stats.countRequest();
    this.inFlight++;
    this.sent++;
    const started = performance.now();
    const headers = copyHeaders(req.headers);
    // The copy is not the client's request: its backend sees its own Host unless the client's is kept.
    fetch(backend.origin + backend.basePath + req.target, {
      method: req.method, headers, body: req.body as Uint8Array<ArrayBuffer> | null, redirect: "manual",
      signal: AbortSignal.timeout(this.timeoutMs),
      ...(backend.tls !== undefined ? { tls: backend.tls } : {}),
    }).then(
      async (res) => {
        await res.body?.cancel().catch(() => {});
        backend.stats.countResponse(methodLabel(req.method), res.status, performance.now() - started);
        if (res.status >= 500) passive.failed(backend, `mirror: status ${res.status}`);
        else passive.succeeded(backend, res.status);
      },
      (e: Error) => {
        backend.stats.countProxyError();
        passive.failed(backend, `mirror: ${e.name === "TimeoutError" ? "timed out" : e.message}`);
      },
    ).finally(() => {
      lease.release();
      this.inFlight--;
    });
  }

  get pending(): number {
    return this.inFlight;
  }
}

function copyHeaders(h: HeaderFields): Headers {
  const out = new Headers();
  h.forEach((value, name) => out.append(name, value));
  return out;
}
