/**
 * One try on an HTTP/2 backend: a stream on one of its sessions (session-pool.ts). The request
 * head goes as HEADERS (fields.ts), a body as DATA under the stream's flow control (a stream the
 * backend does not drain pauses the client, as an HTTP/1.1 connection's full socket does); the
 * response head is reported to the try (TryReceiver) as an H2Response, whose body then flows to
 * the client's sink with backpressure (the stream is paused while the client is congested).
 *
 * A stream the backend refused unprocessed (RST_STREAM REFUSED_STREAM, or above a GOAWAY's
 * last stream id: RFC 9113 §8.7, §6.8) fails with ERR_H2_REFUSED_STREAM, which the loop may send
 * to another backend whatever the method (forward/retry.ts). Any other reset, or the session
 * breaking, is a failure as a broken HTTP/1.1 connection is.
 */
import { STATUS_CODES } from "node:http";
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import type { Backend } from "../../pool/backend.ts";
import type { ForwardRequest, SendProgress, TryReceiver } from "../../forward/forward.ts";
import type { Cancel, CancelListener } from "../../forward/cancel.ts";
import { upstreamTargetOf } from "../../forward/router.ts";
import { NetworkError } from "../../net/network-error.ts";
import type { SocketRequest } from "../socket/request.ts";
import type { BodySink, RequestBody } from "../socket/request-body.ts";
import { HeldResponse, type Framing } from "../socket/upstream.ts";
import { requestHeaders, responseFields, statusOf } from "./fields.ts";
import type { H2Session, H2SessionPool, SlotWaiter } from "./session-pool.ts";

const { NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL } = constants;

/** The network error code of a stream refused unprocessed (net/network-error.ts: retry-safe). */
export const REFUSED_STREAM = "ERR_H2_REFUSED_STREAM";

/** RFC 9113 §7 error codes, for the log. */
const ERROR_NAMES = [
  "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",
  "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
];

/** Where a try is: waiting for a stream slot, sent (no head yet), answered (body flowing), over. */
const enum Stage {
  Waiting = 0,
  Sent = 1,
  Answered = 2,
  Over = 3,
}

/** A response head from an HTTP/2 backend; its body and trailers follow on the stream. */
export class H2Response extends HeldResponse {
  constructor(
    private readonly of: H2Try,
    status: number,
    headers: ReturnType<typeof responseFields>,
    framing: Framing,
  ) {
    super(status, STATUS_CODES[status] ?? "", headers, framing);
    this.httpVersion = "2";
  }

  /** Not wanted (a retried status): the stream is cancelled rather than read. */
  discard(): void {
    this.of.abandon("response discarded");
  }
}

export class H2Try implements SlotWaiter, CancelListener, BodySink {
  private stage = Stage.Waiting;
  private session: H2Session | undefined;
  private stream: ClientHttp2Stream | undefined;
  private res: H2Response | undefined;
  /** DATA bytes the response's content-length still promises; -1 when it declared none. */
  private remaining = -1;
  /** The response broke its framing: what else arrives is dropped. */
  private broken = false;
  /** The try still waiting for its report (cleared when told). */
  private t: TryReceiver | undefined;
  /** A streamed request body attached to this stream. */
  private body: RequestBody | undefined;
  private progress: SendProgress | undefined;
  /** We cancelled the stream (the try was given up, or its response discarded): not the backend's fault. */
  private abandoned = false;
  /** A drain listener is set for timeouts.send's report (reportSending). */
  private drainHeard = false;
  private error: Error | undefined;

  constructor(
    private readonly pool: H2SessionPool,
    private readonly backend: Backend,
    private readonly req: ForwardRequest<SocketRequest>,
    private readonly cancel: Cancel,
    t: TryReceiver,
    /** The body streams from the client (not read whole). */
    private readonly streamed: boolean,
  ) {
    this.t = t;
    if (streamed) this.progress = t;
  }

  start(): void {
    if (this.cancel.aborted) return this.tell(new NetworkError("ABORT_ERR", "request abandoned"));
    this.cancel.on(this);
    this.pool.acquire(this.backend, this);
  }

  /** A stream slot on `s` (SlotWaiter): open the stream, send the head and the body. */
  granted(s: H2Session): void {
    if (this.stage !== Stage.Waiting) return s.release();
    this.session = s;
    this.stage = Stage.Sent;
    const req = this.req;
    const ex = req.own;
    const body = ex.body;
    const backend = this.backend;
    const whole = body !== undefined && !this.streamed ? body.bytes() : undefined;
    const fields = ex.headers;
    if (whole !== undefined) fields.set("content-length", String(whole.length));
    const headers = requestHeaders(req.method, backend.basePath + upstreamTargetOf(req), backend.tls !== undefined ? "https" : "http", backend.url.host, fields);
    let stream: ClientHttp2Stream;
    try {
      stream = s.session.request(headers, { endStream: body === undefined });
    } catch (e) {
      // The session went away between the grant and now (a GOAWAY, a close): nothing was sent.
      this.stage = Stage.Over;
      this.cancel.off(this);
      s.release();
      return this.tell(new NetworkError(REFUSED_STREAM, `no new stream on the backend's HTTP/2 connection (${(e as { code?: string }).code ?? (e as Error).message})`));
    }
    this.stream = stream;
    stream.on("response", (h, flags: number) => this.head(h, (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0));
    stream.on("headers", (h) => this.interim(h));
    stream.on("data", (c: Buffer) => this.data(c));
    stream.on("trailers", (h) => {
      if (this.res !== undefined) this.res.trailers = responseFields(h);
    });
    stream.on("end", () => this.ended());
    stream.on("error", (e: Error) => {
      this.error ??= e;
    });
    stream.on("close", () => this.closed());
    if (whole !== undefined) stream.end(whole);
    else if (body !== undefined) {
      this.body = body;
      body.attach(this);
      this.reportSending();
    }
  }

  /** No slot will come (SlotWaiter): the session it waited for did not open. */
  refused(e: unknown): void {
    if (this.stage !== Stage.Waiting) return;
    this.stage = Stage.Over;
    this.cancel.off(this);
    this.tell(e);
  }

  /** Tell the try its failure, once, never from inside the event that caused it. */
  private tell(e: unknown): void {
    const t = this.t;
    this.t = undefined;
    if (t !== undefined) queueMicrotask(() => t.tryFailed(e));
  }

  private interim(h: IncomingHttpHeaders): void {
    const status = statusOf(h);
    // 1xx only (RFC 9113 §8.1): 101 does not exist in HTTP/2 (§8.6).
    if (status < 100 || status > 199 || status === 101) return;
    this.req.own.interim(status, STATUS_CODES[status] ?? "", responseFields(h));
  }

  /** The final response head; `ended`: it carried END_STREAM (no body follows: gRPC's Trailers-Only form). */
  private head(h: IncomingHttpHeaders, ended: boolean): void {
    if (this.stage !== Stage.Sent) return;
    const status = statusOf(h);
    if (status < 200) {
      this.error = new NetworkError("ERR_H2_MALFORMED", `a malformed response head (:status ${JSON.stringify(h[constants.HTTP2_HEADER_STATUS])})`);
      return void this.stream?.close(constants.NGHTTP2_PROTOCOL_ERROR);
    }
    const fields = responseFields(h);
    let framing: Framing;
    const length = fields.get("content-length");
    // RFC 9110 §8.6: digits only (a list, even of equal values, is refused: the client side writes it on).
    if (length !== null && !/^[0-9]{1,15}$/.test(length)) {
      this.error = new NetworkError("ERR_H2_MALFORMED", `a malformed response head (content-length ${JSON.stringify(length)})`);
      return void this.stream?.close(constants.NGHTTP2_PROTOCOL_ERROR);
    }
    this.stage = Stage.Answered;
    if (this.req.method === "HEAD" || status === 204 || status === 304) framing = "none";
    else if (length !== null) {
      framing = length === "0" ? "none" : "length";
      // RFC 9113 §8.1.1: DATA that does not add up to content-length makes the response
      // malformed. Passed on unchecked, extra bytes would reach an HTTP/1.1 client as the start
      // of its next response on a kept-alive connection.
      this.remaining = Number(length);
    }
    // No declared length: the client side frames it (chunked to HTTP/1.1 clients).
    else framing = "chunked";
    const res = (this.res = new H2Response(this, status, fields, framing));
    // Complete now, so that a client side can answer in the same form: an HTTP/2 client's head
    // then ends its stream too (a gRPC client reads grpc-status from such a head only).
    if (ended) res.complete = true;
    const t = this.t;
    this.t = undefined;
    t?.headReceived(res);
  }

  private data(c: Buffer): void {
    const res = this.res;
    if (res === undefined || this.broken) return;
    if (this.remaining >= 0) {
      if (c.length > this.remaining) return this.malformed("more DATA than its content-length");
      this.remaining -= c.length;
    }
    const sink = res.sink;
    if (sink === undefined) {
      res.held.push(c);
      return;
    }
    sink.chunk(c);
    if (sink.congested()) {
      // The client is slow: stop reading, and the stream's window closes the backend's sending.
      const stream = this.stream!;
      stream.pause();
      sink.onDecongested(() => {
        if (!stream.destroyed) stream.resume();
      });
    }
  }

  private ended(): void {
    const res = this.res;
    if (res === undefined || res.complete) return;
    // Bun 1.4.5 ends a stream's readable side when its session dies too, with the stream reset
    // (CANCEL): only an end with no reset is the backend's END_STREAM (closed() fails the rest).
    if ((this.stream?.rstCode ?? 0) !== 0) return;
    if (this.remaining > 0) return this.malformed("less DATA than its content-length");
    res.complete = true;
    res.sink?.end();
  }

  /** The response broke its own framing: the stream is reset, and closed() fails what was begun (by the backend). */
  private malformed(why: string): void {
    this.error = new NetworkError("ERR_H2_MALFORMED", `a malformed response (${why})`);
    // Nothing more of it goes to the client (DATA already buffered may still be emitted).
    this.broken = true;
    if (this.stream !== undefined && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_PROTOCOL_ERROR);
  }

  /** The stream is closed, for whatever reason: its slot goes back, and what is unfinished fails. */
  private closed(): void {
    const stage = this.stage;
    this.stage = Stage.Over;
    this.cancel.off(this);
    this.body?.detach();
    this.body = undefined;
    this.progress = undefined;
    this.session?.release();
    this.session = undefined;
    if (stage === Stage.Sent) {
      // No response head: refused unprocessed, or broken.
      const stream = this.stream!;
      const code = stream.rstCode ?? 0;
      const refused = code === NGHTTP2_REFUSED_STREAM || (this.error as { code?: string } | undefined)?.code === "ERR_HTTP2_GOAWAY_SESSION";
      if (refused) return this.tell(new NetworkError(REFUSED_STREAM, "the backend refused the stream unprocessed (REFUSED_STREAM or past its GOAWAY)"));
      return this.tell(this.failure(code));
    }
    const res = this.res;
    if (res !== undefined && !res.complete && res.failure === undefined) {
      const by = this.abandoned ? "client" : "backend";
      const detail = this.abandoned ? "request abandoned" : this.describe(this.stream?.rstCode ?? 0);
      res.failure = { by, detail };
      res.sink?.fail(by, detail);
    }
  }

  private failure(code: number): NetworkError {
    const e = this.error as { code?: string; message?: string } | undefined;
    return new NetworkError(e?.code === "ERR_H2_MALFORMED" ? "ERR_H2_MALFORMED" : "ECONNRESET", this.describe(code));
  }

  /** The log's words for how the stream ended. */
  private describe(code: number): string {
    const e = this.error as { code?: string; message?: string } | undefined;
    if (code !== 0) return `HTTP/2 stream reset (${ERROR_NAMES[code] ?? `error ${code}`})`;
    return e?.message !== undefined ? `HTTP/2 stream closed (${e.code ?? e.message})` : "HTTP/2 stream closed";
  }

  /** Give the stream up (the try's cancel, or a discarded response): the backend is told CANCEL. */
  abandon(detail: string): void {
    if (this.stage === Stage.Over) return;
    if (this.stage === Stage.Waiting) {
      this.stage = Stage.Over;
      this.cancel.off(this);
      this.pool.withdraw(this.backend, this);
      return this.tell(new NetworkError("ABORT_ERR", detail));
    }
    this.abandoned = true;
    if (this.stage === Stage.Sent) this.tell(new NetworkError("ABORT_ERR", detail));
    const stream = this.stream!;
    if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
  }

  /** The try was given up (CancelListener): its timer, the deadline, or the client leaving. */
  onCancel(): void {
    this.abandon("request abandoned");
  }

  // BodySink: a streamed request body, as DATA frames under the stream's flow control.
  bodyChunk(chunk: Uint8Array): void {
    const stream = this.stream;
    if (stream === undefined || stream.destroyed || chunk.length === 0) return;
    stream.write(chunk);
    this.reportSending();
  }
  bodyEnd(): void {
    const stream = this.stream;
    this.body = undefined;
    if (stream === undefined || stream.destroyed) return;
    stream.end();
    this.reportSending(true);
  }
  get congested(): boolean {
    return this.stream?.writableNeedDrain ?? false;
  }
  onDecongested(fn: () => void): void {
    const stream = this.stream;
    if (stream === undefined || !stream.writableNeedDrain) return fn();
    stream.once("drain", fn);
  }

  /** timeouts.send's view (SendProgress): the backend holds us up only while the stream's buffer is full. */
  private reportSending(last = false): void {
    const progress = this.progress;
    const stream = this.stream;
    if (progress === undefined || stream === undefined) return;
    if (stream.writableNeedDrain) {
      progress.sendWaiting();
      // One listener per congestion, however many pieces arrive meanwhile.
      if (!this.drainHeard) {
        this.drainHeard = true;
        stream.once("drain", () => {
          this.drainHeard = false;
          this.reportSending(this.body === undefined);
        });
      }
      return;
    }
    progress.sendTaken();
    if (last) {
      this.progress = undefined;
      progress.requestSent();
    }
  }
}
