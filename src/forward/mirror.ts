/**
 * Route `mirror`: a copy of a share of a route's requests goes to another pool, and its answer
 * is thrown away (Envoy's request mirroring, nginx's `mirror`). The copy must never delay or
 * fail the client's request, so:
 * - its fields are copied as the header rules left them, and it is sent once the client's own
 *   first try is under way; its body goes only when the request's body was read whole
 *   (retry.bufferBody), never held back from a streamed one, and never with GET or HEAD;
 * - copies in flight per route are bounded (`MAX_IN_FLIGHT`); past it a copy is dropped and
 *   counted, never queued;
 * - each copy has the mirror pool's retry.timeout, and only what its backend did (an answer,
 *   a refused or reset connection, no answer in time) reaches that backend's passive health;
 *   a copy refused on this side is counted as dropped and blames nobody.
 *
 * Copies go out with Bun's fetch whichever engine serves the client: the copy is the shadow
 * pool's only traffic, off the client's path, and needs no connection pool of its own.
 */
import type { HeaderFields } from "../http/fields.ts";
import type { MirrorRequest, MirrorSink, PoolTarget } from "./router.ts";
import { methodLabel } from "../stats/traffic.ts";
import { errorCode } from "../net/network-error.ts";

/** Copies in flight at once, per mirroring route. */
export const MAX_IN_FLIGHT = 64;

export class Mirror implements MirrorSink {
  private inFlight = 0;
  /** Copies not sent or refused on this side: the bound was reached, the pool had no backend, fetch refused it. */
  dropped = 0;
  sent = 0;

  constructor(
    private target: PoolTarget,
    private timeoutMs: number,
  ) {}

  /** A reload rebuilt the pool's target, or changed its retry.timeout: copies from now on use them. */
  retarget(target: PoolTarget, timeoutMs: number): void {
    this.target = target;
    this.timeoutMs = timeoutMs;
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
    // GET and HEAD go without a body (fetch refuses one, and RFC 9110 §9.3.1 gives it no meaning).
    const body = req.method === "GET" || req.method === "HEAD" ? null : (req.body as Uint8Array<ArrayBuffer> | null);
    fetch(backend.origin + backend.basePath + req.target, {
      method: req.method, headers: req.headers, body, redirect: "manual",
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
        // No code: fetch refused the copy here (nothing reached the backend).
        if (e.name !== "TimeoutError" && errorCode(e) === undefined) {
          this.dropped++;
          return;
        }
        backend.stats.countProxyError();
        passive.failed(backend, `mirror: ${e.name === "TimeoutError" ? `no answer within ${this.timeoutMs}ms` : `${errorCode(e)}`}`);
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

/**
 * The request's fields as the copy sends them: as the header rules left them, taken before the
 * client's try sets a Host of its own; without Host when the backend's is sent (preserveHost
 * false, or the client sent none), which fetch then sets from the mirror backend's URL.
 */
export function mirrorFields(h: HeaderFields, backendHost: boolean): Headers {
  const out = new Headers();
  h.forEach((value, name) => out.append(name, value));
  if (backendHost) out.delete("host");
  return out;
}
