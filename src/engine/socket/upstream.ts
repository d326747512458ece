/**
 * Upstream connections of the socket engine: dialled with Bun.connect, kept alive and reused
 * per backend, one request at a time each (HTTP/1.1 without pipelining upstream, as nginx and
 * HAProxy do).
 *
 * A connection goes back to the idle stack only when its exchange ended cleanly: the response
 * complete, the request body fully written, the backend willing to keep it (RFC 9112 §9.3), and
 * not one byte left over. Bytes that arrive on an idle connection, or after a complete response,
 * close it: they cannot belong to any request of ours, and reading them as the next response
 * would hand one client another's answer.
 */
import type { Socket, SocketHandler } from "bun";
import type { Backend } from "../../pool/backend.ts";
import { NetworkError } from "../../net/network-error.ts";
import { FieldList } from "../../http/fields.ts";
import type { OtherVersion } from "../../http/headers.ts";
import type { SendProgress, TryReceiver, UpstreamResponse } from "../../forward/forward.ts";
import type { Cancel, CancelListener } from "../../forward/cancel.ts";
import { HTTPParser, SKIP_BODY, createParser, isParseError, type LlhttpParser, type ParserHost } from "./llhttp.ts";
import { Outbox } from "./outbox.ts";
import { scanResponse } from "./scan.ts";
import { CRLF, LAST_CHUNK, chunkHead, type BodySink, type RequestBody } from "./request-body.ts";
import { hasToken, WEBSOCKET } from "../../http/upgrade.ts";
import { encodeProxyHeader } from "../../net/proxy-protocol.ts";
import type { ProxiedClient } from "./client.ts";

export interface UpstreamPoolOptions {
  /** Idle connections kept per backend; more are closed when they come back. */
  maxIdlePerBackend: number;
  /** HTTP/2 backends (engine/h2/): connections per backend at most (limits.h2SessionsPerBackend). */
  h2SessionsPerBackend?: number;
  /** HTTP/2 backends: streams in flight per connection at most (limits.h2StreamsPerSession). */
  h2StreamsPerSession?: number;
  /** An idle connection is closed after this long: below the backends' own keep-alive timeouts. */
  idleTimeoutMs: number;
  /** Time to open a connection. */
  connectTimeoutMs: number;
  /** Largest response head accepted from a backend. */
  maxHeaderSize: number;
}

/** Where the body of a response goes once the client side takes it. */
export interface ResponseSink {
  chunk(c: Uint8Array): void;
  end(): void;
  /** The body was cut short: by the backend (reset, bad framing) or because we gave up (client gone). */
  fail(by: "client" | "backend", detail: string): void;
  /** Whether the client's socket holds too much: the upstream is paused until it drains. */
  congested(): boolean;
  onDecongested(fn: () => void): void;
}

/**
 * How the body after a response head is delimited (RFC 9112 §6.3); "tunnel" for a 101 to a
 * WebSocket handshake: what follows is the new protocol's bytes (held until the tunnel starts).
 */
export type Framing = "none" | "length" | "chunked" | "close" | "tunnel";

/**
 * A response head from a backend, its body held until the client side attaches a sink: what
 * the client side (client.ts's Exchange) reads, whichever wire read the response (this file's
 * HTTP/1.1 connections, or engine/h2/'s streams).
 */
export abstract class HeldResponse implements UpstreamResponse {
  /** Body pieces that arrived before a sink was attached. */
  held: Uint8Array[] = [];
  /**
   * A body that came whole in the same read as its head (the common small answer): that read's
   * buffer and the body's range in it, instead of a piece in `held`. A range, not a view: on a
   * buffer fresh from the socket, subarray() costs about 0.3 µs (JSC first gives the array an
   * ArrayBuffer of its own), copying the range out a tenth of that.
   */
  whole: Buffer | undefined;
  wholeStart = 0;
  wholeEnd = 0;
  complete = false;
  /** The version it came in, when not 1.1 (Via). */
  httpVersion: OtherVersion | undefined;
  failure: { by: "client" | "backend"; detail: string } | undefined;
  sink: ResponseSink | undefined;
  /**
   * The trailer section that ended the body, when the backend sent one (set before `complete`
   * and the sink's end()): for a client side that can pass trailers on. HTTP/1.1 backends' are
   * dropped by the parser (llhttp.ts), so only HTTP/2 responses carry them.
   */
  trailers: FieldList | undefined;

  constructor(
    readonly status: number,
    readonly statusText: string,
    readonly headers: FieldList,
    readonly framing: Framing,
  ) {}

  /** Hand the body to `sink`: held pieces first (the caller usually writes them with the head). */
  attach(sink: ResponseSink): void {
    this.sink = sink;
    if (this.failure) sink.fail(this.failure.by, this.failure.detail);
  }

  abstract discard(): void;
}

/** A response read on an HTTP/1.1 upstream connection. */
export class SocketResponse extends HeldResponse {
  constructor(
    readonly conn: UpstreamConn,
    status: number,
    statusText: string,
    headers: FieldList,
    framing: Framing,
  ) {
    super(status, statusText, headers, framing);
  }

  discard(): void {
    this.conn.abandon(this);
  }
}

/** Interim (1xx) responses are passed to the client as they come (RFC 9110 §15.2). */
export interface InterimSink {
  interim(status: number, statusText: string, headers: FieldList): void;
  /** The request asked to switch to this protocol (http/upgrade.ts): a 101 for it is final. */
  readonly upgrade?: string | undefined;
}

/** What takes an upgraded connection's events once its tunnel starts (tunnel.ts). */
export interface TunnelSide {
  backendData(chunk: Uint8Array): void;
  backendDrain(): void;
  backendClose(err?: Error): void;
}

/** Up to this size a replayable head is copied into a buffer the connection keeps. */
const REPLAY_KEEP = 4096;

/**
 * Where an upstream connection is in its life, and in its current exchange (one at a time):
 * Dialling, then Idle; each request goes Sent, Reading, Head, Complete (or Poisoned), then
 * Idle again or Closed; a 101 to a WebSocket handshake makes it Upgraded. Every change is made
 * by a method of UpstreamConn. The request body's sending (Send) runs beside this: a backend
 * may answer before the body is all sent.
 */
const enum Conn {
  /** Bun.connect, and for a TLS backend its handshake, is under way. */
  Dialling = 0,
  /** Open with no exchange: in the pool's idle stack, or just dialled for a try. Bytes now are unsolicited. */
  Idle = 1,
  /**
   * A request is written (a streamed body may still be going); no response byte yet. A failure
   * now, on a reused connection, may be the backend closing a stale keep-alive: see fail().
   */
  Sent = 2,
  /** Response bytes arrived, but no final head yet (an interim response, or a head in pieces). */
  Reading = 3,
  /** The final head is in; its body is still arriving. */
  Head = 4,
  /** The final response is complete; the exchange ends once the request body is sent too. */
  Complete = 5,
  /**
   * A second response came in the bytes after ours: read past, never delivered, and the
   * connection closes when the exchange ends (it can never be reused).
   */
  Poisoned = 6,
  /** A 101 to a WebSocket handshake came: the connection is a tunnel's (tunnel.ts), never the pool's again. */
  Upgraded = 7,
  /** Closed, or given up on before it opened. */
  Closed = 8,
}

/** How the current request's body is being sent, beside the Conn state. */
const enum Send {
  /** Nothing left to send: no body, or one read whole and written with the head. */
  Whole = 0,
  /** A streamed body is being written as it comes from the client. */
  Streaming = 1,
  /** The streamed body's last byte is in the outbox. */
  Written = 2,
}

const upstreamHandlers: SocketHandler<UpstreamConn> = {
  data: (s, chunk) => s.data.onData(chunk),
  drain: (s) => s.data.onDrain(),
  close: (s, err) => s.data?.onClose(err),
  connectError: (s, err) => s.data?.onConnectError(err),
  // TLS backends only: the dial is done when the handshake is (see UpstreamPool.connect).
  handshake: (s, ok, err) => s.data?.onHandshake(ok, err),
  error: (s, e) => s.data?.onHandlerError(e),
};

export class UpstreamConn implements BodySink, CancelListener, ParserHost {
  socket!: Socket<UpstreamConn>;
  outbox!: Outbox;
  /** Served a request before: a failure before any response byte may be a stale keep-alive. */
  reused = false;
  idleSince = 0;
  private state = Conn.Dialling;
  private send = Send.Whole;

  private readonly parser: LlhttpParser;
  /** The try waiting for this request's response head. */
  private waiting: TryReceiver | undefined;
  private res: SocketResponse | undefined;
  /**
   * The final head, read in the current read and not yet handed to the try: it is handed over
   * once the read is processed (deliver()), so a body that came in the same read goes out
   * with the head in one write, and the try never runs inside llhttp's callbacks.
   */
  private unsent: SocketResponse | undefined;
  private interim: InterimSink | undefined;
  /** The current request is a HEAD: its response has no body, whatever its fields say. */
  private skipBody = false;
  private body: RequestBody | undefined;
  /** Chunked framing upstream for the current streamed body. */
  private chunked = false;
  /** How a streamed body's sending goes, for the loop's timeouts.send. */
  private progress: SendProgress | undefined;
  /** llhttp holds no partial message: the next read may take the fast path (ParserHost). */
  atStart = true;
  private cancel: Cancel | undefined;
  /**
   * The current request's head (and whole body), kept only while it may be replayed (see
   * request()): a copy, since what request() is given is the shared head buffer (bytes.ts).
   * Copied into a buffer this connection keeps, so a replayable GET allocates only a view of it.
   */
  private head: Uint8Array | undefined;
  private replayBuf: Uint8Array | undefined;
  private method = "GET";
  private tunnel: TunnelSide | undefined;
  /** pools.*.proxyProtocol: the PROXY header still to go before the first request. */
  private proxyHeader: Uint8Array | undefined;

  constructor(
    readonly backend: Backend,
    private readonly pool: UpstreamPool,
    /** The client this connection's PROXY header named: it serves that client only. */
    readonly proxied: ProxiedClient | undefined,
  ) {
    const version = backend.upstream?.proxyProtocol;
    if (proxied !== undefined && version !== undefined) this.proxyHeader = encodeProxyHeader(version === "v1" ? 1 : 2, proxied.source, proxied.destination);
    this.parser = createParser(HTTPParser.RESPONSE, pool.opts.maxHeaderSize, this);
  }

  /** Whether the backend said it keeps the connection, for the last response. */
  private keepAlive = false;

  /** Closed, or given up on before it opened: never to be used. */
  get closed(): boolean {
    return this.state === Conn.Closed;
  }

  /** Open and free for a request: dialled (TLS: handshake done) or back in the idle stack. */
  get ready(): boolean {
    return this.state === Conn.Idle;
  }

  /** The dial is done (for a TLS backend, its handshake too): ready for a request. */
  opened(): void {
    if (this.state === Conn.Dialling) this.state = Conn.Idle;
  }

  /**
   * The pool gave up on this dial (its timeout, or the try was abandoned) before it opened. A
   * TLS dial may have its socket already, mid-handshake: that socket is closed too, or it would
   * stay open outside the pool until the backend closed it.
   */
  giveUp(): void {
    this.state = Conn.Closed;
    this.socket?.terminate();
  }

  /** In an exchange: a request sent and its exchange not yet over on the wire. */
  private get exchanging(): boolean {
    const s = this.state;
    return s >= Conn.Sent && s <= Conn.Poisoned;
  }

  /** Our response is complete (any later byte is not ours). */
  private get responded(): boolean {
    return this.state === Conn.Complete || this.state === Conn.Poisoned;
  }

  /**
   * Send one request: the head (and a body read whole) in one write, a streamed body as it
   * comes. The final response head, or the failure, goes to `t` (exactly once).
   *
   * `replayStale`: this connection was reused and the request may be sent again. A kept-alive
   * connection can be closed by the backend just as we reuse it (RFC 9112 §9.3.1); when that
   * happens before any response byte, the same request goes once more on a fresh connection,
   * here rather than through the loop (it is no failure of the backend's).
   */
  request(
    head: Uint8Array, body: RequestBody | undefined, method: string, cancel: Cancel, interim: InterimSink,
    t: TryReceiver, replayStale = false, progress?: SendProgress,
  ): void {
    this.progress = progress;
    this.head = replayStale ? this.keepForReplay(head) : undefined;
    this.method = method;
    if (this.state === Conn.Closed) {
      // A connection that died before its first request: nothing reads from it now, so the try
      // is told here (in a microtask, never inside the caller's own call).
      queueMicrotask(() => t.tryFailed(new NetworkError("ECONNRESET", "the connection closed before the request was sent")));
      return;
    }
    this.state = Conn.Sent;
    this.res = undefined;
    this.skipBody = method === "HEAD";
    this.interim = interim;
    this.cancel = cancel;
    cancel.on(this);
    this.waiting = t;
    const proxyHeader = this.proxyHeader;
    if (proxyHeader !== undefined) {
      // The connection's first bytes (HAProxy's send-proxy): once, before its first request.
      this.proxyHeader = undefined;
      this.outbox.write(proxyHeader);
    }
    if (body === undefined) {
      this.send = Send.Whole;
      this.outbox.write(head, true);
    } else {
      this.outbox.write(head, true);
      this.send = Send.Streaming;
      this.body = body;
      this.chunked = body.chunked;
      body.attach(this);
      this.reportSending();
    }
  }

  private keepForReplay(head: Uint8Array): Uint8Array {
    // A large whole body is copied for this request only, not kept with the connection.
    if (head.length > REPLAY_KEEP) return head.slice();
    let buf = this.replayBuf;
    if (buf === undefined || buf.length < head.length) buf = this.replayBuf = new Uint8Array(Math.min(REPLAY_KEEP, Math.max(512, head.length * 2)));
    buf.set(head);
    return buf.subarray(0, head.length);
  }

  // BodySink: a streamed request body.
  bodyChunk(chunk: Uint8Array): void {
    if (this.closed) return;
    if (this.chunked) {
      if (chunk.length === 0) return;
      this.outbox.write(chunkHead(chunk.length));
      this.outbox.write(chunk);
      this.outbox.write(CRLF);
    } else {
      this.outbox.write(chunk);
    }
    this.reportSending();
  }
  bodyEnd(): void {
    if (this.closed) return;
    if (this.chunked) this.outbox.write(LAST_CHUNK);
    this.send = Send.Written;
    this.body = undefined;
    this.reportSending();
    if (this.responded) this.finishExchange();
  }

  /**
   * timeouts.send's view of a streamed body (SendProgress): the backend is holding us up only
   * while what we gave it sits unwritten; once all of it is taken, the wait is for the client.
   */
  private reportSending(): void {
    const progress = this.progress;
    if (progress === undefined) return;
    if (this.outbox.pending > 0) return progress.sendWaiting();
    progress.sendTaken();
    if (this.send === Send.Written) {
      this.progress = undefined;
      progress.requestSent();
    }
  }

  onDrain(): void {
    // An upgraded connection's writes are its tunnel's (tunnel.ts).
    if (this.tunnel !== undefined) return this.tunnel.backendDrain();
    this.outbox.flush();
    if (this.progress !== undefined && this.outbox.pending === 0) this.reportSending();
  }
  get congested(): boolean {
    return this.outbox.full;
  }
  onDecongested(fn: () => void): void {
    if (!this.outbox.full) fn();
    else this.outbox.onDrained = fn;
  }

  onData(chunk: Uint8Array): void {
    const state = this.state;
    if (state === Conn.Upgraded) return this.tunnelData(chunk);
    if (state < Conn.Sent || state >= Conn.Complete) {
      // Unsolicited bytes: nothing of ours is waiting for them.
      this.destroy("backend", "unsolicited bytes from the backend");
      return;
    }
    if (state === Conn.Sent) this.state = Conn.Reading;
    if (this.atStart) {
      // The fast path: a whole plain response in this read, scanned without llhttp (scan.ts).
      const r = scanResponse(chunk, 0, this.pool.opts.maxHeaderSize, this.skipBody);
      if (r !== undefined && r.end === chunk.length) {
        this.keepAlive = r.keepAlive;
        const res = this.finalHead(FieldList.fromScan(r.fields, chunk), r.status, r.statusText, r.end > r.headEnd ? "length" : "none");
        if (r.end > r.headEnd) {
          // No sink yet (the head is delivered below): the body stays where it is (see `whole`).
          res.whole = chunk as Buffer;
          res.wholeStart = r.headEnd;
          res.wholeEnd = r.end;
        }
        this.onMessageComplete();
        // Back to the pool before the try sees the head: the response is all here.
        if (this.send !== Send.Streaming) this.finishExchange();
        return this.deliver();
      }
    }
    const r = this.parser.execute(chunk);
    if (isParseError(r)) {
      this.destroy("backend", `invalid response (${r.code})`);
      return;
    }
    if (this.state === Conn.Upgraded) {
      // llhttp stops after the 101's head: the rest of this read is already the new protocol.
      if (r < chunk.length) this.tunnelData(chunk.subarray(r));
      return this.deliver();
    }
    const done = this.responded;
    if (done && r !== chunk.length) {
      // Bytes after a complete response: never reuse this connection.
      this.keepAlive = false;
    }
    if (done && this.send !== Send.Streaming) this.finishExchange();
    this.deliver();
  }

  /** The read is processed: hand a final head it completed to the waiting try (see `unsent`). */
  private deliver(): void {
    const res = this.unsent;
    const t = this.waiting;
    if (res === undefined || t === undefined) return;
    this.unsent = undefined;
    this.waiting = undefined;
    t.headReceived(res);
  }

  /** From llhttp (ParserHost): a response head, interim or final. */
  onHeadersComplete(
    major: number, minor: number, fields: string[] | undefined, _method: number | undefined, _url: string | undefined,
    statusCode: number | undefined, text: string | undefined, upgrade: boolean, keepAlive: boolean,
  ): number {
    const status = statusCode ?? 0;
    const statusText = text ?? "";
    if (this.responded || this.waiting === undefined || this.res !== undefined) {
      // A second response in the bytes after ours: nobody asked for it. It is read past, never
      // delivered, and the connection is closed once this exchange ends.
      if (this.state !== Conn.Closed) this.state = Conn.Poisoned;
      this.keepAlive = false;
      return SKIP_BODY;
    }
    const headers = new FieldList(fields ?? []);
    if (status < 200) {
      // 101 switches protocols: final for a WebSocket handshake we passed on (RFC 6455 §4.1:
      // it must name websocket in Upgrade); otherwise no Upgrade was forwarded, so a backend
      // has no business sending it: a protocol error.
      if (status === 101 && upgrade && this.interim?.upgrade === WEBSOCKET && hasToken(headers.get("upgrade"), WEBSOCKET)) {
        this.keepAlive = false;
        this.finalHead(headers, status, statusText, "tunnel");
        this.state = Conn.Upgraded;
        return 0;
      }
      if (status === 101) {
        queueMicrotask(() => this.destroy("backend", "unexpected 101 Switching Protocols"));
        return 0;
      }
      this.interim?.interim(status, statusText, headers);
      return 0;
    }
    this.keepAlive = keepAlive;
    let framing: Framing;
    if (this.skipBody || status === 204 || status === 304) framing = "none";
    else if (headers.has("transfer-encoding")) framing = "chunked";
    else if (headers.has("content-length")) framing = headers.get("content-length") === "0" ? "none" : "length";
    else framing = "close";
    const res = this.finalHead(headers, status, statusText, framing);
    if (major === 1 && minor === 0) res.httpVersion = "1.0";
    return this.skipBody ? SKIP_BODY : 0;
  }

  /** The final response head (llhttp's or the scanner's): the try gets it once the read is done (deliver). */
  private finalHead(headers: FieldList, status: number, statusText: string, framing: Framing): SocketResponse {
    const res = new SocketResponse(this, status, statusText, headers, framing);
    this.res = res;
    this.unsent = res;
    this.state = Conn.Head;
    return res;
  }

  onBody(chunk: Uint8Array): void {
    const res = this.res;
    if (res === undefined || this.state === Conn.Poisoned) return;
    if (res.sink !== undefined) {
      res.sink.chunk(chunk);
      if (res.sink.congested() && this.state !== Conn.Closed) {
        this.socket.pause();
        res.sink.onDecongested(() => {
          if (!this.closed) this.socket.resume();
        });
      }
    } else {
      res.held.push(chunk);
    }
  }

  onMessageComplete(): void {
    // The end of a 101's head: what follows is the tunnel's, not another message.
    if (this.state === Conn.Upgraded) return;
    const res = this.res;
    // The end of an interim response (the final one is still to come), or of a poisoned one.
    if (res === undefined || this.state === Conn.Poisoned) return;
    // (Closed: a close-delimited body ended by the close, onClose; it stays closed.)
    if (this.state === Conn.Head) this.state = Conn.Complete;
    res.complete = true;
    res.sink?.end();
  }

  /** The exchange is over on the wire: back to the pool, or closed. */
  private finishExchange(): void {
    if (!this.exchanging) return;
    this.cancel?.off(this);
    this.cancel = undefined;
    this.interim = undefined;
    this.progress = undefined;
    this.res = undefined;
    if (this.keepAlive) {
      this.reused = true;
      this.state = Conn.Idle;
      this.pool.put(this);
    } else {
      this.close();
    }
  }

  /** Tunnel bytes: held on the response until its tunnel starts, then passed straight to it. */
  private tunnelData(chunk: Uint8Array): void {
    if (this.tunnel !== undefined) return this.tunnel.backendData(chunk);
    const res = this.res;
    if (res !== undefined) {
      res.held.push(chunk);
    }
  }

  /**
   * Hand this upgraded connection to its tunnel: from now on the tunnel gets its bytes, drains
   * and close, and decides when it ends. Returns what was still queued for the backend.
   */
  becomeTunnel(tunnel: TunnelSide): Uint8Array[] {
    this.tunnel = tunnel;
    this.cancel?.off(this);
    this.cancel = undefined;
    this.waiting = undefined;
    this.unsent = undefined;
    return this.outbox.takeAll();
  }

  /** The try was given up (its timer, the deadline, the client leaving): the connection goes with it. */
  onCancel(): void {
    this.destroy("client", "request abandoned");
  }

  /** The response is not wanted (a retried status): close rather than read a body nobody wants. */
  abandon(res: SocketResponse): void {
    if (this.res !== res) return;
    this.destroy("client", "response discarded");
  }

  onClose(err?: Error): void {
    if (this.tunnel !== undefined) {
      this.state = Conn.Closed;
      this.pool.forget(this);
      this.tunnel.backendClose(err);
      return;
    }
    const was = this.state;
    if (was === Conn.Closed) {
      this.pool.forget(this);
      return;
    }
    this.state = Conn.Closed;
    this.pool.forget(this);
    const res = this.res;
    if (res !== undefined && !res.complete && res.framing === "close") {
      // A close-delimited body ends here (RFC 9112 §6.3, rule 8).
      const r = this.parser.finish();
      if (!isParseError(r) && res.complete) return this.cleanup();
    }
    this.fail("backend", err ? `connection reset (${(err as { code?: string }).code ?? err.message})` : "connection closed", was === Conn.Sent, err);
    this.cleanup();
  }

  onConnectError(err: Error): void {
    this.state = Conn.Closed;
    this.pool.connectFailed(this, err);
  }

  /**
   * A TLS backend's handshake ended. Bun reports a certificate that fails verification here
   * (ok false, with the reason), and closes the connection itself when rejectUnauthorized is
   * on; with insecureSkipVerify the connection goes on. Requests are written only after this:
   * bytes written before it were not delivered on Bun 1.4.5 once a handshake handler is set.
   */
  onHandshake(ok: boolean, err: Error | null): void {
    // Given up on (giveUp) while the handshake ran.
    if (this.closed) return void this.socket?.terminate();
    const verify = this.backend.tls?.rejectUnauthorized ?? true;
    if (ok || !verify) {
      this.opened();
      this.pool.handshakeDone(this);
    }
    else {
      this.state = Conn.Closed;
      this.pool.connectFailed(this, err ?? new NetworkError("ERR_TLS_HANDSHAKE", "TLS handshake failed"));
      this.socket?.terminate();
    }
  }

  onHandlerError(e: unknown): void {
    this.pool.logError(e);
    this.destroy("backend", "internal error");
  }

  /** Close now, failing whatever is in flight. */
  destroy(by: "client" | "backend", detail: string): void {
    const was = this.state;
    if (was === Conn.Closed) return;
    this.state = Conn.Closed;
    this.pool.forget(this);
    this.fail(by, detail, was === Conn.Sent);
    this.socket?.terminate();
    this.cleanup();
  }

  /**
   * What was in flight fails. The waiting try hears of it in a microtask, never from inside
   * the close, cancel or parse that caused it: it may start its next try at once.
   * `unanswered`: no byte of the response had come (the state was Sent).
   */
  private fail(by: "client" | "backend", detail: string, unanswered: boolean, err?: Error): void {
    const t = this.waiting;
    const unsent = this.unsent;
    this.waiting = undefined;
    this.unsent = undefined;
    const res = this.res;
    if (res !== undefined && !res.complete && res.failure === undefined) {
      res.failure = { by, detail };
      res.sink?.fail(by, detail);
    }
    if (t === undefined) return;
    // A head read just before the failure: its failure is set, so the client side refuses it
    // and the loop counts a failed try.
    if (unsent !== undefined) return queueMicrotask(() => t.headReceived(unsent));
    const head = this.head;
    const cancel = this.cancel;
    if (head !== undefined && this.reused && unanswered && by === "backend" && cancel !== undefined && !cancel.aborted) {
      const { method, interim } = this;
      return this.pool.dialFor(this.backend, cancel, t, (fresh) => fresh.request(head, undefined, method, cancel, interim!, t), this.proxied);
    }
    const e = new NetworkError((err as { code?: string } | undefined)?.code ?? "ECONNRESET", detail);
    queueMicrotask(() => t.tryFailed(e));
  }

  private cleanup(): void {
    this.progress = undefined;
    this.body?.detach();
    this.body = undefined;
    this.cancel?.off(this);
    this.cancel = undefined;
    this.parser.close?.();
  }

  /** Close an idle connection (pool trimming, shutdown). */
  close(): void {
    if (this.state === Conn.Closed) return;
    this.state = Conn.Closed;
    this.pool.forget(this);
    this.socket?.end();
    this.cleanup();
  }
}

export class UpstreamPool {
  private readonly idle = new Map<Backend, UpstreamConn[]>();
  private readonly dialling = new Map<UpstreamConn, { resolve(c: UpstreamConn): void; reject(e: unknown): void }>();
  /** TLS connections whose socket is open, waiting for the end of their handshake. */
  private readonly handshaking = new Map<UpstreamConn, () => void>();

  constructor(
    /** Replaced by a reload; connections read it when they open. */
    public opts: UpstreamPoolOptions,
    readonly logError: (e: unknown) => void,
  ) {}

  /**
   * An idle connection to `backend`, most recently used first (its socket is warmest).
   * `proxiedKey` (pools.*.proxyProtocol): only a connection whose PROXY header named this very
   * client (ProxiedClient.key), since the backend takes every request on a connection as from
   * the client its header named (HAProxy likewise keeps such connections private to their
   * client's session). Without it, a connection that carried a header is never handed out.
   */
  take(backend: Backend, proxiedKey?: string): UpstreamConn | undefined {
    const stack = this.idle.get(backend);
    if (stack === undefined) return undefined;
    if (proxiedKey === undefined) {
      while (stack.length > 0) {
        const c = stack.pop()!;
        if (c.closed) continue;
        if (c.proxied === undefined) return c;
        // The pool no longer sends PROXY headers (a reload): this one named a client; gone.
        c.close();
      }
      return undefined;
    }
    for (let i = stack.length - 1; i >= 0; i--) {
      const c = stack[i]!;
      if (c.closed) {
        stack.splice(i, 1);
        continue;
      }
      if (c.proxied?.key !== proxiedKey) continue;
      stack.splice(i, 1);
      return c;
    }
    return undefined;
  }

  /** Open a new connection; given up when `cancel` fires, bounded by the connect timeout. */
  connect(backend: Backend, cancel: Cancel, proxied?: ProxiedClient): Promise<UpstreamConn> {
    const conn = new UpstreamConn(backend, this, proxied);
    const url = backend.url;
    // Its pool's timeouts.connect.
    const connectMs = backend.upstream?.connectTimeoutMs ?? this.opts.connectTimeoutMs;
    return new Promise<UpstreamConn>((resolve, reject) => {
      let settled = false;
      const done = (e: unknown, c?: UpstreamConn) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        cancel.off(onAbort);
        this.dialling.delete(conn);
        if (c) resolve(c);
        else reject(e);
      };
      const onAbort: CancelListener = {
        onCancel: () => {
          conn.giveUp();
          this.handshaking.delete(conn);
          done(new NetworkError("ABORT_ERR", "request abandoned"));
        },
      };
      const timer = setTimeout(() => {
        conn.giveUp();
        this.handshaking.delete(conn);
        done(new NetworkError("ETIMEDOUT_CONNECT", `connect timed out after ${connectMs}ms`));
      }, connectMs);
      if (cancel.aborted) return onAbort.onCancel();
      cancel.on(onAbort);
      this.dialling.set(conn, { resolve: (c) => done(undefined, c), reject: (e) => done(e) });
      const tls = backend.tls;
      Bun.connect<UpstreamConn>({
        hostname: url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname,
        port: Number(url.port || (tls !== undefined ? 443 : 80)),
        data: conn,
        socket: upstreamHandlers,
        // https:// backends (tls/upstream.ts): SNI and the checked name are the URL's host unless
        // servername says otherwise.
        ...(tls !== undefined ? { tls: { ...tls, serverName: tls.serverName ?? url.hostname.replace(/^\[|\]$/g, "") } } : {}),
      }).then(
        (socket) => {
          if (conn.closed) {
            // Given up on (timeout, abort) before it opened.
            socket.terminate();
            return;
          }
          socket.setNoDelay(true);
          conn.socket = socket;
          conn.outbox = new Outbox(socket as Socket<unknown>);
          // TLS: ready once the handshake is over (onHandshake), not when the socket opens.
          if (tls === undefined) conn.opened();
          if (conn.ready) done(undefined, conn);
          else this.handshaking.set(conn, () => done(undefined, conn));
        },
        (e) => done(e),
      );
    });
  }

  /**
   * A fresh connection for try `t`, then `send` on it. A failed dial, or a throw from `send`,
   * is reported to `t`: never left unreported, or the try would wait for an answer nobody gives.
   */
  dialFor(backend: Backend, cancel: Cancel, t: TryReceiver, send: (c: UpstreamConn) => void, proxied?: ProxiedClient): void {
    this.connect(backend, cancel, proxied).then(
      (c) => {
        try {
          send(c);
        } catch (e) {
          t.tryFailed(e);
        }
      },
      (e) => t.tryFailed(e),
    );
  }

  /** @internal From a connection whose dial failed. */
  connectFailed(conn: UpstreamConn, err: Error): void {
    this.handshaking.delete(conn);
    this.dialling.get(conn)?.reject(err);
  }

  /** @internal From a TLS connection whose handshake is over and acceptable. */
  handshakeDone(conn: UpstreamConn): void {
    const ready = this.handshaking.get(conn);
    this.handshaking.delete(conn);
    ready?.();
  }

  /** A connection whose exchange ended cleanly. */
  put(conn: UpstreamConn): void {
    let stack = this.idle.get(conn.backend);
    if (stack === undefined) this.idle.set(conn.backend, (stack = []));
    const max = conn.backend.upstream?.keepalive ?? this.opts.maxIdlePerBackend;
    if (stack.length >= max) {
      // Connections kept per client (proxyProtocol): the oldest, likely of a client gone, makes room.
      if (conn.proxied === undefined || max === 0) {
        conn.close();
        return;
      }
      stack[0]!.close();
    }
    conn.idleSince = performance.now();
    stack.push(conn);
  }

  /** @internal A connection closed: drop it from the idle stack. */
  forget(conn: UpstreamConn): void {
    const stack = this.idle.get(conn.backend);
    if (stack === undefined) return;
    const i = stack.indexOf(conn);
    if (i !== -1) stack.splice(i, 1);
  }

  /** Close idle connections older than the idle timeout. */
  sweep(now: number): void {
    for (const [backend, stack] of this.idle) {
      // Its pool's idle timeout (timeouts.upstreamIdle). Oldest at the bottom: trim from there.
      const idleMs = backend.upstream?.idleTimeoutMs ?? this.opts.idleTimeoutMs;
      while (stack.length > 0 && now - stack[0]!.idleSince >= idleMs) stack[0]!.close();
    }
  }


  /** Close every idle connection (shutdown, or a backend removed). */
  closeIdle(backend?: Backend): void {
    for (const [b, stack] of this.idle) {
      if (backend !== undefined && b !== backend) continue;
      for (const c of [...stack]) c.close();
    }
  }
}
