/**
 * One client connection of the socket engine taken over by HTTP/2: its ClientConnection keeps
 * the socket, the outbox, the PROXY-protocol client and the engine's bookkeeping
 * (maxConnections, the sweeper, drain); the bytes go to a node:http2 server session through a
 * Duplex bridge (measured: 59k requests/s, ~12.7 µs CPU per request, ISSUE24). Each stream
 * becomes an H2Stream (stream.ts) forwarded by the listener's one loop.
 *
 * Time limits, as the HTTP/1.1 side has them: from the preface until the first request,
 * timeouts.header (a silent or slow connection is closed); with no stream open,
 * timeouts.idle (GOAWAY, then close); a request body that stops arriving for timeouts.idle
 * is the client's fault (408, or the try stopped); writes stuck behind a client that does not
 * read for timeouts.idle cut the connection (ClientConnection.writeDeadline).
 */
import { Duplex } from "node:stream";
import type { ServerHttp2Session, ServerHttp2Stream, IncomingHttpHeaders } from "node:http2";
import { constants } from "node:http2";
import type { ClientConnection, TakenOver } from "../socket/client.ts";
import { ClientFault } from "../../errors.ts";
import { refusedMethod } from "../../http/methods.ts";
import { RequestBody } from "../socket/request-body.ts";
import { RoutedKind } from "../../forward/router.ts";
import { readHead } from "./head.ts";
import { isGrpcCall } from "../../http/grpc.ts";
import { H2Stream } from "./stream.ts";
import { HIGH_WATER } from "../socket/outbox.ts";
import { ResetBudget } from "./reset-budget.ts";

function streamIfOpen(s: H2Stream): void {
  if (!s.started && !s.done && !s.parsed) s.forward(false);
}

/** A whole request's turn, unless its client reset it meanwhile (RST_STREAM in the same read). */
function startIfWanted(s: H2Stream): void {
  if (!s.started && !s.cancel.aborted && !s.stream.closed && !s.stream.destroyed) s.forward(true);
}

/** Bytes of frames gathered before they go to the socket at once (the outbox's own high mark). */
const COALESCE_MAX = HIGH_WATER;

/** Where the connection is in its life: changed only by H2Connection's methods. */
const enum Life {
  /** Preface read; no request yet: timeouts.header runs. */
  Opening = 0,
  /** Serving streams. */
  Open = 1,
  /** GOAWAY sent (drain or idle): streams in flight finish, no new ones. */
  GoingAway = 2,
  /** The socket closed. */
  Closed = 3,
}

export interface H2Limits {
  maxUriLength: number;
}

export class H2Connection implements TakenOver {
  readonly duplex: Duplex;
  private session: ServerHttp2Session | undefined;
  private readonly streams = new Set<H2Stream>();
  private life = Life.Opening;
  /** The session's write that waits for the outbox to drain (the Duplex's backpressure). */
  private writeDone: ((e?: Error | null) => void) | undefined;
  /** Frames written by the session this turn, not yet given to the socket (see `flush`). */
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private flushing = false;
  /** Streams the client reset before their answer was done (rapid reset, reset-budget.ts). */
  private readonly resets: ResetBudget;

  /** Give the gathered frames to the socket, in one write. */
  private readonly flush = (): void => {
    this.flushing = false;
    const out = this.out;
    if (out.length === 0) return;
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.client.write(bytes);
  };

  constructor(
    readonly client: ClientConnection,
    private readonly limits: H2Limits,
    resetsPerSecond: number,
  ) {
    this.resets = new ResetBudget(resetsPerSecond);
    const c = client;
    this.duplex = new Duplex({
      read() {},
      write: (chunk: Uint8Array, _enc, cb) => {
        // node:http2 writes each frame on its own; they are gathered until the current turn's
        // work is done and go to the socket in one write (a syscall a frame cost ~15 µs of
        // system time per request under h2load).
        this.out.push(chunk);
        this.outBytes += chunk.length;
        if (this.outBytes < COALESCE_MAX) {
          if (!this.flushing) {
            this.flushing = true;
            setImmediate(this.flush);
          }
          return cb();
        }
        this.flush();
        // Held until the socket takes what is queued: node:http2 then stops writing, its
        // streams' write() returns false, and their upstreams are paused (stream.ts).
        if (c.congested) this.writeDone = cb;
        else cb();
      },
      final: (cb) => {
        this.flush();
        c.closeAfterFlush();
        cb();
      },
      destroy: (err, cb) => {
        this.flush();
        c.closeAfterFlush();
        cb(err);
      },
    });
    // The bridge has no timeouts of its own: the engine's sweeper owns them.
    this.duplex.on("error", () => {});
    c.setDeadline(c.env.headerTimeout);
  }

  /** The session node:http2 made for this connection (H2Front). */
  bind(session: ServerHttp2Session): void {
    this.session = session;
    session.on("stream", (stream: ServerHttp2Stream, _h: IncomingHttpHeaders, flags: number, raw: string[]) => this.onStream(stream, flags, raw));
    // Session errors (a peer's protocol error, a flood bound) end the session; node:http2 has
    // sent GOAWAY where one can go. Nothing to answer; the socket closes with it.
    session.on("error", () => {});
    session.on("close", () => this.client.closeAfterFlush());
  }

  data(chunk: Uint8Array): void {
    this.duplex.push(chunk);
  }

  writable(): void {
    const done = this.writeDone;
    this.writeDone = undefined;
    done?.();
  }

  ended(): void {
    this.duplex.push(null);
  }

  closed(): void {
    this.life = Life.Closed;
    for (const s of [...this.streams]) s.closed();
    this.streams.clear();
    this.writable();
    this.session?.destroy();
    this.duplex.destroy();
  }

  /** Graceful stop, or idle: GOAWAY (RFC 9113 §6.8); streams in flight finish, then the session closes. */
  goAway(): void {
    if (this.life >= Life.GoingAway) return;
    this.life = Life.GoingAway;
    const s = this.session;
    if (s === undefined || s.closed) return this.client.closeAfterFlush();
    s.close();
  }

  /**
   * Rapid reset (CVE-2023-44487): the client reset more streams than its budget. A connection
   * error ENHANCE_YOUR_CALM (RFC 9113 §5.4.1): GOAWAY with that code, then the socket closes;
   * the streams in flight are given up (their tries cancelled, as on a reset).
   */
  private calm(): void {
    if (this.life >= Life.Closed) return;
    this.life = Life.GoingAway;
    const s = this.session;
    if (s === undefined || s.destroyed) return this.client.closeAfterFlush();
    s.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // The GOAWAY reaches the bridge on a later turn; destroyed at once, it would never go out.
    setImmediate(() => {
      s.destroy();
      this.flush();
      this.client.closeAfterFlush();
    });
  }

  /** From the sweeper (the ClientConnection's deadline passed). */
  timedOut(now: number): void {
    if (this.life === Life.Opening) {
      this.client.setDeadline(0);
      return this.client.destroy();
    }
    const idle = this.client.env.idleTimeout;
    for (const s of [...this.streams]) {
      if (s.blockedAt !== 0 && s.blockedAt + idle <= now) s.stalled();
      // A body that stalls before its answer began; once the backend is answering (a streaming
      // gRPC call whose client has nothing to say for a while), the answer's own writes bound it.
      else if (!s.parsed && !s.responded && s.body !== undefined && s.lastBodyAt + idle <= now) s.refuse(408, "request body stalled", new ClientFault("SY_CLIENT_TIMEOUT", `no body bytes for ${idle}ms`));
    }
    if (this.streams.size === 0) return this.goAway();
    this.rearm(now);
  }

  /**
   * The connection's deadline: the earliest of its streams' (a request body that stops, an
   * answer the client takes nothing of), timeouts.idle after it began; none if none waits.
   */
  rearm(now = performance.now()): void {
    if (this.life >= Life.Closed) return;
    let due = Infinity;
    for (const s of this.streams) {
      if (s.blockedAt !== 0) due = Math.min(due, s.blockedAt);
      if (!s.parsed && s.body !== undefined && !s.done) due = Math.min(due, s.lastBodyAt);
    }
    this.client.setDeadline(due === Infinity ? 0 : Math.max(1, due + this.client.env.idleTimeout - now));
  }

  logError(e: unknown): void {
    this.client.env.logger.error(`socket engine (HTTP/2): ${(e as Error)?.stack ?? e}`);
  }

  private onStream(stream: ServerHttp2Stream, flags: number, raw: string[]): void {
    stream.on("error", () => {});
    if (this.life >= Life.GoingAway) {
      // Past GOAWAY's last stream id nothing is processed (RFC 9113 §6.8): refused, retryable.
      stream.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    this.life = Life.Open;
    const head = readHead(raw);
    if ("malformed" in head) {
      stream.close(constants.NGHTTP2_PROTOCOL_ERROR);
      return this.quiet();
    }
    // tls.clientAuth: the verified client certificate's fields, never the client's own.
    if (this.client.env.clientCert !== undefined) this.client.certify(head.fields);
    const s = new H2Stream(this, stream, head.method, head.target, head.fields);
    this.streams.add(s);
    // Other streams' deadlines stand (a new stream must not clear a stalled one's).
    this.rearm();
    stream.on("close", () => {
      this.streams.delete(s);
      // Closed before its answer was done, the connection still open: the client reset it.
      const premature = !s.done && !s.resetByUs && this.life < Life.Closed;
      s.closed();
      if (premature && !this.resets.take()) return this.calm();
      this.quiet();
    });
    const env = this.client.env;
    // CONNECT (no forward proxying; extended CONNECT is not offered) and TRACE: as on HTTP/1.1 (http/methods.ts).
    const refused = refusedMethod(head.method);
    if (refused !== undefined) return s.answerFault(405, refused);
    if (head.target.length > this.limits.maxUriLength) return s.answerFault(414, `request target over ${this.limits.maxUriLength} bytes`);
    if (head.target.charCodeAt(0) !== 47 /* / */ && !(head.target === "*" && head.method === "OPTIONS")) {
      // §8.3.1: :path is origin-form, or "*" for OPTIONS.
      return s.resetMalformed();
    }
    if (!head.fields.has("host")) return s.answerFault(400, "no :authority or Host");
    // Routed from the head, before the body is read: its route may have its own limits.
    const routed = (s.routed = env.forwarder.route(s));
    const ended = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    if (ended) {
      if (head.length > 0) return s.resetMalformed();
      s.parsed = true;
      // Started once this read's frames are all handled: a stream reset in the same read (rapid
      // reset, CVE-2023-44487, sends HEADERS and RST_STREAM together) costs no try to a backend.
      // Measured: a try begun and cancelled at once cost ~200 µs of the proxy's CPU (the
      // upstream connection is closed, never pooled with an unread answer) against ~10 µs
      // for a stream never started.
      setImmediate(startIfWanted, s);
      return;
    }
    if (head.length > routed.maxBodySize) return s.answerFault(413, `Content-Length ${head.length} over ${routed.maxBodySize}`);
    // A proxy answer (no route, a guard's refusal, a redirect) needs no body: at once.
    if (routed.kind === RoutedKind.Answer) {
      stream.resume();
      return s.forward(true);
    }
    const body = (s.body = new RequestBody(head.length));
    s.lastBodyAt = performance.now();
    this.rearm();
    stream.on("data", (chunk: Buffer) => {
      if (s.done) return;
      s.lastBodyAt = performance.now();
      if (body.received + chunk.length > routed.maxBodySize) return s.refuse(413, `body over ${routed.maxBodySize} bytes`, new ClientFault("SY_BODY_TOO_LARGE", `body over ${routed.maxBodySize} bytes`));
      // §8.1.1: DATA beyond the declared content-length makes the request malformed.
      if (head.length >= 0 && body.received + chunk.length > head.length) return s.refuse(400, "more DATA than content-length");
      body.push(chunk);
      if (!s.started && body.held > routed.bufferBody) s.forward(false);
      // The upstream socket holds too much: the stream pauses, and with it the flow-control
      // credit the client gets (RFC 9113 §5.2), until it drains.
      if (body.congested) {
        stream.pause();
        body.onDecongested(() => stream.resume());
      }
    });
    stream.on("end", () => {
      if (s.done || s.parsed) return;
      if (head.length >= 0 && body.received !== head.length) return s.refuse(400, "less DATA than content-length");
      s.parsed = true;
      body.end();
      if (!s.started) s.forward(true);
    });
    // A gRPC call's body is a stream of messages, and a client-streaming or bidi call waits for
    // answers before it sends more: held back until retry.bufferBody, it would never start. What
    // has come by the end of this turn of the event loop decides: the whole body (a unary
    // call's HEADERS and DATA come together) goes whole and can be retried; else it streams now.
    if (isGrpcCall(head.fields)) setImmediate(streamIfOpen, s);
  }

  /** No stream open: the idle timeout runs. */
  private quiet(): void {
    if (this.streams.size === 0 && this.life < Life.Closed) this.client.setDeadline(this.client.env.idleTimeout);
  }
}
