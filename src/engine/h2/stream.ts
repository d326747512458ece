/**
 * One HTTP/2 stream on a client connection of the socket engine: the request the loop forwards
 * (it is the ForwardRequest and its `own`, as an HTTP/1.1 Exchange is) and the sink of the
 * backend's answer (ResponseSink: the upstream connection writes the body to it directly).
 *
 * Request body: DATA frames go into a RequestBody (engine/socket/request-body.ts), so the
 * upstream wire sends it exactly as it sends an HTTP/1.1 client's, whole (replayable) up to
 * retry.bufferBody, streamed past it. While the upstream socket is congested the stream is
 * paused: node:http2 then stops returning flow-control credit (WINDOW_UPDATE), and the client
 * waits (RFC 9113 §5.2).
 *
 * Response body: written to the stream; when a write finds the stream's buffer full
 * (write() returns false: the client's window or the connection is exhausted), the upstream
 * connection is paused until `drain`, as the HTTP/1.1 Exchange pauses it on its outbox.
 */
import type { ServerHttp2Stream } from "node:http2";
import { constants } from "node:http2";
import type { BodyEnd, ForwardRequest, RequestDetails } from "../../forward/forward.ts";
import type { Routed } from "../../forward/router.ts";
import type { FieldList } from "../../http/fields.ts";
import { Cancel } from "../../forward/cancel.ts";
import { ClientFault, FRAMING_CODES, errorAnswer, type ErrorAnswer, type FramingStatus } from "../../errors.ts";
import { ALLOW } from "../../http/methods.ts";
import type { RequestBody } from "../socket/request-body.ts";
import { SocketResponse, type HeldResponse, type ResponseSink } from "../socket/upstream.ts";
import { mayTrail } from "../../http/trailers.ts";
import { Answering, type SocketRequest } from "../socket/request.ts";
import type { ProxiedClient } from "../socket/client.ts";
import { CONNECTION_SPECIFIC } from "./head.ts";
import type { H2Connection } from "./connection.ts";

const { NGHTTP2_PROTOCOL_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL } = constants;

export class H2Stream implements SocketRequest, ResponseSink, ForwardRequest<SocketRequest> {
  readonly cancel = new Cancel();
  readonly own = this;
  readonly clientIp: string;
  readonly proto: "http" | "https";
  /** Via's received-protocol (RFC 9110 §7.6.3). */
  readonly httpVersion = "2";
  replayable = true;
  routed!: Routed;
  body: RequestBody | undefined;
  /** HTTP/2 carries no upgrade (RFC 9113 §8.6). */
  readonly upgrade = undefined;
  private answering = Answering.Waiting;
  /** The request body has all arrived (END_STREAM). */
  parsed = false;
  private bytesOut = 0;
  private bodyEnd: BodyEnd | undefined;
  /** When the last piece of the request body came (the idle timeout's measure while it streams). */
  lastBodyAt = 0;
  /** The last write found the stream's buffer full: the upstream waits for `drain`. */
  private full = false;
  /** Since when a response write has waited for the client's window or socket; 0: not waiting. */
  blockedAt = 0;

  constructor(
    readonly conn: H2Connection,
    readonly stream: ServerHttp2Stream,
    readonly method: string,
    readonly target: string,
    readonly headers: FieldList,
  ) {
    this.clientIp = conn.client.clientIp;
    this.proto = conn.client.env.proto;
  }

  /** For the access log (ForwardRequest.details): read only when a chosen field needs it. */
  details(): RequestDetails {
    const tls = this.conn.client.tls();
    return { protocol: "HTTP/2.0", bytesIn: this.body?.received ?? 0, tlsVersion: tls?.version, tlsCipher: tls?.cipher };
  }

  get host(): string | undefined {
    return this.headers.get("host") ?? undefined;
  }
  get started(): boolean {
    return this.answering !== Answering.Waiting;
  }
  get responded(): boolean {
    return this.answering === Answering.Writing || this.answering === Answering.Done;
  }
  get done(): boolean {
    return this.answering >= Answering.Done;
  }

  proxied(): ProxiedClient {
    return this.conn.client.proxied();
  }

  /** Its turn: the loop takes it (`whole`: the body, if any, is all here and can be replayed). */
  forward(whole: boolean): void {
    this.answering = Answering.Started;
    this.replayable = whole;
    this.conn.client.env.forwarder.start(this);
  }

  /** Interim responses (103 Early Hints, 102) go on as informational HEADERS (RFC 9113 §8.1). */
  interim(status: number, _text: string, headers: FieldList): void {
    if (status === 100 || this.done || this.stream.destroyed) return;
    try {
      this.stream.additionalHeaders(responseFields(status, headers));
    } catch {
      // A 1xx is advisory: one that cannot be sent is dropped.
    }
  }

  respond(res: HeldResponse, end: BodyEnd): void {
    if (res.failure !== undefined && res.failure.by === "backend") {
      // Broke before a byte reached the client: the loop may still try another backend.
      throw Object.assign(new Error(res.failure.detail), { code: "ECONNRESET" });
    }
    if (this.stream.destroyed || this.stream.closed) {
      // Reset by the client while the head was on its way: give the try up (the cancel has fired).
      this.answering = Answering.Done;
      end.bodyEnded(0, { by: "client", detail: "stream reset" });
      res.discard();
      return;
    }
    const whole = res.whole;
    const held = res.held;
    const empty = res.complete && whole === undefined && held.length === 0 && res.trailers === undefined;
    const endStream = empty || this.method === "HEAD";
    // Only an HTTP/2 backend's answer can end with trailers (HTTP/1.1's are dropped by the
    // parser): such a stream waits for them after its last DATA, and gets an empty end when none came.
    const trailing = !endStream && !(res instanceof SocketResponse);
    try {
      this.stream.respond(responseFields(res.status, res.headers), { endStream, waitForTrailers: trailing });
    } catch (e) {
      // A head node:http2 will not send (a field value HTTP/2 cannot carry): nothing reached
      // the client, so the loop counts a failed try and answers 502; the body is not read.
      res.discard();
      throw e;
    }
    this.bodyEnd = end;
    this.answering = Answering.Writing;
    if (trailing) this.stream.once("wantTrailers", () => this.sendTrailers(res.trailers));
    if (this.method === "HEAD" || empty) {
      res.whole = undefined;
      res.held = [];
      if (res.complete) return this.finish();
      return res.attach(this);
    }
    if (whole !== undefined) {
      res.whole = undefined;
      // Copied out of the read buffer: the stream may hold it past this turn.
      this.chunk(whole.subarray(res.wholeStart, res.wholeEnd).slice());
    }
    for (const c of held) this.chunk(c);
    res.held = [];
    if (res.complete) return this.end();
    res.attach(this);
  }

  /** The backend's trailers (RFC 9113 §8.1: a HEADERS frame that ends the stream), those that may go on. */
  private sendTrailers(trailers: FieldList | undefined): void {
    const out: Record<string, string | string[]> = {};
    trailers?.forEach((value, name) => {
      const lower = name.toLowerCase();
      // §8.1: no pseudo-header fields in trailers; http/trailers.ts: what no trailer may carry.
      if (lower.charCodeAt(0) === 58 || CONNECTION_SPECIFIC.has(lower) || !mayTrail(lower, value)) return;
      const had = out[lower];
      out[lower] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
    });
    try {
      this.stream.sendTrailers(out);
    } catch (e) {
      this.conn.logError(e);
      this.resetAfterHead(NGHTTP2_INTERNAL_ERROR);
    }
  }

  // ResponseSink: the body as the upstream connection reads it.
  chunk(c: Uint8Array): void {
    if (c.length === 0 || this.done) return;
    this.bytesOut += c.length;
    // A HEAD answer has no body on HTTP/2 either (the backend sends none; this is a guard).
    if (this.method === "HEAD") return;
    if (!this.stream.write(c) && !this.full) {
      this.full = true;
      // A client that holds its window at zero (RFC 9113 §6.9.2) would hold the stream, and its
      // try to a backend, for ever: the connection's timeouts.idle bounds the wait (timedOut).
      this.blockedAt = performance.now();
      this.stream.once("drain", this.unblocked);
      this.conn.rearm();
    }
  }
  end(): void {
    if (this.done) return;
    if (this.method !== "HEAD") this.stream.end();
    this.finish();
  }
  fail(by: "client" | "backend", detail: string): void {
    if (this.done) return;
    this.settle({ by, detail });
    // The head went out: a reset tells the client the body is incomplete (RFC 9113 §8.1).
    this.resetAfterHead(by === "backend" ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_CANCEL);
  }

  /**
   * Reset a stream whose response head went out, so that the client cannot take what it got for
   * the whole answer. Bun 1.4.5's close(code) on a server stream that has sent its HEADERS ends
   * the stream cleanly instead (END_STREAM, or RST_STREAM with NO_ERROR: oven-sh/bun#33380;
   * measured: a node client read a cut body as complete), so the reset goes through destroy(),
   * which Bun sends as RST_STREAM INTERNAL_ERROR whatever `code` says: CANCEL is what the
   * client itself asked for, and it is gone either way.
   */
  private resetAfterHead(code: number): void {
    if (this.stream.destroyed) return;
    if (code === NGHTTP2_CANCEL) this.stream.close(code);
    else this.stream.destroy(new Error("the answer was cut"));
  }
  congested(): boolean {
    return this.full && !this.stream.destroyed;
  }
  onDecongested(fn: () => void): void {
    if (!this.full || this.stream.destroyed) return fn();
    this.stream.once("drain", fn);
  }

  private readonly unblocked = (): void => {
    this.full = false;
    this.blockedAt = 0;
  };

  /** Its answer waited timeouts.idle for the client to take more: the try is given up, the stream reset. */
  stalled(): void {
    // Our own reset, not the client's: it must not count against the client's reset budget.
    this.resetByUs = true;
    this.closed();
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_CANCEL);
  }

  /** The proxy reset this stream itself (stalled): its close is not a client's reset. */
  resetByUs = false;

  private finish(): void {
    this.settle();
    // Answered before the client finished its body: it is not wanted any more (RFC 9113 §8.1).
    if (!this.parsed && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_NO_ERROR);
  }

  private settle(failure?: { by: "client" | "backend"; detail: string }): void {
    const end = this.bodyEnd;
    this.bodyEnd = undefined;
    this.answering = Answering.Done;
    end?.bodyEnded(this.bytesOut, failure);
  }

  answer(a: ErrorAnswer | { status: number; headers: Record<string, string>; body: string }): void {
    this.answering = Answering.Done;
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    const body = this.method === "HEAD" || a.body === "" ? undefined : Buffer.from(a.body, "utf8");
    const fields: Record<string, string | number> = { ":status": a.status };
    for (const k in a.headers) {
      const name = k.toLowerCase();
      if (!CONNECTION_SPECIFIC.has(name)) fields[name] = a.headers[k]!;
    }
    fields["content-length"] = Buffer.byteLength(a.body);
    try {
      s.respond(fields, { endStream: body === undefined });
      if (body !== undefined) s.end(body);
      if (!this.parsed) s.close(constants.NGHTTP2_NO_ERROR);
    } catch (e) {
      this.conn.logError(e);
      s.close(NGHTTP2_INTERNAL_ERROR);
    }
  }

  /** A fault of the request found at its head (405, 413, 414, 400): answered at once, never forwarded. */
  answerFault(status: FramingStatus, detail: string): void {
    this.answering = Answering.Started;
    this.parsed = this.stream.readableEnded;
    this.answer(plainAnswer(status, detail));
  }

  gone(): void {
    this.answering = this.responded ? Answering.Done : Answering.Gone;
  }

  internalError(e: unknown): void {
    try {
      this.conn.logError(e);
      if (!this.responded) this.answer(plainAnswer(500, "internal error"));
      else this.resetAfterHead(NGHTTP2_INTERNAL_ERROR);
    } catch {
      this.stream.destroy();
    }
  }

  /** The client broke a rule of the body: stop what is in flight as its fault, or answer it. */
  refuse(status: FramingStatus, detail: string, fault?: ClientFault): void {
    this.body?.detach();
    if (this.started) {
      if (fault !== undefined) this.cancel.abort(fault);
      else {
        // A malformed body (RFC 9113 §8.1.1): the stream is reset, the try given up.
        this.cancel.abort();
        this.resetMalformed();
      }
      return;
    }
    this.answering = Answering.Started;
    if (fault === undefined) return this.resetMalformed();
    this.answer(plainAnswer(status, detail));
  }

  /** RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR. */
  resetMalformed(): void {
    this.answering = Answering.Done;
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_PROTOCOL_ERROR);
  }

  /** The client reset the stream, or the connection closed. */
  closed(): void {
    if (this.done) return;
    this.body?.detach();
    // The loop's listener gives the try up: its upstream connection is destroyed, never pooled
    // with a half-read body, and the sink is told (fail), which ends the body exactly once.
    this.cancel.abort();
  }
}

/**
 * A response head for HTTP/2: `:status` first, names lower-case (RFC 9113 §8.2), and the
 * connection-specific fields of an HTTP/1.1 backend removed (§8.2.2). Repeated fields stay
 * separate lines (an array per name), Set-Cookie above all.
 */
export function responseFields(status: number, headers: FieldList): Record<string, string | string[] | number> {
  const out: Record<string, string | string[] | number> = { ":status": status };
  const lines = headers.lines;
  for (let i = 0; i < lines.length; i += 5) {
    const name = lines[i + 1] as string;
    if (CONNECTION_SPECIFIC.has(name)) continue;
    const value = (lines[i + 2] as string | undefined) ?? headers.get(name) ?? "";
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [had as string, value];
  }
  return out;
}

export function plainAnswer(status: FramingStatus, detail: string): ErrorAnswer {
  return errorAnswer(FRAMING_CODES[status], detail, status === 405 ? { headers: { allow: ALLOW } } : undefined);
}

