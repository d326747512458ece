/**
 * The layer-7 listener, on either engine: the socket engine (Bun.listen, HTTP/1.1 parsed by
 * llhttp, pooled upstream keep-alive) or the fetch engine (Bun.serve behind a Hono catch-all,
 * Bun's fetch upstream). Both run the one forwarding loop (src/forward/) with a Router built
 * from the listener's routes; a reconfigure builds a new one and swaps it in, and what is in
 * flight finishes on the one it started with.
 */
import type { Server } from "bun";
import { Hono } from "hono";
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Backend } from "../pool/backend.ts";
import type { AccessLog } from "../log/access.ts";
import type { Logger } from "../log/logger.ts";
import { createFetchHandler, startFetchClient } from "../engine/fetch/engine.ts";
import { bridgeHandlers } from "../engine/fetch/websocket.ts";
import { startSocketEngine, type SocketEngine, type SocketEngineSettings } from "../engine/socket/engine.ts";
import type { ClientCertFields } from "../engine/socket/client.ts";
import type { H2Settings } from "../engine/h2/front.ts";
import { cidrMatcher } from "../net/cidr.ts";
import { proxyAccept } from "../net/proxy-protocol.ts";
import { bindListener, listenError } from "../listen-error.ts";
import { readTlsMaterial, serveTls, type TlsMaterial } from "../tls/certificates.ts";
import type { RenewCause } from "../tls/termination.ts";
import { StoredAlpnChallenges } from "../acme/tls-alpn01.ts";
import { errorResponse } from "../errors.ts";
import type { ForwardOptions } from "../forward/forward.ts";
import { buildRouter } from "./routing.ts";
import { hostForUrl, listenerLabel, portKey, type Listener, type ListenerContext } from "./listener.ts";

/** What a Bun.serve fetch handler is: the fetch-engine listener calls the current one of these. */
type ProxyFetch = (req: Request, server: Server<unknown>) => Response | Promise<Response>;

/**
 * How long a stopping fetch-engine listener goes on answering, every answer with Connection:
 * close, before Bun.serve's stop() closes the connections idle at that moment. A keep-alive
 * client sends its next request within moments of an answer; a connection closed in that gap
 * loses the request already on its way (1 in 14 runs of test/shutdown.test.ts lost one).
 * Given a moment, a busy client is told to close by its next answer, and only connections
 * really idle are closed. HAProxy's `grace` keeps a stopping listener open for the same reason.
 */
export const DRAIN_NOTICE_MS = 250;

/** "https" when the listener terminates TLS: X-Forwarded-Proto, the sticky cookie's Secure. */
function protoOf(listener: ListenerConfig): "http" | "https" {
  return listener.tls !== undefined ? "https" : "http";
}

/** What both engines' forwarding loops are built from, for one listener. */
function forwardOptions(config: Config, listener: ListenerConfig, ctx: ListenerContext, accessLog: AccessLog | undefined): ForwardOptions {
  return {
    router: buildRouter(config, listener, ctx.pools, ctx.routes, ctx.mirrors, ctx.guards, ctx.logger),
    traffic: ctx.traffic,
    accessLog,
    tracer: ctx.tracer(config),
    failures: ctx.failures,
    trusted: cidrMatcher(config.trustedProxies),
    preserveHost: config.preserveHost,
    // The socket engine keeps its own pool per backend and needs no gate; the fetch engine
    // sets its own (below).
    upstreamConcurrency: 0,
  };
}

/** Everything of the socket engine a reconfigure may change. */
export function socketSettings(config: Config, listener: ListenerConfig, ctx: ListenerContext): SocketEngineSettings {
  const { limits, timeouts } = config;
  return {
    ...forwardOptions(config, listener, ctx, ctx.accessLog(config)),
    limits: { maxHeaderSize: limits.maxHeaderSize, maxUriLength: limits.maxUriLength, maxPipeline: limits.maxPipeline, maxConnections: limits.maxConnections, maxConnectionsPerClient: limits.maxConnectionsPerClient },
    upstream: {
      maxIdlePerBackend: limits.upstreamKeepalive, idleTimeoutMs: timeouts.upstreamIdle,
      connectTimeoutMs: timeouts.connect, maxHeaderSize: limits.maxHeaderSize,
      h2SessionsPerBackend: limits.h2SessionsPerBackend, h2StreamsPerSession: limits.h2StreamsPerSession,
    },
    headerTimeout: timeouts.header,
    idleTimeout: timeouts.idle,
    logger: ctx.logger,
    acceptProxy: proxyAccept(listener.proxyProtocol, cidrMatcher(config.trustedProxies), timeouts.header),
    http2: h2Settings(config),
    clientCert: clientCertFields(listener),
  };
}

/** tls.clientAuth's request fields, lower-cased once; undefined without mutual TLS. */
function clientCertFields(listener: ListenerConfig): ClientCertFields | undefined {
  const c = listener.tls?.clientAuth;
  if (c === undefined) return undefined;
  return { ...(c.subjectHeader !== undefined ? { subject: c.subjectHeader.toLowerCase() } : {}), ...(c.fingerprintHeader !== undefined ? { fingerprint: c.fingerprintHeader.toLowerCase() } : {}) };
}

/** The socket engine's HTTP/2 settings (engine/h2/front.ts), or undefined when `http2.enabled` is false. */
function h2Settings(config: Config): H2Settings | undefined {
  const { enabled, maxHeaderListSize, ...rest } = config.http2;
  if (!enabled) return undefined;
  return { ...rest, maxHeaderListSize: maxHeaderListSize ?? config.limits.maxHeaderSize };
}

/**
 * The fetch engine's request handler for one config: a Hono app whose catch-all route is the
 * forwarder. The listener calls whichever is current, so the per-request path reads no
 * mutable config.
 */
function buildProxy(config: Config, listener: ListenerConfig, ctx: ListenerContext): ProxyFetch {
  const { logger } = ctx;
  const handler = createFetchHandler({
    ...forwardOptions(config, listener, ctx, ctx.accessLog(config)),
    responseBuffer: config.limits.responseBuffer,
    upstreamConcurrency: config.limits.upstreamConcurrency,
    uploadConcurrency: config.limits.uploadConcurrency,
    longWaitAfter: config.limits.longWaitAfter,
    longWaitConcurrency: config.limits.longWaitConcurrency,
    idleTimeoutSec: Math.ceil(config.timeouts.idle / 1000),
    maxHeaderSize: config.limits.maxHeaderSize,
    lifecycle: ctx.lifecycle,
    proto: protoOf(listener),
  });
  const app = new Hono<{ Bindings: { server: Server<unknown> } }>();
  app.all("*", (c) => handler(c.req.raw, c.env.server));
  app.onError((err) => {
    // A bug, not a backend failure (those are answered by the handler): log it, answer 500.
    logger.error(`proxy: ${err.stack ?? err}`);
    return errorResponse("SY_INTERNAL", "internal error");
  });
  return (req, server) => app.fetch(req, { server });
}

/** The largest body any route of the config takes: Bun.serve's own limit (a route's smaller one is the handler's). */
export function largestBody(config: Config): number {
  let max = config.limits.maxBodySize;
  for (const r of config.routes) {
    const own = (r as { limits?: { maxBodySize?: number } }).limits?.maxBodySize;
    if (own !== undefined && own > max) max = own;
  }
  return max;
}

/** An answer of a server being retired: its connection closes after it. */
async function closing(res: Response | Promise<Response>): Promise<Response> {
  const r = await res;
  try {
    r.headers.set("connection", "close");
  } catch {
    // Immutable headers (a Response passed through whole): the stop closes the connection after it.
  }
  return r;
}

/** The fetch engine's listener: Bun.serve, renewed (not reloaded) for new certificates. */
class FetchListener {
  private current: ProxyFetch;
  private server: Server<unknown>;
  /** Servers that stopped accepting on a renewal and still finish what they hold. */
  private readonly retiring = new Set<Server<unknown>>();
  /** Retiring servers' DRAIN_NOTICE_MS timers, owned here so that a stop ends them. */
  private readonly notices = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    private readonly config: Config,
    private readonly listener: ListenerConfig,
    proxy: ProxyFetch,
    port: number,
    tls: TlsMaterial | undefined,
  ) {
    this.current = proxy;
    this.server = this.open(port, tls);
  }

  get port(): number {
    return this.server.port!;
  }

  private open(port: number, m: TlsMaterial | undefined): Server<unknown> {
    const { config, listener } = this;
    return bindListener(listenerLabel(listener), listener.host, port, () => Bun.serve({
      hostname: listener.host,
      port,
      ...(m !== undefined ? { tls: serveTls(m) } : {}),
      // A second balancer must not silently share the port (Bun turns SO_REUSEPORT on when
      // development is false): a balancer claims it exclusively first (claimPort), then binds it
      // with SO_REUSEPORT to share it with its workers, its successor (`switchyard upgrade`) or
      // the listener that replaces this one on a reload.
      reusePort: true,
      development: false,
      idleTimeout: Math.ceil(config.timeouts.idle / 1000),
      maxRequestBodySize: largestBody(config),
      // HTTP/2 by Bun.serve's own implementation: ALPN h2 on TLS, the preface on plain TCP.
      // Its limits are Bun's; the `http2` options other than `enabled` are the socket engine's.
      http2: config.http2.enabled,
      fetch: (req, server) => (this.retiring.has(server) ? closing(this.current(req, server)) : this.current(req, server)),
      // WebSockets (engine/fetch/websocket.ts); a forced stop closes them with 1001.
      websocket: bridgeHandlers as import("bun").WebSocketHandler<unknown>,
    }));
  }

  setProxy(next: ProxyFetch): void {
    this.current = next;
  }

  /**
   * Renewed certificates. Bun.serve cannot change its own (server.reload() swaps handlers only,
   * checked on 1.4.5): the running server stops accepting (what it holds finishes on it, in-flight
   * requests and WebSockets alike) and a new one with the new certificates opens on the same port
   * at once. A connection attempt in between, a few microseconds, would be refused.
   */
  renewTls(m: TlsMaterial, cause: RenewCause): void {
    const old = this.server;
    // Read before the stop: a stopped server reports no port.
    const port = old.port!;
    this.retiring.add(old);
    this.server = this.open(port, m);
    const retire = () => void old.stop().then(() => this.retiring.delete(old));
    // A reload puts them in service for every new handshake at once. Bun.serve's stop() also
    // closes the connections idle at that instant, and a keep-alive client that sends its next
    // request just then sees it reset (wrk -c64 counted 130 read errors over two renewals). A
    // renewal on disk is not urgent: the old server is told first and stopped after
    // DRAIN_NOTICE_MS, each of its answers meanwhile carrying Connection: close so that a busy
    // client closes of its own accord (RFC 9112 §9.6). New connections may still reach it in
    // that window (Bun.serve cannot stop accepting alone) and get the previous certificate.
    if (cause === "reload") return retire();
    const later = setTimeout(() => {
      this.notices.delete(later);
      retire();
    }, DRAIN_NOTICE_MS);
    later.unref?.();
    this.notices.add(later);
  }

  /** A stop stops the retiring servers itself: their pending notices end with it. */
  private endNotices(): void {
    for (const t of this.notices) clearTimeout(t);
    this.notices.clear();
  }

  async stop(graceful: boolean, notice: number): Promise<void> {
    const server = this.server;
    this.endNotices();
    await Promise.all([
      graceful ? Bun.sleep(notice).then(() => server.stop(false)) : server.stop(true),
      ...[...this.retiring].map((s) => s.stop(!graceful)),
    ]);
  }

  async cut(): Promise<void> {
    this.endNotices();
    await Promise.all([this.server.stop(true), ...[...this.retiring].map((s) => s.stop(true))]);
  }
}

export class HttpListener implements Listener {
  readonly name: string;
  private socket: SocketEngine | undefined;
  private fetch: FetchListener | undefined;
  /** A TLS listener on the socket engine: the TLS-ALPN-01 challenges it answers (none without tls.acme tls-alpn-01). */
  private challenges: StoredAlpnChallenges | undefined;
  private cfg: ListenerConfig;
  private readonly scheme: string;

  private constructor(
    listener: ListenerConfig,
    private readonly ctx: ListenerContext,
  ) {
    this.name = listener.name;
    this.cfg = listener;
    this.scheme = protoOf(listener);
  }

  /** Bind and serve `listener` of `config`. */
  static async start(config: Config, listener: ListenerConfig, ctx: ListenerContext, tls: TlsMaterial | undefined): Promise<HttpListener> {
    const l = new HttpListener(listener, ctx);
    const label = listenerLabel(listener);
    const port = ctx.portFor(portKey(listener, "proxy"), listener.host, listener.port);
    const material = tls ?? (listener.tls !== undefined ? readTlsMaterial(listener.tls, `listeners.${listener.name}.tls`) : undefined);
    if (config.engine === "socket") {
      l.challenges = material !== undefined ? new StoredAlpnChallenges(config.acme?.storage, listener) : undefined;
      const alpnChallenges = l.challenges;
      l.socket = bindListener(label, listener.host, port, () =>
        startSocketEngine({ ...socketSettings(config, listener, ctx), host: listener.host, port, reusePort: true, tls: material, ...(alpnChallenges !== undefined ? { alpnChallenges } : {}) }),
      );
    } else {
      await startFetchClient().catch((e: unknown) => {
        throw listenError(label, listener.host, port, e);
      });
      l.fetch = new FetchListener(config, listener, buildProxy(config, listener, ctx), port, material);
    }
    return l;
  }

  get config(): ListenerConfig {
    return this.cfg;
  }

  get port(): number {
    return this.socket?.port ?? this.fetch!.port;
  }

  get url(): string {
    return `${this.scheme}://${hostForUrl(this.cfg.host)}:${this.port}`;
  }

  /** The engine that moves its bytes. */
  get engine(): "socket" | "fetch" {
    return this.socket !== undefined ? "socket" : "fetch";
  }

  reconfigure(config: Config, listener: ListenerConfig): void {
    this.cfg = listener;
    // The names it answers TLS-ALPN-01 for, and the store, may change.
    this.challenges?.update(config.acme?.storage, listener);
    if (this.socket !== undefined) this.socket.reconfigure(socketSettings(config, listener, this.ctx));
    else this.fetch!.setProxy(buildProxy(config, listener, this.ctx));
  }

  renewTls(m: TlsMaterial, cause: RenewCause = "reload"): void {
    this.socket?.renewTls(m);
    this.fetch?.renewTls(m, cause);
  }

  closeIdle(backend: Backend): void {
    this.socket?.closeIdle(backend);
  }

  closeListener(): void {
    // The fetch engine cannot stop accepting apart from its connections (Bun.serve): it stops
    // as it always does, in stop().
    this.socket?.closeListener();
  }

  async stop(graceful: boolean, grace: number, handover: boolean): Promise<void> {
    const notice = Math.min(DRAIN_NOTICE_MS, grace);
    const stopped = Promise.all([this.socket?.stop(!graceful, notice, handover), this.fetch?.stop(graceful, notice)]);
    if (!graceful) {
      await stopped;
      return;
    }
    await withGrace(stopped, grace, this.ctx.logger, `${listenerLabel(this.cfg)} listener`, async () => {
      await Promise.all([this.socket?.stop(true), this.fetch?.cut()]);
    });
  }
}

/**
 * Wait for `work` within `grace` ms; past it, say so and run `cut`. Shared by every listener
 * (and the workers), so that one process stops the same way whatever it serves.
 */
export async function withGrace(work: Promise<unknown>, grace: number, logger: Logger, what: string, cut: () => Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), grace)));
  if ((await Promise.race([work, late])) === "late") {
    logger.warn(`shutdown: in-flight work still running after ${grace}ms; closing it (${what})`);
    await cut();
  }
  clearTimeout(timer);
}
