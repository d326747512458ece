/**
 * One client connection of the socket engine: HTTP/1.1 parsed by llhttp (RFC 9112), requests
 * answered in order, one at a time, with keep-alive, pipelining, request bodies streamed with
 * backpressure, and the timeouts that keep a slow or silent client from holding anything.
 *
 * Pipelined requests (RFC 9112 §9.3.2) are parsed as they arrive and queued; only the first in
 * the queue talks to a backend and writes to the socket, so answers leave in request order and
 * no backend sees a request before the one ahead of it is answered. The queue and the bytes
 * held for it are bounded: past them the socket is paused and TCP pushes back.
 *
 * Framing faults answer 400 (or 413, 414, 417, 431, 501, 505) and close: after a bad head the
 * parser cannot know where the next request would start, and guessing is how requests are
 * smuggled (RFC 9112 §11.2).
 */
import type { Socket } from "bun";
import type { Forwarder, ForwardRequest, BodyEnd, RequestDetails } from "../../forward/forward.ts";
import { Answering, socketDownstream, type SocketRequest } from "./request.ts";
import { RoutedKind, type Routed } from "../../forward/router.ts";
import { FieldList } from "../../http/fields.ts";
import { ClientFault, FRAMING_CODES, errorAnswer, type ErrorAnswer, type FramingStatus } from "../../errors.ts";
import { Cancel } from "../../forward/cancel.ts";
import { stripHopByHop } from "../../http/headers.ts";
import type { Logger } from "../../log/logger.ts";
import { HTTPParser, METHODS, createParser, isParseError, type LlhttpParser, type ParseError, type ParserHost } from "./llhttp.ts";
import { Outbox, HIGH_WATER } from "./outbox.ts";
import { scanRequest } from "./scan.ts";
import { ALLOW, refusedMethod } from "../../http/methods.ts";
import { headWriter, latin1Bytes, type HeadWriter } from "./bytes.ts";
import { RequestBody, chunkHead, CRLF, LAST_CHUNK } from "./request-body.ts";
import { lastChunkWith, takesTrailers } from "../../http/trailers.ts";
import type { HeldResponse, ResponseSink, SocketResponse } from "./upstream.ts";
import { isWebSocketUpgrade, WEBSOCKET } from "../../http/upgrade.ts";
import { Tunnel } from "./tunnel.ts";
import { plainAddress } from "../../net/cidr.ts";
import { ProxyHeaderReader, type ProxyAccept, type ProxyEndpoint } from "../../net/proxy-protocol.ts";
import type { PreTls } from "../../tls/hello-first.ts";
import type { ClientCounts } from "../../net/client-counts.ts";
import { matchPreface, Preface } from "../h2/preface.ts";

export interface ClientLimits {
  maxHeaderSize: number;
  maxUriLength: number;
  /** Requests parsed ahead of the one being answered. */
  maxPipeline: number;
}

/**
 * A protocol that took a connection over from HTTP/1.1 (HTTP/2: engine/h2/connection.ts). The
 * ClientConnection keeps the socket, its outbox and the engine's bookkeeping, and passes the
 * socket's events on.
 */
export interface TakenOver {
  data(chunk: Uint8Array): void;
  /** The outbox is below its high mark again. */
  writable(): void;
  /** The client sent its FIN. */
  ended(): void;
  /** The socket closed. */
  closed(): void;
  /** The deadline set with setDeadline passed. */
  timedOut(now: number): void;
  /** Graceful stop. */
  goAway(): void;
}

/** What every connection of one listener shares. */
/** tls.clientAuth's request fields, lower-case: who a verified client certificate says the client is. */
export interface ClientCertFields {
  readonly subject?: string;
  readonly fingerprint?: string;
}

export interface ClientEnv {
  forwarder: Forwarder<SocketRequest, void>;
  /** tls.clientAuth: fields stripped from every request and set from a verified client certificate. */
  clientCert: ClientCertFields | undefined;
  limits: ClientLimits;
  /** ms for a request head to arrive in full (slow-loris bound). */
  headerTimeout: number;
  /** ms between requests on a kept-alive connection, and without progress while reading a body or writing a response. */
  idleTimeout: number;
  readonly logger: Logger;
  readonly connections: Set<ClientConnection>;
  /** Shutting down: answers carry Connection: close and idle connections are closed. */
  draining: boolean;
  /** "https" when the listener terminates TLS. */
  readonly proto: "http" | "https";
  /** Called when a connection closes (graceful stop waits for the last). */
  onClosed(c: ClientConnection): void;
  /** listeners[].proxyProtocol: each connection starts with a PROXY header from a trusted peer. */
  acceptProxy: ProxyAccept | undefined;
  /** Count a connection closed for an untrusted peer or no valid PROXY header in time (the first is logged). */
  proxyRefused(peer: string | undefined, detail: string): void;
  /** limits.maxConnectionsPerClient: this listener's open connections per client address, kept across reloads. */
  readonly clientConnections: ClientCounts;
  /** The 429 a connection over that bound gets before it is closed (engine.ts makes it when the bound is set). */
  clientRefusal: Buffer;
  /** Count a connection refused for that bound (the first is logged). */
  clientRefused(address: string): void;
  /**
   * HTTP/2 (`http2.enabled`): takes over a connection that opens with the preface (a plain
   * listener) or chose `h2` by ALPN (TLS), given the bytes read so far. Undefined: HTTP/1.1
   * only, and the preface is answered 505.
   */
  h2: ((c: ClientConnection, first: Uint8Array) => TakenOver) | undefined;
}

/**
 * The client of a connection as a PROXY header for a backend names it (pools.*.proxyProtocol),
 * made once per client connection when first asked. `key`: upstream connections that carried
 * this header are reused only for the same key (upstream.ts).
 */
export interface ProxiedClient {
  readonly key: string;
  readonly source: ProxyEndpoint;
  readonly destination: ProxyEndpoint;
}

/** What the sweeper checks a connection for. */
const enum Wait {
  None = 0,
  /** A request head is due: 408 and close when it does not come. */
  Head = 1,
  /** Between requests: close quietly. */
  Idle = 2,
  /** A request body is arriving: 408 when it stalls. */
  Body = 3,
}

const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");

/**
 * Reason phrases for the answers the proxy makes itself (RFC 9110 §15): its errors, and a
 * route's redirect or fixed response (any status; one not named here gets an empty phrase,
 * which RFC 9112 §4 allows).
 */
const REASONS: Record<number, string> = {
  200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
  301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
  401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone", 429: "Too Many Requests",
  400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
  414: "URI Too Long", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
  504: "Gateway Timeout", 505: "HTTP Version Not Supported",
};

/** One request and its answer on a client connection. */
export class Exchange implements ResponseSink, SocketRequest, ForwardRequest<SocketRequest> {
  /** Aborted when the client goes away, or with a ClientFault when it breaks a rule. */
  readonly cancel = new Cancel();
  // ForwardRequest's fields beside method, target, headers and cancel.
  readonly own = this;
  readonly clientIp: string;
  readonly proto: "http" | "https";
  /** Set when forwarding starts (request()). */
  replayable = true;
  /** Where it goes (forward/router.ts): decided once its head passed the checks, before its body is read. */
  routed!: Routed;
  body: RequestBody | undefined;
  /** The whole request has been parsed (apart from `answering`: an answer may come first). */
  parsed = false;
  private answering = Answering.Waiting;
  /** Close the connection after this answer. */
  closeAfter: boolean;
  /** The client asked for 100 Continue, not yet sent (ClientConnection.start sends it). */
  expectContinue = false;
  /** A framing fault found while parsing: answered in turn, then the connection closes. */
  fault: { status: FramingStatus; detail: string } | undefined;
  /** A WebSocket handshake (http/upgrade.ts): a 101 from the backend makes the connection a tunnel. */
  upgrade: string | undefined;
  /** The body goes to the client chunked (its length unknown). */
  private chunkedOut = false;
  /** The client sent `TE: trailers`: a chunked answer's last chunk carries the backend's trailers (http/trailers.ts). */
  private readonly takesTrailers: boolean;
  /** The backend's response being written, for its trailers at the end of the body. */
  private res: HeldResponse | undefined;
  private bytesOut = 0;
  private bodyEnd: BodyEnd | undefined;

  /** Forwarding (or answering a fault) has begun. */
  get started(): boolean {
    return this.answering !== Answering.Waiting;
  }
  /** Something was written for the answer. */
  get responded(): boolean {
    return this.answering === Answering.Writing || this.answering === Answering.Done;
  }
  /** Nothing more is written for this answer. */
  get done(): boolean {
    return this.answering >= Answering.Done;
  }

  /** Its turn has come: forwarding, or the answer to its fault, begins. */
  begin(): void {
    this.answering = Answering.Started;
  }

  /** A 101 from the backend: the connection is a tunnel now (ClientConnection.startTunnel). */
  tunnelled(): void {
    this.answering = Answering.Writing;
  }

  constructor(
    readonly conn: ClientConnection,
    readonly method: string,
    readonly target: string,
    readonly http10: boolean,
    keepAlive: boolean,
    readonly headers: FieldList,
  ) {
    this.closeAfter = !keepAlive || http10;
    this.takesTrailers = headers.has("te") && takesTrailers(headers.get("te"));
    this.clientIp = conn.clientIp;
    this.proto = conn.env.proto;
    if (http10) this.httpVersion = "1.0";
  }

  /** HTTP/1.0 for Via (ForwardRequest.httpVersion); absent: 1.1. */
  readonly httpVersion: "1.0" | undefined;

  /** For the access log (ForwardRequest.details): read only when a chosen field needs it. */
  details(): RequestDetails {
    const tls = this.conn.tls();
    return { protocol: this.http10 ? "HTTP/1.0" : "HTTP/1.1", bytesIn: this.body?.received ?? 0, tlsVersion: tls?.version, tlsCipher: tls?.cipher };
  }

  /** Interim responses from the backend (103 Early Hints, 102): passed on to HTTP/1.1 clients. */
  interim(status: number, statusText: string, headers: FieldList): void {
    // 100 Continue is ours to send (see start()); HTTP/1.0 clients get no 1xx (RFC 9110 §15.2).
    if (status === 100 || this.http10 || this.done) return;
    stripHopByHop(headers);
    this.conn.write(latin1Bytes(`HTTP/1.1 ${status} ${statusText}\r\n${headers.serialize()}\r\n`));
  }

  /** Write the backend's response head, then its body as it comes. */
  respond(res: HeldResponse, end: BodyEnd): void {
    if (res.failure !== undefined && res.failure.by === "backend") {
      // Broke before a byte reached the client: the loop may still try another backend.
      throw Object.assign(new Error(res.failure.detail), { code: "ECONNRESET" });
    }
    // Only an HTTP/1.1 connection answers a WebSocket handshake with 101 (HTTP/2 has no upgrade).
    if (res.framing === "tunnel") return this.conn.startTunnel(this, res as SocketResponse, end);
    this.bodyEnd = end;
    this.res = res;
    this.answering = Answering.Writing;
    const h = res.headers;
    const env = this.conn.env;
    if (env.draining) this.closeAfter = true;
    if (res.framing === "chunked" || res.framing === "close") {
      // Unknown length: chunked for HTTP/1.1 clients; an HTTP/1.0 client reads to the close.
      if (this.http10) this.closeAfter = true;
      else {
        this.chunkedOut = true;
        h.append("Transfer-Encoding", "chunked");
      }
    }
    if (this.closeAfter) h.append("Connection", "close");
    else if (this.http10) h.append("Connection", "keep-alive");
    const w = headWriter.begin().text("HTTP/1.1 ").int(res.status).text(" ").text(res.statusText).text("\r\n").fields(h);
    const whole = res.whole;
    if (whole !== undefined) {
      // The common small answer, come whole in one read with a Content-Length (so never
      // chunked here, and nothing held): head and body in one buffer, one write.
      res.whole = undefined;
      this.bytesOut += res.wholeEnd - res.wholeStart;
      this.conn.write(w.doneCopying(whole, res.wholeStart, res.wholeEnd), true);
    } else {
      this.headAndHeld(res, w);
    }
    res.held = [];
    if (res.complete) return this.finish();
    res.attach(this);
  }

  /** The head and the body pieces held so far, in as few writes as they allow. */
  private headAndHeld(res: HeldResponse, w: HeadWriter): void {
    const held = res.held;
    if (held.length === 0 && !(res.complete && this.chunkedOut)) {
      this.conn.write(w.done(), true);
    } else if (held.length === 1 && !this.chunkedOut) {
      // One piece (a body that came in a read of its own): with the head, one write.
      const body = held[0]!;
      this.bytesOut += body.length;
      this.conn.write(w.done(body), true);
    } else {
      const parts: Uint8Array[] = [w.done().slice()];
      for (const c of held) this.frame(parts, c);
      if (res.complete && this.chunkedOut) parts.push(this.lastChunk());
      this.conn.write(Buffer.concat(parts));
    }
  }

  private frame(parts: Uint8Array[], c: Uint8Array): void {
    this.bytesOut += c.length;
    if (this.chunkedOut) parts.push(chunkHead(c.length), c, CRLF);
    else parts.push(c);
  }

  // ResponseSink: the body after the head, as the upstream connection reads it.
  chunk(c: Uint8Array): void {
    if (c.length === 0) return;
    this.bytesOut += c.length;
    if (this.chunkedOut) this.conn.write(Buffer.concat([chunkHead(c.length), c, CRLF]));
    else this.conn.write(c);
  }
  end(): void {
    if (this.chunkedOut) this.conn.write(this.lastChunk());
    this.finish();
  }

  /** The last chunk, with the backend's trailers when it sent some (HTTP/2) and the client takes them. */
  private lastChunk(): Uint8Array {
    const trailers = this.res?.trailers;
    return (trailers !== undefined && this.takesTrailers ? lastChunkWith(trailers) : undefined) ?? LAST_CHUNK;
  }
  fail(by: "client" | "backend", detail: string): void {
    // The head went out: the only honest signal left is to cut the connection, so the
    // client sees a short body (or a missing last chunk), never a complete-looking one.
    this.settle({ by, detail });
    this.conn.destroy();
  }
  congested(): boolean {
    return this.conn.congested;
  }
  onDecongested(fn: () => void): void {
    this.conn.releaseUpstream = fn;
  }

  /** The answer is complete on our side. */
  private finish(): void {
    // Answered before the request body was all read (a backend that answers early): the rest
    // of that body is still coming, so this connection cannot carry another request.
    if (!this.parsed) this.closeAfter = true;
    this.settle();
    this.conn.exchangeDone(this);
  }

  private settle(failure?: { by: "client" | "backend"; detail: string }): void {
    const end = this.bodyEnd;
    this.bodyEnd = undefined;
    this.answering = Answering.Done;
    end?.bodyEnded(this.bytesOut, failure);
  }

  /** An answer the proxy makes itself. */
  answer(a: ErrorAnswer | { status: number; headers: Record<string, string>; body: string }): void {
    this.answering = Answering.Done;
    // After a framing fault the rest of the connection cannot be trusted (RFC 9112 §11.2); a
    // request whose body is still arriving leaves the same doubt. A request without a body is
    // whole once its head is: an answer made at once (a route's redirect, no route) keeps the
    // connection.
    const bodyPending = this.body !== undefined && !this.parsed;
    if (this.conn.env.draining || this.fault !== undefined || bodyPending || a.status === 408 || a.status === 413) this.closeAfter = true;
    let head = `HTTP/1.1 ${a.status} ${REASONS[a.status] ?? ""}\r\n`;
    for (const k in a.headers) head += `${k}: ${a.headers[k]}\r\n`;
    head += `content-length: ${Buffer.byteLength(a.body)}\r\n`;
    if (this.closeAfter) head += "connection: close\r\n";
    // The answer to HEAD has the fields GET's would, and no body (RFC 9110 §9.3.2). The head is
    // Latin-1 (field values are checked to be); the body is UTF-8, as its length counts it.
    const headBytes = latin1Bytes(`${head}\r\n`);
    this.conn.write(this.method === "HEAD" || a.body === "" ? headBytes : Buffer.concat([headBytes, Buffer.from(a.body, "utf8")]));
    this.conn.exchangeDone(this);
  }

  /** The client went away: nothing to write. */
  gone(): void {
    this.answering = this.responded ? Answering.Done : Answering.Gone;
  }

  /** The Host field as sent, for the route table (RouteRequest). */
  get host(): string | undefined {
    return this.headers.get("host") ?? undefined;
  }

  proxied(): ProxiedClient {
    return this.conn.proxied();
  }

  internalError(e: unknown): void {
    this.conn.internalError(this, e);
  }

  /** As a ForwardRequest for the shared loop: the exchange is one itself (no object per request). */
  request(replayable: boolean): ForwardRequest<SocketRequest> {
    this.replayable = replayable;
    return this;
  }

  /** The client went away or broke a rule: whatever is in flight for this request stops. */
  abort(reason?: unknown): void {
    this.cancel.abort(reason);
  }
}

/**
 * The socket engine's downstream half of the wire (forward/forward.ts, DownstreamWire): every
 * answer to a request is written by its own Exchange, on its client connection (an HTTP/2
 * stream's by its H2Stream: request.ts dispatches). The upstream half is upstream-wire.ts.
 */
export const clientWire = socketDownstream;

/** A client connection's TLS, for the access log. */
export interface ConnectionTls {
  readonly version: string;
  readonly cipher: string | undefined;
}

export class ClientConnection implements ParserHost {
  readonly outbox: Outbox;
  /** The peer's address, or, after a PROXY header (acceptProxy), the client's it names. */
  clientIp: string;
  /** The PROXY header being read: nothing else is read until it is whole (acceptProxy only). */
  private proxyReader: ProxyHeaderReader | undefined;
  /** What a PROXY header named: the client's port and the address it connected to. */
  private named: { source: ProxyEndpoint; destination: ProxyEndpoint } | undefined;
  private proxiedClient: ProxiedClient | undefined;
  private readonly parser: LlhttpParser;
  /** queue[0] is being answered; the last may still be parsing. */
  private readonly queue: Exchange[] = [];
  private parsing: Exchange | undefined;
  /** A fault stopped parsing: what else arrives is ignored. */
  private broken = false;
  /** llhttp holds no partial message: the next bytes may take the fast path (ParserHost). */
  atStart = true;
  private paused = false;
  closed = false;
  /** performance.now() deadline for what `wait` says; 0 for none. */
  deadline = 0;
  private wait = Wait.None;
  /** Writes are stuck behind a client that does not read: deadline for any progress. */
  writeDeadline = 0;
  /** A WebSocket handshake is with the backend: bytes after it are held for the tunnel. */
  private upgrading: Exchange | undefined;
  private early: Uint8Array[] = [];
  private earlyBytes = 0;
  /** After a 101: the connection is a byte tunnel (tunnel.ts), and HTTP is over on it. */
  tunnel: Tunnel | undefined;
  /**
   * The address this connection is counted under in env.clientConnections, until onClose
   * releases it (cleared then, so it is released once); undefined before its PROXY header.
   */
  private countedAs: string | undefined;
  /** HTTP/2 took the connection over (ClientEnv.h2). */
  h2: TakenOver | undefined;
  /**
   * The first bytes are still to tell HTTP/1.1 from HTTP/2 (ClientEnv.h2); a strict prefix of
   * the preface read so far is kept here.
   */
  private sniffing: boolean;
  private prefix: Uint8Array | undefined;

  /** The connection's TLS version and cipher, read once when the access log first asks (tls()). */
  private tlsInfo: ConnectionTls | null | undefined = undefined;

  /**
   * The TLS version ("TLSv1.3") and cipher (OpenSSL's name, as nginx's $ssl_cipher) of this
   * connection, or undefined when it is plain.
   */
  tls(): ConnectionTls | undefined {
    if (this.tlsInfo === undefined) {
      const socket = this.socket as Socket<ClientConnection> & { getTLSVersion?(): string | null; getCipher?(): { name?: string } | null };
      const version = this.env.proto === "https" ? socket.getTLSVersion?.() : undefined;
      this.tlsInfo = version ? { version, cipher: socket.getCipher?.()?.name ?? undefined } : null;
    }
    return this.tlsInfo ?? undefined;
  }

  /** `admitted`: the client address the engine already counted it under (no PROXY header to wait for). */
  constructor(
    readonly socket: Socket<ClientConnection>,
    readonly env: ClientEnv,
    admitted: string | undefined,
    /** On TLS, the PROXY header read before the handshake (tls/hello-first.ts): none is read here then. */
    proxied?: PreTls["proxied"],
  ) {
    this.outbox = new Outbox(socket as Socket<unknown>);
    this.countedAs = admitted;
    this.clientIp = admitted ?? plainAddress(socket.remoteAddress);
    this.parser = createParser(HTTPParser.REQUEST, env.limits.maxHeaderSize, this);
    // TLS: only ALPN can choose HTTP/2 (none offered when it is off); plain: the preface is looked for either way.
    this.sniffing = env.h2 !== undefined || env.proto === "http";
    if (proxied !== undefined) {
      this.named = proxied.named;
      this.expect(Wait.Head, env.headerTimeout);
    } else if (env.acceptProxy !== undefined) {
      // The head deadline runs for the PROXY header first (timedOut closes rather than answer 408).
      this.proxyReader = new ProxyHeaderReader();
      this.expect(Wait.Head, env.acceptProxy.timeoutMs);
    } else {
      this.expect(Wait.Head, env.headerTimeout);
    }
  }

  /** The fields a verified client certificate gives this connection's requests (tls.clientAuth), read once. */
  private certValues: [name: string, value: string][] | undefined;

  /**
   * tls.clientAuth: remove the certificate fields a client sent (none may forge them), then
   * set them from this connection's client certificate when the handshake verified it (an
   * optional mode lets in clients without one, or with one that did not verify: they get none).
   * The HTTP/2 front calls it for each stream's head too (engine/h2/connection.ts).
   */
  certify(headers: FieldList): void {
    const f = this.env.clientCert!;
    // Also the spellings with "_" for "-": CGI, WSGI, PHP and nginx (underscores_in_headers) read
    // x_client_subject as X-Client-Subject, so a forged one would pass as ours.
    for (const name of [f.subject, f.fingerprint]) {
      if (name === undefined) continue;
      headers.delete(name);
      headers.delete(name.replace(/-/g, "_"));
    }
    this.certValues ??= certificateFields(this.socket, f);
    for (const [name, value] of this.certValues) headers.append(name, value);
  }

  /** This connection's client for a PROXY header to a backend (pools.*.proxyProtocol). */
  proxied(): ProxiedClient {
    if (this.proxiedClient !== undefined) return this.proxiedClient;
    const n = this.named;
    const source = n?.source ?? { address: this.clientIp, port: this.socket.remotePort };
    const destination = n?.destination ?? { address: this.socket.localAddress, port: this.socket.localPort };
    return (this.proxiedClient = { key: `${source.address} ${source.port} ${destination.address} ${destination.port}`, source, destination });
  }

  /**
   * Bytes while the PROXY header is being read: what follows it, once it is whole (maybe
   * empty); undefined while more is needed or when the connection was closed for a bad one.
   */
  private readProxy(chunk: Uint8Array): Uint8Array | undefined {
    const reader = this.proxyReader!;
    const r = reader.push(chunk);
    if (r.state === "need-more") return undefined;
    if (r.state === "invalid") {
      this.refuseProxy(r.reason);
      return undefined;
    }
    if (r.state === "done") {
      this.clientIp = plainAddress(r.source.address);
      this.named = { source: r.source, destination: r.destination };
    }
    this.proxyReader = undefined;
    // The client is known only now: counted (or refused) under the address the header named,
    // never the peer's, which is the proxy in front for every client it carries.
    if (!this.env.clientConnections.admit(this.clientIp)) {
      this.env.clientRefused(this.clientIp);
      this.write(this.env.clientRefusal);
      this.closeAfterFlush();
      return undefined;
    }
    this.countedAs = this.clientIp;
    this.expect(Wait.Head, this.env.headerTimeout);
    return reader.rest().slice();
  }

  private refuseProxy(detail: string): void {
    this.env.proxyRefused(this.socket.remoteAddress, detail);
    this.destroy();
  }

  private expect(wait: Wait, ms: number): void {
    this.wait = wait;
    this.deadline = wait === Wait.None || ms <= 0 ? 0 : performance.now() + ms;
  }

  /** `transient`: a view of the shared head buffer (bytes.ts), copied if it cannot all go now. */
  write(data: Uint8Array, transient = false): void {
    if (this.closed) return;
    this.outbox.write(data, transient);
    if (this.outbox.full && this.writeDeadline === 0) {
      this.writeDeadline = performance.now() + this.env.idleTimeout;
    }
  }

  /** Whether this connection's socket holds too much unwritten: the backend is paused. */
  get congested(): boolean {
    return this.outbox.full;
  }

  onData(chunk: Uint8Array): void {
    if (this.proxyReader !== undefined) {
      if (this.closed) return;
      const rest = this.readProxy(chunk);
      if (rest === undefined || rest.length === 0) return;
      chunk = rest;
    }
    if (this.h2 !== undefined) return this.h2.data(chunk);
    if (this.sniffing) {
      const rest = this.sniff(chunk);
      if (rest === undefined) return;
      chunk = rest;
    }
    if (this.tunnel !== undefined) return this.tunnel.clientData(chunk);
    if (this.upgrading !== undefined) return this.holdEarly(chunk);
    if (this.broken || this.closed) return;
    // The first byte of a new request after an idle gap: its head is now due.
    if (this.wait === Wait.Idle) this.expect(Wait.Head, this.env.headerTimeout);
    else if (this.wait === Wait.Body) this.expect(Wait.Body, this.env.idleTimeout);
    if (this.atStart && this.parsing === undefined) {
      // The fast path: whole plain requests, scanned without llhttp (scan.ts says when).
      let off = 0;
      const max = this.env.limits.maxHeaderSize;
      while (off < chunk.length && !this.broken) {
        const r = scanRequest(chunk, off, max);
        if (r === undefined) break;
        this.headParsed(r.method, r.target, 1, r.http10 ? 0 : 1, FieldList.fromScan(r.fields, chunk), false, r.keepAlive);
        if (r.end > r.headEnd) this.onBody(chunk.subarray(r.headEnd, r.end));
        this.onMessageComplete();
        off = r.end;
      }
      if (off === chunk.length || this.broken) return this.applyBackpressure();
      if (off > 0) chunk = chunk.subarray(off);
    }
    const r = this.parser.execute(chunk);
    if (isParseError(r)) this.parseFailed(r);
    else if (r !== chunk.length && !this.broken) {
      // llhttp stops early only after an Upgrade/CONNECT head, handled in onHead.
      this.broken = true;
    } else if (r < chunk.length && this.upgrading !== undefined) {
      // Bytes after a WebSocket handshake's head belong to the tunnel, if there is to be one.
      this.holdEarly(chunk.subarray(r));
    }
    this.applyBackpressure();
  }

  /**
   * The connection's first bytes: HTTP/2 takes it over on TLS when ALPN chose `h2` (RFC 7301),
   * on a plain listener when it opens with the preface (RFC 9113 §3.3, prior knowledge). The
   * bytes to go on parsing as HTTP/1.1, or undefined when nothing is left to parse.
   */
  private sniff(chunk: Uint8Array): Uint8Array | undefined {
    if (this.closed) return undefined;
    let bytes = chunk;
    if (this.env.proto === "https") {
      this.sniffing = false;
      if ((this.socket as { alpnProtocol?: string | false | null }).alpnProtocol !== "h2") return chunk;
    } else {
      if (this.prefix !== undefined) bytes = Buffer.concat([this.prefix, chunk]);
      const m = matchPreface(bytes);
      if (m === Preface.Partial) {
        this.prefix = bytes.slice();
        return undefined;
      }
      this.sniffing = false;
      this.prefix = undefined;
      if (m === Preface.No) return bytes;
      if (this.env.h2 === undefined) {
        // http2.enabled false: the version is what is refused (RFC 9110 §15.6.6).
        const ex = new Exchange(this, "PRI", "*", false, false, new FieldList());
        this.queue.push(ex);
        this.refuseHead(ex, { status: 505, detail: "HTTP/2 is not enabled on this listener (http2.enabled)" });
        return undefined;
      }
    }
    this.expect(Wait.None, 0);
    this.h2 = this.env.h2!(this, bytes);
    return undefined;
  }

  /** HTTP/2's time limit (TakenOver.timedOut is called when it passes); 0: none. */
  setDeadline(ms: number): void {
    this.deadline = ms <= 0 ? 0 : performance.now() + ms;
  }

  /**
   * Tunnel bytes that came before the backend's 101 (a client should wait for it, RFC 6455
   * §4.1, but the bytes are kept in order if it does not); past HIGH_WATER reading pauses.
   */
  private holdEarly(chunk: Uint8Array): void {
    this.early.push(chunk);
    this.earlyBytes += chunk.length;
    if (this.earlyBytes > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /**
   * The backend answered a WebSocket handshake with 101: pass its head on, then relay bytes
   * both ways until either side closes. The loop's BodyEnd is told when the tunnel ends, and
   * only then is the backend's in-flight unit released.
   */
  startTunnel(ex: Exchange, res: SocketResponse, end: BodyEnd): void {
    ex.tunnelled();
    const upstream = res.conn;
    const h = res.headers;
    // The header rules removed the hop-by-hop fields; this hop switches too (RFC 9110 §7.8).
    h.set("upgrade", WEBSOCKET);
    h.set("connection", "upgrade");
    const head = latin1Bytes(`HTTP/1.1 101 ${res.statusText || "Switching Protocols"}\r\n${h.serialize()}\r\n`);
    const tunnel = new Tunnel(this.socket as Socket<unknown>, upstream.socket as Socket<unknown>, upstream.backend, end);
    this.tunnel = tunnel;
    this.upgrading = undefined;
    this.expect(Wait.None, 0);
    this.writeDeadline = 0;
    const toClient = this.outbox.takeAll();
    toClient.push(head);
    const toBackend = upstream.becomeTunnel(tunnel);
    const early = this.early;
    this.early = [];
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    tunnel.start(toClient, res.held, toBackend, early);
    res.held = [];
  }

  /** Pause reading while too much is queued: pipelined requests, or a body the backend is slow to take. */
  private applyBackpressure(): void {
    if (this.paused || this.closed) return;
    const cur = this.parsing;
    const tooMany = this.queue.length > this.env.limits.maxPipeline;
    const body = cur?.body;
    const heldTooMuch = body !== undefined && !cur!.started && body.held > Math.max(HIGH_WATER, cur!.routed.bufferBody);
    const congested = body !== undefined && body.congested;
    if (!tooMany && !heldTooMuch && !congested) return;
    this.paused = true;
    this.socket.pause();
    if (congested) body!.onDecongested(() => this.resume());
    // Otherwise resumed when an exchange completes or starts.
  }

  private resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.socket.resume();
  }

  /** From llhttp (ParserHost): a request head. */
  onHeadersComplete(
    major: number, minor: number, fields: string[] | undefined, methodIndex: number | undefined, url: string | undefined,
    _status: number | undefined, _text: string | undefined, upgrade: boolean, keepAlive: boolean,
  ): number {
    // A fault already ended this connection's requests (a head refused, a body over the limit),
    // but llhttp goes on through the rest of the read it was given: a head after that point is
    // not a request, since where it starts rests on a message we refused (RFC 9112 §11.2).
    if (this.broken) return 0;
    this.headParsed(METHODS[methodIndex ?? 1] ?? "GET", url ?? "", major, minor, new FieldList(fields ?? []), upgrade, keepAlive);
    return 0;
  }

  /** A request head, from llhttp or the scanner: queue its exchange, check it, start it when its turn comes. */
  private headParsed(method: string, url: string, major: number, minor: number, headers: FieldList, upgrade: boolean, keepAlive: boolean): void {
    const http10 = major === 1 && minor === 0;
    if (this.env.clientCert !== undefined) this.certify(headers);
    const ex = new Exchange(this, method, url, http10, keepAlive, headers);
    this.queue.push(ex);
    this.parsing = ex;
    const fault = checkHead(ex, major, minor, url, upgrade, this.env.limits);
    if (fault !== undefined) return this.refuseHead(ex, fault);
    // Routed before the body is read: its route may have its own limits.maxBodySize.
    const routed = (ex.routed = this.env.forwarder.route(ex));
    const te = headers.has("transfer-encoding");
    const cl = te ? 0 : Number(headers.get("content-length") ?? 0);
    if (cl > routed.maxBodySize) return this.refuseHead(ex, { status: 413, detail: `Content-Length ${cl} over ${routed.maxBodySize}` });
    if (te || cl > 0) ex.body = new RequestBody(te ? -1 : cl);
    const expect = headers.get("expect");
    if (expect !== null) {
      headers.delete("expect");
      // We answer 100 Continue ourselves when we are ready for the body (RFC 9110 §10.1.1), so
      // the backend is not asked to.
      ex.expectContinue = !http10 && ex.body !== undefined;
    }
    // llhttp stops after an Upgrade head; nothing after it on this connection is parsed. A
    // WebSocket handshake keeps what follows for its tunnel.
    if (upgrade) {
      this.broken = true;
      if (ex.upgrade !== undefined) this.upgrading = ex;
    }
    this.expect(ex.body ? Wait.Body : Wait.None, this.env.idleTimeout);
    if (this.queue[0] === ex) this.start(ex);
  }

  /** A head refused: answered in its turn, and nothing more is read on this connection. */
  private refuseHead(ex: Exchange, fault: { status: FramingStatus; detail: string }): void {
    ex.fault = fault;
    ex.parsed = true;
    this.broken = true;
    this.parsing = undefined;
    this.socket.pause();
    this.paused = true;
    if (this.queue[0] === ex) this.start(ex);
  }

  onBody(chunk: Uint8Array): void {
    const ex = this.parsing;
    if (ex === undefined || ex.body === undefined) return;
    const body = ex.body;
    if (body.received + chunk.length > ex.routed.maxBodySize) {
      // Only a chunked body can get here: a declared length over the limit was refused at the head.
      this.bodyTooLarge(ex);
      return;
    }
    body.push(chunk);
    // A chunked body past the retry buffer streams from here on.
    if (ex === this.queue[0] && !ex.started && body.held > ex.routed.bufferBody) this.forward(ex, false);
  }

  private bodyTooLarge(ex: Exchange): void {
    this.broken = true;
    this.parsing = undefined;
    ex.parsed = true;
    const detail = `body over ${ex.routed.maxBodySize} bytes`;
    if (ex.started) {
      // A try is in flight: stop it as the client's fault; the loop answers 413.
      ex.body?.detach();
      ex.abort(new ClientFault("SY_BODY_TOO_LARGE", detail));
    } else {
      ex.fault = { status: 413, detail };
      if (ex === this.queue[0]) this.start(ex);
    }
  }

  onMessageComplete(): void {
    const ex = this.parsing;
    if (ex === undefined) return;
    this.parsing = undefined;
    ex.parsed = true;
    ex.body?.end();
    if (ex === this.queue[0]) {
      if (!ex.started) this.start(ex);
      this.expect(Wait.None, 0);
    } else if (this.queue.length > 0) {
      this.expect(Wait.None, 0);
    } else {
      // Answered at once, before this (a route's redirect or fixed answer, no route), and
      // nothing queued: the connection is between requests, and keeps that deadline, or a
      // client could hold it with none at all.
      this.expect(Wait.Idle, this.env.idleTimeout);
    }
  }

  private parseFailed(e: ParseError): void {
    this.broken = true;
    const status = e.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
    const detail = `${e.code}${e.reason ? `: ${e.reason}` : ""}`;
    const ex = this.parsing;
    if (ex !== undefined && ex.started) {
      // A chunked body went bad while streaming: the backend got a body that will never end;
      // stop the try (the client's fault, not the backend's) and close.
      ex.body?.detach();
      ex.abort(new ClientFault("SY_CLIENT_TIMEOUT", detail));
      this.parsing = undefined;
      return;
    }
    let target = ex;
    if (target === undefined) {
      target = new Exchange(this, "GET", "", false, false, new FieldList());
      this.queue.push(target);
    }
    this.parsing = undefined;
    target.fault = { status, detail };
    target.parsed = true;
    if (target === this.queue[0]) this.start(target);
  }

  /** queue[0] is up: answer a fault, or forward it once its body allows. */
  private start(ex: Exchange): void {
    if (ex.fault !== undefined) {
      ex.begin();
      ex.answer(plainAnswer(ex.fault.status, ex.fault.detail));
      return;
    }
    const body = ex.body;
    // Answered by the proxy (a guard's refusal, a redirect, a fixed answer, no route): at once,
    // with no 100 Continue and without reading a body; the connection closes after it when a
    // body was coming (Exchange.answer), since the rest of it cannot be told from a next request.
    if (body === undefined || ex.parsed || ex.routed.kind === RoutedKind.Answer) return this.forward(ex, true);
    if (ex.expectContinue) {
      ex.expectContinue = false;
      this.write(CONTINUE);
    }
    // Wait for the body: onBody streams it once retry.bufferBody has arrived, onMessageComplete
    // sends it whole. A client dribbling its body from the start holds nothing upstream.
  }

  private forward(ex: Exchange, whole: boolean): void {
    ex.begin();
    this.resume();
    // No promise: the answer is written by the wire, and a fault of ours comes back through
    // its internalError (below).
    this.env.forwarder.start(ex.request(whole));
  }

  /** A fault of ours broke the loop for `ex`: 500 if nothing was written yet, else cut. */
  internalError(ex: Exchange, e: unknown): void {
    try {
      this.env.logger.error(`socket engine: ${(e as Error)?.stack ?? e}`);
      if (!ex.responded) ex.answer(plainAnswer(500, "internal error"));
      else this.destroy();
    } catch {
      this.destroy();
    }
  }

  /** The answer to queue[0] is complete: move on to the next request, or close. */
  exchangeDone(ex: Exchange): void {
    if (this.queue[0] !== ex) return;
    this.queue.shift();
    if (ex.closeAfter || this.env.draining && this.queue.length === 0) {
      this.closeAfterFlush();
      return;
    }
    const next = this.queue[0];
    if (next !== undefined) {
      this.start(next);
      this.resume();
      return;
    }
    this.expect(this.parsing === undefined ? Wait.Idle : Wait.Head, this.parsing === undefined ? this.env.idleTimeout : this.env.headerTimeout);
    this.resume();
  }

  /** The client sent its FIN: answer what was asked, then close. */
  onEnd(): void {
    if (this.tunnel !== undefined) return this.tunnel.clientEnded();
    if (this.h2 !== undefined) return this.h2.ended();
    this.broken = true;
    // A request still being received can never be completed: the client has left.
    if (this.parsing !== undefined) return this.destroy();
    const last = this.queue[this.queue.length - 1];
    if (last === undefined) this.closeAfterFlush();
    else last.closeAfter = true;
  }

  /** Graceful stop: close now if nothing is in flight, otherwise after the current answer. */
  drain(): void {
    if (this.h2 !== undefined) return this.h2.goAway();
    if (this.queue.length === 0) this.closeAfterFlush();
  }

  closeAfterFlush(): void {
    if (this.closed) return;
    this.broken = true;
    this.expect(Wait.None, 0);
    if (this.outbox.pending === 0) this.socket.end();
    else this.outbox.onDrained = () => this.socket.end();
  }

  /** Cut the connection now. */
  destroy(): void {
    if (this.closed) return;
    this.socket.terminate();
  }

  onDrain(): void {
    if (this.tunnel !== undefined) return this.tunnel.clientDrain();
    this.outbox.flush();
    if (this.outbox.pending === 0) this.writeDeadline = 0;
    else this.writeDeadline = performance.now() + this.env.idleTimeout;
    const release = this.releaseUpstream;
    if (release !== undefined && !this.outbox.full) {
      this.releaseUpstream = undefined;
      release();
    }
    if (this.h2 !== undefined && !this.outbox.full) this.h2.writable();
  }

  /** Set by a paused upstream: resume it once the client has taken what was queued. */
  releaseUpstream: (() => void) | undefined;

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.tunnel?.clientClose();
    this.h2?.closed();
    this.parser.close?.();
    for (const ex of this.queue) ex.abort();
    this.queue.length = 0;
    if (this.countedAs !== undefined) {
      this.env.clientConnections.release(this.countedAs);
      this.countedAs = undefined;
    }
    this.env.connections.delete(this);
    this.env.onClosed(this);
  }

  /** From the sweeper: a deadline passed. */
  timedOut(now: number): void {
    if (this.writeDeadline !== 0 && now >= this.writeDeadline) return this.destroy();
    if (this.deadline === 0 || now < this.deadline) return;
    if (this.h2 !== undefined) return this.h2.timedOut(now);
    // No whole PROXY header in time: closed, not answered (nothing HTTP has begun).
    if (this.proxyReader !== undefined) return this.refuseProxy("no complete PROXY header in time");
    const wait = this.wait;
    this.expect(Wait.None, 0);
    switch (wait) {
      case Wait.Idle:
        this.closeAfterFlush();
        return;
      case Wait.Head: {
        if (this.queue.length > 0) return this.destroy();
        // Slow-loris: the head did not arrive in time (RFC 9110 §15.5.9).
        this.broken = true;
        const ex = new Exchange(this, "GET", "", false, false, new FieldList());
        ex.fault = { status: 408, detail: "request head not received in time" };
        this.queue.push(ex);
        this.start(ex);
        return;
      }
      case Wait.Body: {
        const ex = this.parsing;
        this.broken = true;
        if (ex !== undefined && ex.started) ex.abort(new ClientFault("SY_CLIENT_TIMEOUT", `no body bytes for ${this.env.idleTimeout}ms`));
        else if (ex !== undefined && ex === this.queue[0]) {
          ex.fault = { status: 408, detail: "request body stalled" };
          this.start(ex);
        } else this.destroy();
        return;
      }
    }
  }
}

/**
 * Head checks llhttp leaves to us (it already refuses Content-Length with Transfer-Encoding,
 * bad or differing Content-Length, obs-fold, whitespace before a colon and control characters).
 */
function checkHead(ex: Exchange, major: number, minor: number, url: string, upgrade: boolean, limits: ClientLimits): { status: FramingStatus; detail: string } | undefined {
  if (major !== 1 || minor > 1) return { status: 505, detail: `HTTP/${major}.${minor} is not supported` };
  // CONNECT (not a forward proxy) and TRACE (it would reflect credentials): http/methods.ts.
  const refused = refusedMethod(ex.method);
  if (refused !== undefined) return { status: 405, detail: refused };
  if (url.length > limits.maxUriLength) return { status: 414, detail: `request target over ${limits.maxUriLength} bytes` };
  // origin-form, or asterisk-form for OPTIONS (RFC 9112 §3.2); absolute-form is rewritten below.
  if (url.charCodeAt(0) !== 47 /* / */) {
    if (url === "*" && ex.method === "OPTIONS") {
      // fine
    } else if (/^https?:\/\//i.test(url)) {
      // RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host.
      const rest = url.slice(url.indexOf("//") + 2);
      const slash = rest.indexOf("/");
      const authority = slash === -1 ? rest : rest.slice(0, slash);
      if (authority === "") return { status: 400, detail: "absolute-form target without a host" };
      ex.headers.set("host", authority);
      (ex as { target: string }).target = slash === -1 ? "/" : rest.slice(slash);
    } else {
      return { status: 400, detail: "malformed request target" };
    }
  }
  const hosts = ex.headers.count("host");
  // RFC 9112 §3.2: a 1.1 request without Host, or with more than one, gets 400.
  if (hosts > 1) return { status: 400, detail: "more than one Host field" };
  if (hosts === 0 && !ex.http10) return { status: 400, detail: "HTTP/1.1 request without Host" };
  const te = ex.headers.get("transfer-encoding");
  if (te !== null) {
    const codings = te.toLowerCase().split(",").map((s) => s.trim());
    // RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked cannot be
    // framed: 400. §6.1: chunked is applied once. Other codings we do not implement: 501.
    if (codings[codings.length - 1] !== "chunked") return { status: 400, detail: `Transfer-Encoding "${te}" does not end in chunked` };
    if (codings.length > 1) {
      return codings.slice(0, -1).includes("chunked")
        ? { status: 400, detail: "chunked applied more than once" }
        : { status: 501, detail: `Transfer-Encoding "${te}" is not supported` };
    }
    if (ex.http10) return { status: 400, detail: "Transfer-Encoding in an HTTP/1.0 request" };
  }
  const expect = ex.headers.get("expect");
  if (expect !== null && expect.toLowerCase() !== "100-continue") return { status: 417, detail: `Expect "${expect}" is not supported` };
  if (upgrade && ex.headers.has("upgrade")) {
    // llhttp has stopped at the head, so after an answer other than 101 the connection closes.
    // A WebSocket handshake asks the backend for the same upgrade (http/upgrade.ts); any
    // other protocol goes on as a plain request (Upgrade is hop-by-hop).
    ex.closeAfter = true;
    if (isWebSocketUpgrade(ex.method, ex.headers, ex.http10)) ex.upgrade = WEBSOCKET;
  }
  return undefined;
}

function plainAnswer(status: FramingStatus, detail: string): ErrorAnswer {
  // A 405 must say what is allowed (RFC 9110 §15.5.6).
  return errorAnswer(FRAMING_CODES[status], detail, status === 405 ? { headers: { allow: ALLOW } } : undefined);
}

/**
 * The fields of a verified client certificate: its subject as one line (RFC 4514's order is
 * reversed; this keeps OpenSSL's, joined by commas, with any byte a field value may not hold
 * (RFC 9110 §5.5) dropped) and its SHA-256 fingerprint in lower-case hex. None when the
 * handshake did not verify one.
 */
function certificateFields(socket: Socket<ClientConnection>, f: ClientCertFields): [string, string][] {
  const tls = socket as unknown as { authorized?: boolean; getPeerX509Certificate?(): import("node:crypto").X509Certificate | undefined };
  if (tls.authorized !== true) return [];
  let x509: import("node:crypto").X509Certificate | undefined;
  try {
    x509 = tls.getPeerX509Certificate?.();
  } catch {
    return [];
  }
  if (x509 === undefined) return [];
  const out: [string, string][] = [];
  if (f.subject !== undefined) out.push([f.subject, x509.subject.split("\n").join(",").replace(/[\u0000-\u001f\u007f]/g, "")]);
  if (f.fingerprint !== undefined) out.push([f.fingerprint, x509.fingerprint256.replace(/:/g, "").toLowerCase()]);
  return out;
}
