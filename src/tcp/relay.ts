/**
 * One client connection paired with one backend connection: the backend is chosen by the pool,
 * dialled with a timeout (and the next backend tried while no byte has been sent), then bytes
 * are relayed both ways with backpressure, half-closes passed on, and an idle timer. With SNI
 * routing (RelayEnv.sni) the pool is chosen first by the server name of the client's TLS
 * ClientHello, read within a time and byte limit and then passed on untouched with whatever
 * followed it.
 *
 * What Bun 1.4.5 does, checked by hand and by test/tcp (re-check on upgrade):
 * - `socket.write()` does not buffer: it returns how many bytes the kernel took (-1 once the
 *   socket is closed). The rest is ours to keep; we pause the source and write it from `drain`.
 *   `write(buf, offset)` without a length throws when offset + buf.length passes the end (the
 *   length defaults to the whole buffer, not the rest), so we write subarrays.
 * - `pause()` stops reading (the kernel's window then fills and TCP pushes back on the peer);
 *   a chunk already read may still arrive, so a paused flow still queues what comes.
 * - Buffers handed to `data` are fresh per call: keeping a reference is safe.
 * - `allowHalfOpen: true` (listen and connect): a FIN from the peer fires `end` and the socket
 *   stays writable. `socket.shutdown()` sends our FIN and keeps reading. `socket.end()` is NOT a
 *   half-close: it closes the socket at once (readyState -1, `close` fires) even with
 *   allowHalfOpen, so we use it only to close for good. Once both FINs have passed, `close`
 *   fires by itself; when our FIN went first, the peer's FIN shows up as `close` with no `end`.
 * - A reset shows up as `close(socket, error)` with code ECONNRESET; `error` fires only when one
 *   of our handlers throws. A refused connect calls `connectError` (code ECONNREFUSED) with
 *   `socket.data` set; `terminate()` fires `close` synchronously, inside the call.
 * - Bun.connect has no timeout and cannot be cancelled: a dial that runs out of time is marked
 *   abandoned and its socket, should it ever open, is terminated at once.
 */
import type { Socket, SocketHandler } from "bun";
import type { Backend, Lease } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import type { PassiveSignals } from "../health/passive.ts";
import type { Logger } from "../log/logger.ts";
import { formatDuration } from "../config/units.ts";
import type { TcpStats } from "./stats.ts";
import { describeNetworkError, errorCode, isLocalCode, refinedConnectError, type LocalCode } from "../net/network-error.ts";
import { Flow } from "../net/flow.ts";
import { ClientHelloReader } from "./client-hello.ts";
import { countSniRefusal, type SniRefusal } from "./stats.ts";
import { encodeProxyHeader, ProxyHeaderReader, type ProxyAccept, type ProxyEndpoint } from "../net/proxy-protocol.ts";
import type { ClientCounts } from "../net/client-counts.ts";
import { plainAddress } from "../net/cidr.ts";

/**
 * Client bytes kept while the backend connection is being made. Past this the client is
 * paused: memory per connection stays bounded by this plus one read.
 */
export const CONNECT_BUFFER_BYTES = 64 * 1024;

/** Where a client connection goes: a pool and the passive health signals of that pool. */
export interface RelayTarget {
  readonly pool: Pool;
  readonly passive: PassiveSignals;
}

/**
 * A listener that chooses its pool by the TLS server name (HAProxy's `req.ssl_sni`), without
 * terminating TLS: the relay reads the client's ClientHello first (client-hello.ts), asks
 * `choose`, then dials a backend of that pool and passes every byte on untouched.
 */
export interface SniRouting {
  /**
   * The pool for a server name (lower-case, no trailing dot; undefined when the ClientHello
   * named none); undefined closes the connection. Called once per connection: keep it a lookup.
   */
  choose(serverName: string | undefined): RelayTarget | undefined;
  /**
   * ms from accept for a whole ClientHello to arrive, else the client is closed (usually
   * `timeouts.header`, CLIENT_HELLO_TIMEOUT_MS by default); 0 = no limit of our own, though
   * `timeouts.idle` still runs.
   */
  readonly timeoutMs: number;
  /** Most bytes read to find the ClientHello's end (CLIENT_HELLO_MAX_BYTES is the usual value). */
  readonly maxBytes: number;
}

/** What every relay of one listener shares. */
export interface RelayEnv extends RelayTarget {
  readonly logger: Logger;
  readonly stats: TcpStats;
  /** ms per backend connect; 0 = no limit of our own. */
  readonly connectTimeout: number;
  /** ms without a byte either way before the relay is closed; 0 = never. */
  readonly idleTimeout: number;
  /** Backends tried at most per client connection (retry.attempts). */
  readonly maxTries: number;
  /** consistent-hash with `hash.key: "ip"`: the client's address is the pick's key. */
  readonly hashByClientIp: boolean;
  /** Choose the pool by TLS server name first; without it every connection goes to `pool`. */
  readonly sni?: SniRouting;
  /**
   * listeners[].proxyProtocol: every connection starts with a PROXY header from a trusted peer,
   * read before anything else (SNI included); the client is the one it names.
   */
  readonly acceptProxy?: ProxyAccept;
  /** limits.maxConnectionsPerClient: the listener's open connections per client address (kept across reloads). */
  readonly clients: ClientCounts;
  /** Called once per relay, when both of its sockets are closed. */
  onFinished(relay: Relay): void;
}

/** One dial of one backend. The socket's `data`, so that late events of a dial we gave up on are ignored. */
interface Attempt {
  readonly relay: Relay;
  readonly backend: Backend;
  readonly lease: Lease;
  readonly startedAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Timed out or no longer wanted: whatever this dial does later is ignored (and closed). */
  abandoned: boolean;
}

/**
 * proxy: reading the PROXY header (listeners[].proxyProtocol); hello: reading the ClientHello
 * (SNI routing only); connecting: dialling backends.
 */
type Phase = "proxy" | "hello" | "connecting" | "open" | "closed";

export class Relay {
  private phase: Phase = "connecting";
  /** The pool dialled: the listener's, or the one the server name chose. */
  private target: RelayTarget;
  /** SNI routing: the ClientHello read so far, and the time it has to arrive. */
  private hello: ClientHelloReader | undefined;
  private helloTimer: ReturnType<typeof setTimeout> | undefined;
  /** client -> backend */
  private readonly up = new Flow();
  /** backend -> client */
  private readonly down = new Flow();
  private backendSocket: Socket<Attempt> | undefined;
  private attempt: Attempt | undefined;
  /** The backend this relay is connected to, once connected. */
  backend: Backend | undefined;
  private readonly tried = new Set<Backend>();
  private clientClosed = false;
  private backendClosed = false;
  private lastActivity = performance.now();
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** The PROXY header read so far, and the time it has to arrive (acceptProxy only). */
  private proxyReader: ProxyHeaderReader | undefined;
  private proxyTimer: ReturnType<typeof setTimeout> | undefined;
  /** What a PROXY header named (acceptProxy): the client, and the address it connected to. */
  private named: { readonly source: ProxyEndpoint; readonly destination: ProxyEndpoint } | undefined;
  /** The address this relay is counted under in env.clients, until finish() releases it (once). */
  private countedAs: string | undefined;

  constructor(
    private readonly env: RelayEnv,
    private readonly client: Socket<Relay>,
  ) {
    this.target = env;
  }

  /** The client's address: the one its PROXY header named, else the peer's. */
  private get clientAddress(): string {
    return this.named?.source.address ?? this.client.remoteAddress;
  }

  /**
   * Choose a backend and dial it; closes the client at once when none is available. With SNI
   * routing, the pool is chosen first, once the client's ClientHello has come.
   */
  start(): void {
    this.client.setNoDelay(true);
    this.armIdle();
    const accept = this.env.acceptProxy;
    if (accept === undefined) return this.begin();
    // HAProxy's accept-proxy on a listener that requires it: a peer not trusted to speak for a
    // client is closed before anything it sends is read.
    if (!accept.trusted(this.client.remoteAddress)) return this.refuseProxy("the peer is not in trustedProxies");
    this.phase = "proxy";
    this.proxyReader = new ProxyHeaderReader();
    this.proxyTimer = setTimeout(() => {
      if (this.phase === "proxy") this.refuseProxy(`no complete PROXY header within ${formatDuration(accept.timeoutMs)}`);
    }, accept.timeoutMs);
  }

  /**
   * start(), where the PROXY header was read before TLS (tls/hello-first.ts): `named` is what it
   * named (undefined for LOCAL: the peer stands).
   */
  startNamed(named: { readonly source: ProxyEndpoint; readonly destination: ProxyEndpoint } | undefined): void {
    this.client.setNoDelay(true);
    this.armIdle();
    this.named = named;
    this.begin();
  }

  /** The client is known (after its PROXY header, if any): count it, then read its ClientHello or dial. */
  private begin(): void {
    // The real client's address (the PROXY header's when there was one), IPv4-mapped IPv6 as IPv4.
    const client = plainAddress(this.clientAddress);
    if (!this.env.clients.admit(client)) return this.refuseClient(client);
    this.countedAs = client;
    const sni = this.env.sni;
    if (sni === undefined) {
      this.dial();
      return;
    }
    this.phase = "hello";
    this.hello = new ClientHelloReader(sni.maxBytes);
    if (sni.timeoutMs > 0) {
      this.helloTimer = setTimeout(() => {
        if (this.phase === "hello") this.refuse("timeout", `no complete ClientHello within ${formatDuration(sni.timeoutMs)}`);
      }, sni.timeoutMs);
    }
  }

  // ---- PROXY header -----------------------------------------------------------------------

  private readProxy(chunk: Uint8Array): void {
    const reader = this.proxyReader!;
    const r = reader.push(chunk);
    if (r.state === "need-more") return;
    if (r.state === "invalid") return this.refuseProxy(r.reason);
    if (r.state === "done") this.named = { source: r.source, destination: r.destination };
    clearTimeout(this.proxyTimer);
    this.proxyTimer = undefined;
    this.proxyReader = undefined;
    const rest = reader.rest();
    this.phase = "connecting";
    this.begin();
    // What came after the header is the client's own first bytes.
    if (rest.length > 0) this.clientData(rest.slice());
  }

  /** Close a client the PROXY step turned away; the first is logged, all are counted (tcp stats proxyRefused). */
  private refuseProxy(detail: string): void {
    refusedProxy(this.env.stats, this.env.logger, this.client.remoteAddress, detail);
    this.closeBoth();
  }

  /**
   * Close a client whose address holds limits.maxConnectionsPerClient connections already,
   * before any backend is dialled (no backend hears of it); the first is logged, all are
   * counted (tcp stats clientConnectionsRefused).
   */
  private refuseClient(client: string): void {
    if (++this.env.stats.clientConnectionsRefused === 1) {
      this.env.logger.info(`tcp listener: closed a client from ${client} before dialling (limits.maxConnectionsPerClient: it holds ${this.env.clients.max} already); further ones are only counted (tcp stats clientConnectionsRefused)`);
    }
    this.closeBoth();
  }

  // ---- SNI routing ----------------------------------------------------------------------

  /** A chunk of the ClientHello (already kept in `up`, to be passed on as it came). */
  private readHello(chunk: Uint8Array): void {
    const r = this.hello!.push(chunk);
    switch (r.state) {
      case "need-more":
        return;
      case "not-tls":
        this.refuse("not-tls", "the first bytes are not a TLS handshake record");
        return;
      case "invalid":
        this.refuse("invalid", r.reason);
        return;
      case "done": {
        this.hello = undefined;
        clearTimeout(this.helloTimer);
        const target = this.env.sni!.choose(r.serverName);
        if (target === undefined) {
          this.refuse("no-route", `no route for server name ${r.serverName === undefined ? "(none sent)" : JSON.stringify(r.serverName)}`);
          return;
        }
        this.target = target;
        this.phase = "connecting";
        // Past the ClientHello the usual bound on what is kept while dialling applies.
        if (this.up.queued > CONNECT_BUFFER_BYTES) this.up.pause(this.client);
        this.dial();
      }
    }
  }

  /**
   * Close a client the SNI step turned away. Counted by reason; only the first of each reason
   * is logged (a scanner must not flood the log), the rest are in the listener's stats.
   */
  private refuse(reason: SniRefusal, detail: string): void {
    if (countSniRefusal(this.env.stats, reason) === 1) {
      this.env.logger.info(`tcp listener: closed a client from ${this.clientAddress} before dialling (${reason}: ${detail}); further ones are only counted (tcp stats sni*)`);
    }
    this.closeBoth();
  }

  // ---- dialling -------------------------------------------------------------------------

  private dial(): void {
    const { stats, maxTries } = this.env;
    const { pool } = this.target;
    const key = this.env.hashByClientIp ? this.clientAddress : undefined;
    const backend = this.tried.size < maxTries ? pool.pick(this.tried, key) : undefined;
    // pick() falls back to an excluded backend when nothing else is left: a TCP dial is not
    // repeated on a backend that has just failed.
    if (backend === undefined || this.tried.has(backend)) {
      if (this.tried.size === 0) stats.rejected++;
      else stats.unreachable++;
      this.closeBoth();
      return;
    }
    if (this.tried.size > 0) {
      stats.retries++;
      backend.stats.countRetry();
    }
    this.tried.add(backend);
    const a: Attempt = { relay: this, backend, lease: backend.acquire(), startedAt: performance.now(), timer: undefined, abandoned: false };
    this.attempt = a;
    const timeout = this.env.connectTimeout;
    if (timeout > 0) a.timer = setTimeout(() => this.connectFailed(a, `connect timeout after ${formatDuration(timeout)}`, true), timeout);
    try {
      Bun.connect<Attempt>({
        hostname: backend.url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(backend.url.port),
        allowHalfOpen: true,
        data: a,
        socket: backendHandlers,
      }).catch(() => {
        // Reported through connectError.
      });
    } catch (e) {
      this.connectFailed(a, describeNetworkError(e), false);
    }
  }

  /** @internal backend handlers */
  connectFailed(a: Attempt, detail: string, timedOut: boolean): void {
    if (a.abandoned) return;
    this.abandon(a);
    const { stats } = this.env;
    const { passive } = this.target;
    stats.connectFailures++;
    a.backend.stats.countProxyError();
    if (timedOut) {
      stats.connectTimeouts++;
      // Like HTTP mode: only a connection that could not be made at all marks a backend down
      // at once; a slow one counts toward outlier ejection.
      a.backend.stats.countConnectFailure();
      passive.failed(a.backend, detail);
    } else {
      passive.connectFailed(a.backend, detail);
    }
    if (this.phase === "connecting") this.dial();
  }

  /**
   * @internal backend handlers: the dial failed for want of the proxy's own resources
   * (net/network-error.ts): counted as the proxy's error, never against the backend.
   */
  localFailure(a: Attempt, _code: LocalCode): void {
    if (a.abandoned) return;
    this.abandon(a);
    this.env.stats.localErrors++;
    if (this.phase === "connecting") this.dial();
  }

  private abandon(a: Attempt): void {
    a.abandoned = true;
    clearTimeout(a.timer);
    a.lease.release();
    if (this.attempt === a) this.attempt = undefined;
  }

  /** @internal backend handlers */
  backendOpened(socket: Socket<Attempt>, a: Attempt): void {
    clearTimeout(a.timer);
    this.attempt = undefined;
    if (this.phase !== "connecting") {
      // The client went away while we dialled.
      a.abandoned = true;
      a.lease.release();
      socket.terminate();
      return;
    }
    this.phase = "open";
    this.backendSocket = socket;
    this.backend = a.backend;
    socket.setNoDelay(true);
    a.backend.stats.countConnected(performance.now() - a.startedAt);
    this.target.passive.succeeded(a.backend, 0);
    this.touch();
    const version = a.backend.upstream?.proxyProtocol;
    if (version !== undefined) this.sendProxyHeader(socket, version === "v1" ? 1 : 2);
    // What the client sent while we dialled; then its FIN, if it came.
    this.flushUp();
  }

  /**
   * pools.*.proxyProtocol: the header goes before any client byte, naming the client and the
   * address it connected to (as its own PROXY header said, when it came with one). It is not
   * counted as client bytes.
   */
  private sendProxyHeader(socket: Socket<Attempt>, version: 1 | 2): void {
    const named = this.named;
    const source = named?.source ?? { address: this.client.remoteAddress, port: this.client.remotePort };
    const destination = named?.destination ?? { address: this.client.localAddress, port: this.client.localPort };
    const header = encodeProxyHeader(version, source, destination);
    const n = socket.write(header);
    // A fresh socket takes a few dozen bytes at once; should it not, the rest goes first from drain.
    if (n >= 0 && n < header.length) this.up.unshift(header.subarray(n));
  }

  // ---- client side ----------------------------------------------------------------------

  /** @internal client handlers */
  clientData(chunk: Uint8Array): void {
    this.touch();
    const flow = this.up;
    if (flow.dead || this.phase === "closed") return;
    if (this.phase === "proxy") return this.readProxy(chunk);
    if (this.backendSocket === undefined) {
      flow.push(chunk);
      if (this.phase === "hello") this.readHello(chunk);
      else if (flow.queued > CONNECT_BUFFER_BYTES) flow.pause(this.client);
      return;
    }
    flow.pass(this.client, this.backendSocket, chunk, this.countIn);
  }

  /** @internal client handlers: the client sent its FIN. */
  clientEnded(): void {
    this.up.ended = true;
    if (this.phase === "proxy") {
      // A peer that sent nothing at all (a port check) is just closed; one that stopped halfway is counted.
      if (this.proxyReader!.held === 0) return this.closeBoth();
      return this.refuseProxy("the client ended its side before a complete PROXY header");
    }
    if (this.phase === "hello") {
      // No more is coming, so the ClientHello never will: a client that sent nothing at all
      // (a port check) is just closed; one that stopped halfway is counted.
      if (this.hello!.consumed === 0) this.closeBoth();
      else this.refuse("invalid", "the client ended its side before a complete ClientHello");
      return;
    }
    this.flushUp();
  }

  /** @internal client handlers */
  clientClose(error: Error | undefined): void {
    if (this.clientClosed) return;
    this.clientClosed = true;
    if (error !== undefined && this.phase !== "closed") this.env.stats.resets++;
    this.up.ended = true;
    this.down.kill();
    if (this.phase === "connecting" || this.phase === "hello" || this.phase === "proxy") {
      if (this.attempt) this.abandon(this.attempt);
      this.finish();
      return;
    }
    this.flushUp();
    this.settle();
  }

  /** @internal client handlers: the client can take more. */
  clientDrain(): void {
    this.flushDown();
  }

  // ---- backend side ---------------------------------------------------------------------

  /** @internal backend handlers */
  backendData(chunk: Uint8Array): void {
    this.touch();
    if (this.down.dead) return;
    this.down.pass(this.backendSocket!, this.client, chunk, this.countOut);
  }

  /** @internal backend handlers: the backend sent its FIN. */
  backendEnded(): void {
    this.down.ended = true;
    this.flushDown();
  }

  /** @internal backend handlers */
  backendClose(error: Error | undefined, a: Attempt): void {
    if (this.backendClosed) return;
    this.backendClosed = true;
    a.lease.release();
    if (error !== undefined && this.phase !== "closed") {
      this.env.stats.resets++;
      a.backend.stats.countProxyError();
    }
    this.down.ended = true;
    this.up.kill();
    this.flushDown();
    this.settle();
  }

  /** @internal backend handlers: the backend can take more. */
  backendDrain(): void {
    this.flushUp();
  }

  // ---- relaying -------------------------------------------------------------------------

  private readonly countIn = (n: number): void => {
    this.env.stats.bytesIn += n;
    this.backend!.stats.countBytes(n, 0);
  };

  private readonly countOut = (n: number): void => {
    this.env.stats.bytesOut += n;
    this.backend!.stats.countBytes(0, n);
  };

  private flushUp(): void {
    if (this.backendSocket === undefined) return;
    this.flush(this.up, this.client, this.clientClosed, this.backendSocket, this.backendClosed, this.countIn);
  }

  private flushDown(): void {
    if (this.backendSocket === undefined) return;
    this.flush(this.down, this.backendSocket, this.backendClosed, this.client, this.clientClosed, this.countOut);
  }

  /**
   * Write what a flow holds (net/flow.ts: resume the source and pass on a FIN once it is
   * empty), and close the destination for good when the source is gone altogether.
   */
  private flush(flow: Flow, from: Socket<unknown>, fromClosed: boolean, to: Socket<unknown>, toClosed: boolean, count: (n: number) => void): void {
    if (flow.dead || toClosed) return;
    const before = flow.queued;
    const empty = flow.flush(from, fromClosed, to, count);
    if (flow.queued < before) this.touch();
    // The source's socket is gone (closed cleanly after both FINs, or reset): nothing can come
    // back to it, so the destination is closed once it has what was meant for it.
    if (empty && fromClosed) to.end();
  }

  /** Both sockets closed (or the backend never opened): the relay is over. */
  private settle(): void {
    if (this.clientClosed && (this.backendClosed || this.backendSocket === undefined)) this.finish();
  }

  // ---- idle timer -----------------------------------------------------------------------

  private touch(): void {
    this.lastActivity = performance.now();
  }

  /**
   * One timer per relay, re-armed lazily: a byte only updates a timestamp, and the timer,
   * when it fires, sleeps again for what is left of the idle window.
   */
  private armIdle(delay = this.env.idleTimeout): void {
    if (this.env.idleTimeout <= 0) return;
    this.idleTimer = setTimeout(() => {
      const idleFor = performance.now() - this.lastActivity;
      if (this.phase === "closed") return;
      if (idleFor >= this.env.idleTimeout) {
        this.env.stats.idleTimeouts++;
        this.closeBoth();
      } else {
        this.armIdle(this.env.idleTimeout - idleFor);
      }
    }, delay);
  }

  // ---- ending ---------------------------------------------------------------------------

  /** Close both sockets now (FIN, then close); what is still queued is dropped (idle, or no backend). */
  private closeBoth(): void {
    this.end((s) => s.end());
  }

  /** stop(true): reset both connections and drop whatever is queued. */
  destroy(): void {
    this.end((s) => s.terminate());
  }

  private end(close: (s: Socket<unknown>) => void): void {
    if (this.phase === "closed") return;
    if (this.attempt) this.abandon(this.attempt);
    this.up.kill();
    this.down.kill();
    // Marked closed first: end() and terminate() fire `close` synchronously, and this relay's
    // bookkeeping is done here, once, by finish().
    const client = this.clientClosed ? undefined : this.client;
    const backend = this.backendClosed ? undefined : this.backendSocket;
    this.clientClosed = true;
    this.backendClosed = true;
    if (client) close(client);
    if (backend) close(backend);
    this.finish();
  }

  private finish(): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    clearTimeout(this.idleTimer);
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    if (this.proxyTimer !== undefined) clearTimeout(this.proxyTimer);
    this.hello = undefined;
    this.proxyReader = undefined;
    if (this.countedAs !== undefined) {
      this.env.clients.release(this.countedAs);
      this.countedAs = undefined;
    }
    // The backend's close handler releases the lease; this covers a close that never fired.
    if (this.backendSocket) this.backendSocket.data.lease.release();
    this.env.onFinished(this);
  }

  /** @internal A handler threw: log it and reset the relay rather than leave it half-done. */
  handlerFailed(side: "client" | "backend", e: unknown): void {
    this.env.logger.error(`tcp relay: ${side} handler failed: ${(e as Error)?.stack ?? e}`);
    this.destroy();
  }
}

/** Shared by every client socket of a listener; `socket.data` is the relay. */
/** A client closed for its PROXY header (or its peer): counted in tcp stats proxyRefused, the first logged. */
export function refusedProxy(stats: TcpStats, logger: Logger, peer: string, detail: string): void {
  if (++stats.proxyRefused === 1) {
    logger.info(`tcp listener: closed a client from ${peer} before dialling (PROXY protocol: ${detail}); further ones are only counted (tcp stats proxyRefused)`);
  }
}

export const clientHandlers: SocketHandler<Relay> = {
  data: (s, chunk) => s.data.clientData(chunk),
  end: (s) => s.data.clientEnded(),
  drain: (s) => s.data.clientDrain(),
  close: (s, error) => s.data?.clientClose(error),
  error: (s, e) => s.data?.handlerFailed("client", e),
};

/** Shared by every backend socket; `socket.data` is the dial it came from. */
const backendHandlers: SocketHandler<Attempt> = {
  open(s) {
    const a = s.data;
    if (a.abandoned) s.terminate();
    else a.relay.backendOpened(s, a);
  },
  connectError(s, e) {
    const a = s.data;
    const err = refinedConnectError(e);
    const local = errorCode(err);
    if (isLocalCode(local)) a.relay.localFailure(a, local);
    else a.relay.connectFailed(a, describeNetworkError(err), false);
  },
  data(s, chunk) {
    if (!s.data.abandoned) s.data.relay.backendData(chunk);
  },
  end(s) {
    if (!s.data.abandoned) s.data.relay.backendEnded();
  },
  drain(s) {
    if (!s.data.abandoned) s.data.relay.backendDrain();
  },
  close(s, error) {
    if (!s.data.abandoned) s.data.relay.backendClose(error, s.data);
  },
  error(s, e) {
    s.data.relay.handlerFailed("backend", e);
  },
};
