/**
 * HTTP/2 connections (node:http2 client sessions) to the socket engine's h2 and h2c backends:
 * a few per backend (limits.h2SessionsPerBackend), each carrying at most
 * min(the peer's SETTINGS_MAX_CONCURRENT_STREAMS, limits.h2StreamsPerSession) streams at once.
 * A try takes a stream slot on the least busy session of its backend; when every session is
 * full, another is opened up to the cap; past it the try waits in its backend's line until a
 * stream ends or its own timers give it up (the forwarding loop's per-try timeout and deadline
 * bound the wait, and the gate bounds how many wait).
 *
 * A session's life: Connecting (TCP, TLS with ALPN h2, the preface) -> Ready -> Draining (a
 * GOAWAY came, or we are closing it: no new streams, those in flight finish) -> Closed.
 */
import http2, { type ClientHttp2Session } from "node:http2";
import type { Backend } from "../../pool/backend.ts";
import { NetworkError } from "../../net/network-error.ts";
import type { UpstreamPoolOptions } from "../socket/upstream.ts";
import { h2TlsOptions } from "../../tls/upstream.ts";

const enum State {
  Connecting = 0,
  Ready = 1,
  Draining = 2,
  Closed = 3,
}

/** Defaults of limits.h2SessionsPerBackend and limits.h2StreamsPerSession (config/schema.ts says why). */
const SESSIONS_PER_BACKEND = 4;
const STREAMS_PER_SESSION = 128;

/** An https:// backend whose TLS handshake selected no h2 (RFC 9113 §3.2): a failed dial. */
function notNegotiated(alpn: string | false | undefined): NetworkError {
  const got = typeof alpn === "string" && alpn !== "" ? JSON.stringify(alpn) : "none";
  return new NetworkError("ERR_H2_NOT_NEGOTIATED", `the backend did not select HTTP/2 in its TLS handshake (ALPN: ${got}); for an HTTP/1.1 backend, use protocol "http1"`);
}

/** One HTTP/2 connection to a backend. */
export class H2Session {
  private state = State.Connecting;
  /** Streams open on it now (taken with take(), given back with release()). */
  active = 0;
  /** Streams it may carry at once: min(the peer's SETTINGS_MAX_CONCURRENT_STREAMS, our cap). */
  private maxStreams: number;
  idleSince = performance.now();
  readonly session: ClientHttp2Session;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** The connection is up (TCP, TLS), and the peer's SETTINGS came: both before Ready. */
  private connected = false;
  private settled = false;
  /** Why it failed to open, for the tries that waited on it. */
  private error: Error | undefined;

  constructor(
    readonly backend: Backend,
    private readonly pool: H2SessionPool,
    private readonly cap: number,
    connectMs: number,
  ) {
    this.maxStreams = cap;
    // h2 is agreed in the handshake; a backend that picks no h2 is refused below.
    this.session = http2.connect(backend.origin, h2TlsOptions(backend.tls, backend.url));
    const s = this.session;
    this.connectTimer = setTimeout(() => this.fail(new NetworkError("ETIMEDOUT_CONNECT", `connect timed out after ${connectMs}ms`)), connectMs);
    // Ready once connected and the peer's first SETTINGS is in (its preface, RFC 9113 §3.4): until
    // then its SETTINGS_MAX_CONCURRENT_STREAMS is unknown, and a burst over it would be refused.
    s.on("connect", () => {
      this.connected = true;
      if (this.settled) this.opened();
    });
    s.on("remoteSettings", (settings) => {
      const peer = settings.maxConcurrentStreams;
      this.maxStreams = Math.min(this.cap, peer === undefined ? this.cap : peer);
      this.settled = true;
      if (this.connected && this.state === State.Connecting) return this.opened();
      this.pool.serve(this.backend);
    });
    // RFC 9113 §6.8: no new streams on it; node fails those above the last stream id itself.
    s.on("goaway", () => this.drain());
    s.on("error", (e: Error) => {
      // Bun 1.4.5 reports a handshake without h2 in ALPN as ERR_HTTP2_ERROR "h2 is not supported".
      if (this.state === State.Connecting && this.backend.tls !== undefined && this.session.alpnProtocol !== "h2" && (e as { code?: string }).code === "ERR_HTTP2_ERROR") {
        return this.fail(notNegotiated(this.session.alpnProtocol));
      }
      this.error ??= e;
    });
    s.on("close", () => this.closed());
  }

  private opened(): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    if (this.state !== State.Connecting) return;
    const alpn = this.session.alpnProtocol;
    if (this.backend.tls !== undefined && alpn !== "h2") return this.fail(notNegotiated(alpn));
    this.state = State.Ready;
    this.idleSince = performance.now();
    this.pool.serve(this.backend);
  }

  /** The dial failed (refused, TLS, timeout, no h2): the tries waiting on it hear why. */
  private fail(e: Error): void {
    if (this.state === State.Closed) return;
    this.error = e;
    this.session.destroy();
    this.closed();
  }

  private closed(): void {
    clearTimeout(this.connectTimer);
    const was = this.state;
    if (was === State.Closed) return;
    this.state = State.Closed;
    this.pool.forget(this, was === State.Connecting ? (this.error ?? new NetworkError("ECONNRESET", "the connection closed before HTTP/2 was set up")) : undefined);
  }

  /** No new streams (a GOAWAY came, or the pool closes it): it closes once its streams end. */
  drain(): void {
    if (this.state === State.Closed || this.state === State.Draining) return;
    this.state = State.Draining;
    if (!this.session.closed) this.session.close();
    this.pool.serve(this.backend);
  }

  /** Streams it can take now. */
  get free(): number {
    return this.state === State.Ready ? this.maxStreams - this.active : 0;
  }

  get connecting(): boolean {
    return this.state === State.Connecting;
  }

  /** Still to be counted against the cap: opening or open to new streams. */
  get live(): boolean {
    return this.state <= State.Ready;
  }

  get idle(): boolean {
    return this.state === State.Ready && this.active === 0;
  }

  /** A stream ended: its slot goes to a waiting try, if any. */
  release(): void {
    if (--this.active === 0) this.idleSince = performance.now();
    this.pool.serve(this.backend);
  }

  /** Close at once, cutting what is in flight (used for an idle session, so nothing is). */
  close(): void {
    this.drain();
  }
}

/** A try waiting for a stream slot on its backend. */
export interface SlotWaiter {
  /** A slot is taken for it on `s` (s.active counts it already). */
  granted(s: H2Session): void;
  /** No slot will come: the session it waited on failed to open. */
  refused(e: unknown): void;
}

export class H2SessionPool {
  private readonly sessions = new Map<Backend, H2Session[]>();
  private readonly waiting = new Map<Backend, SlotWaiter[]>();

  constructor(
    /** Replaced by a reload; sessions read it when they open. */
    public opts: UpstreamPoolOptions,
  ) {}

  /**
   * A stream slot on a session of `backend` for `w`: at once when one is free, else once a
   * session opens or a stream ends. A waiter given up (its try's cancel) leaves with withdraw().
   */
  acquire(backend: Backend, w: SlotWaiter): void {
    const s = this.freeSession(backend);
    if (s !== undefined) {
      s.active++;
      return w.granted(s);
    }
    let line = this.waiting.get(backend);
    if (line === undefined) this.waiting.set(backend, (line = []));
    line.push(w);
    this.grow(backend, line.length);
  }

  /** `w` leaves the line (its try was given up). */
  withdraw(backend: Backend, w: SlotWaiter): void {
    const line = this.waiting.get(backend);
    const i = line?.indexOf(w) ?? -1;
    if (i !== -1) line!.splice(i, 1);
    if (line?.length === 0) this.waiting.delete(backend);
  }

  /** The least busy session of `backend` with a free stream. */
  private freeSession(backend: Backend): H2Session | undefined {
    const list = this.sessions.get(backend);
    if (list === undefined) return undefined;
    let best: H2Session | undefined;
    for (const s of list) if (s.free > 0 && (best === undefined || s.active < best.active)) best = s;
    return best;
  }

  /**
   * Open another session for `waiting` tries when the ones opening cannot be expected to take
   * them all, up to the cap.
   */
  private grow(backend: Backend, waiting: number): void {
    let list = this.sessions.get(backend);
    if (list === undefined) this.sessions.set(backend, (list = []));
    const cap = this.opts.h2SessionsPerBackend ?? SESSIONS_PER_BACKEND;
    const streams = this.opts.h2StreamsPerSession ?? STREAMS_PER_SESSION;
    let live = 0;
    let opening = 0;
    for (const s of list) {
      if (s.live) live++;
      if (s.connecting) opening++;
    }
    if (live >= cap || waiting <= opening * streams) return;
    const connectMs = backend.upstream?.connectTimeoutMs ?? this.opts.connectTimeoutMs;
    list.push(new H2Session(backend, this, streams, connectMs));
  }

  /** @internal Slots may have come free on `backend`'s sessions: hand them to the tries in line. */
  serve(backend: Backend): void {
    const line = this.waiting.get(backend);
    if (line === undefined || line.length === 0) return;
    while (line.length > 0) {
      const s = this.freeSession(backend);
      if (s === undefined) break;
      const w = line.shift()!;
      s.active++;
      w.granted(s);
    }
    // An empty line goes, so that a backend removed by a reload is not kept by its key.
    if (line.length > 0) this.grow(backend, line.length);
    else this.waiting.delete(backend);
  }

  /** @internal A session closed; `failed`: it never opened, and why. */
  forget(s: H2Session, failed?: Error): void {
    const list = this.sessions.get(s.backend);
    if (list !== undefined) {
      const i = list.indexOf(s);
      if (i !== -1) list.splice(i, 1);
      if (list.length === 0) this.sessions.delete(s.backend);
    }
    const line = this.waiting.get(s.backend);
    if (line === undefined || line.length === 0) return;
    if (failed !== undefined && !(list ?? []).some((x) => x.live)) {
      // Nothing else is opening or open: every try in line fails as a connect would.
      this.waiting.delete(s.backend);
      for (const w of line) w.refused(failed);
      return;
    }
    this.serve(s.backend);
  }

  /** Sessions of `backend` (for tests and stats): how many are open or opening. */
  count(backend: Backend): number {
    return this.sessions.get(backend)?.filter((s) => s.live).length ?? 0;
  }

  /** Close sessions idle for longer than their pool's timeouts.upstreamIdle. */
  sweep(now: number): void {
    for (const [backend, list] of this.sessions) {
      const idleMs = backend.upstream?.idleTimeoutMs ?? this.opts.idleTimeoutMs;
      for (const s of [...list]) if (s.idle && now - s.idleSince >= idleMs) s.close();
    }
  }

  /**
   * A backend left its pool (or, without one, the engine stops): its sessions take no new
   * streams and close as soon as those in flight end (a GOAWAY, RFC 9113 §6.8).
   */
  closeIdle(backend?: Backend): void {
    for (const [b, list] of this.sessions) {
      if (backend !== undefined && b !== backend) continue;
      for (const s of [...list]) s.drain();
    }
  }
}
