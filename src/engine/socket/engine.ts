/**
 * The socket engine: HTTP/1.1 on Bun.listen and pooled Bun.connect, for the throughput the
 * fetch path cannot reach (docs/performance.md). Only the wire lives here and in its
 * neighbours; every decision above it (selection, header rules, retries, timeouts, passive
 * health, stats, logging) is the shared loop in forward/forward.ts.
 */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { Backend } from "../../pool/backend.ts";
import type { Logger } from "../../log/logger.ts";
import { createForwarder, type ForwardOptions } from "../../forward/forward.ts";
import { ClientConnection, clientWire, type ClientCertFields, type ClientEnv, type ClientLimits } from "./client.ts";
import { UpstreamPool, type UpstreamPoolOptions } from "./upstream.ts";
import { upstreamWire } from "./upstream-wire.ts";
import { protocolWire } from "./protocol-wire.ts";
import { H2SessionPool } from "../h2/session-pool.ts";
import { h2Wire } from "../h2/wire.ts";
import { errorAnswer, messageFor, type ErrorAnswer } from "../../errors.ts";
import type { TlsMaterial } from "../../tls/certificates.ts";
import { alpnWire, listenHelloFirst, NO_CHALLENGES, type AlpnChallenges, type HelloLimits, type PreTls } from "../../tls/hello-first.ts";
import type { ProxyAccept } from "../../net/proxy-protocol.ts";
import { clientCounts } from "../../net/shared-client-counts.ts";
import { plainAddress } from "../../net/cidr.ts";
import { H2Front, type H2Settings } from "../h2/front.ts";

/** What a reload may change while the engine runs (everything but its address). */
export interface SocketEngineSettings extends ForwardOptions {
  limits: ClientLimits & { maxConnections: number; maxConnectionsPerClient: number | undefined };
  upstream: UpstreamPoolOptions;
  headerTimeout: number;
  idleTimeout: number;
  logger: Logger;
  /** listeners[].proxyProtocol: read a PROXY header from trusted peers first (net/proxy-protocol.ts). */
  acceptProxy?: ProxyAccept;
  /** HTTP/2 from clients (engine/h2/); undefined: HTTP/1.1 only. */
  http2?: H2Settings;
  /** tls.clientAuth: the request fields (lower-case) that carry a verified client certificate to backends. */
  clientCert?: ClientCertFields;
}

export interface SocketEngineOptions extends SocketEngineSettings {
  host: string;
  port: number;
  /** Share the port with the other worker processes (SO_REUSEPORT); else bind it exclusively. */
  reusePort?: boolean;
  /** Terminate TLS with these certificates (src/tls/). */
  tls?: TlsMaterial;
  /** With `tls`: answer ACME's TLS-ALPN-01 challenges for these names (tls.acme.challenge tls-alpn-01). */
  alpnChallenges?: AlpnChallenges;
}

export interface SocketEngine {
  readonly port: number;
  /** Renewed certificates (a reload re-read them): new handshakes use them, by server name. */
  renewTls(m: TlsMaterial): void;
  /** A backend left the pool (reconcile): close its idle upstream connections now. */
  closeIdle(backend: Backend): void;
  /**
   * New settings from a reload: requests from now on use a forwarding loop built from them;
   * those in flight finish on the one they started with. New connections get the new limits.
   */
  reconfigure(settings: SocketEngineSettings): void;
  /**
   * Stop. Graceful: answers carry Connection: close from now on; for `noticeMs` the listener
   * still accepts and idle connections stay, so a client's request already on its way is
   * answered rather than cut; then the listener closes, idle connections close, and the rest
   * close after their current answer. Forced: cut everything now.
   * listenerFirst (a handover to a successor on the same port, `switchyard upgrade`): the
   * listener closes at once, before any answer tells a client to reconnect, so that the
   * reconnects reach the successor and none waits in this listener's accept queue (Linux resets
   * those when it closes); the notice then runs on the connections already accepted.
   */
  stop(force?: boolean, noticeMs?: number, listenerFirst?: boolean): Promise<void>;
  /**
   * Stop accepting, and nothing else: connections go on as they are. The first step of a
   * handover with workers, taken by every worker of the old generation before any of them
   * tells a client to reconnect (WorkerSupervisor.unlisten), so that no reconnect is queued in
   * a listener about to close.
   */
  closeListener(): void;
}

/** Shared by every client socket; `socket.data` is the connection. */
const clientHandlers: SocketHandler<ClientConnection> = {
  data: (s, chunk) => s.data.onData(chunk),
  drain: (s) => s.data.onDrain(),
  end: (s) => s.data?.onEnd(),
  close: (s) => s.data?.onClose(),
  error: (s, e) => {
    s.data?.env.logger.error(`socket engine: ${(e as Error)?.stack ?? e}`);
    s.data?.destroy();
  },
};

/** An answer written at accept, before any request is read, and followed by the close. */
function closingAnswer(a: ErrorAnswer, reason: string): Buffer {
  const fields = Object.entries(a.headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  return Buffer.from(`HTTP/1.1 ${a.status} ${reason}\r\n${fields}content-length: ${a.body.length}\r\n\r\n${a.body}`, "latin1");
}

/** The answer to a connection over limits.maxConnections, written before it is closed. */
const BUSY = closingAnswer(errorAnswer("SY_TOO_MANY_CONNECTIONS", "too many connections; try again", { headers: { connection: "close" } }), "Service Unavailable");

/**
 * The answer to a connection over limits.maxConnectionsPerClient: 429 with Retry-After
 * (RFC 6585 §4), and Connection: close since it is closed after it. Made when the bound is set.
 */
function clientRefusal(max: number | undefined): Buffer {
  const detail = `at most ${max} connections per client to this listener`;
  const a = errorAnswer("SY_TOO_MANY_CLIENT_CONNECTIONS", messageFor("SY_TOO_MANY_CLIENT_CONNECTIONS", detail), { headers: { "retry-after": "1", connection: "close" } });
  return closingAnswer(a, "Too Many Requests");
}

export function startSocketEngine(opts: SocketEngineOptions): SocketEngine {
  const pool = new UpstreamPool(opts.upstream, (e) => opts.logger.error(`socket engine upstream: ${(e as Error)?.stack ?? e}`));

  // HTTP/2 backends (protocol h2, h2c): streams on a few sessions each (engine/h2/).
  const h2 = new H2SessionPool(opts.upstream);

  // The wire's two halves: tries go out on pooled upstream connections (upstream-wire.ts) or
  // HTTP/2 streams, by the backend's protocol; answers to the client are written by the
  // request's own Exchange (client.ts).
  const upstream = protocolWire(upstreamWire(pool), h2Wire(h2));

  const connections = new Set<ClientConnection>();
  // HTTP/2 (engine/h2/). On TLS, ALPN's list is fixed with the listener: whether h2 is offered
  // there is decided at start, and a reload changes only its limits. On a plain listener a
  // reload may also turn it on or off, for connections from then on.
  const h2Offered = opts.http2 !== undefined;
  let h2Front = opts.http2 !== undefined ? new H2Front(opts.http2, opts.limits) : undefined;
  let maxConnections = opts.limits.maxConnections;
  let onIdle: (() => void) | undefined;
  let traffic = opts.traffic;
  const env: ClientEnv = {
    forwarder: createForwarder(opts, upstream, clientWire),
    limits: opts.limits,
    headerTimeout: opts.headerTimeout,
    idleTimeout: opts.idleTimeout,
    logger: opts.logger,
    connections,
    draining: false,
    proto: opts.tls !== undefined ? "https" : "http",
    onClosed: () => {
      if (connections.size === 0) onIdle?.();
    },
    acceptProxy: opts.acceptProxy,
    clientCert: opts.clientCert,
    proxyRefused(peer, detail) {
      // Counted with the loop's own answers (/stats proxyErrors, /metrics), the first logged.
      if (++traffic.proxyErrors.SY_PROXY_PROTOCOL_REFUSED === 1) {
        env.logger.info(`socket engine: closed a client from ${peer} (PROXY protocol: ${detail}); further ones are only counted (proxyErrors SY_PROXY_PROTOCOL_REFUSED)`);
      }
    },
    clientConnections: clientCounts(`connections ${opts.host}:${opts.port}`, opts.limits.maxConnectionsPerClient),
    clientRefusal: clientRefusal(opts.limits.maxConnectionsPerClient),
    clientRefused(address) {
      // Counted with the loop's own answers (/stats proxyErrors); only the first is logged, so
      // that a flood of connections cannot flood the log.
      if (++traffic.proxyErrors.SY_TOO_MANY_CLIENT_CONNECTIONS === 1) {
        env.logger.info(`socket engine: refused a connection from ${address} (limits.maxConnectionsPerClient: it holds ${env.clientConnections.max} already); further ones are only counted (proxyErrors SY_TOO_MANY_CLIENT_CONNECTIONS)`);
      }
    },
    h2: h2Front?.takeover,
  };

  const handlers: SocketHandler<ClientConnection> = {
    ...clientHandlers,
    open(socket) {
      // TLS with a PROXY header: hello-first read it before the handshake, and hands over what it named.
      const pre = socket.data as unknown as PreTls | undefined;
      // HAProxy's accept-proxy on a listener that requires it: a peer not trusted to speak
      // for a client is closed before anything it sends is read.
      const accept = pre === undefined ? env.acceptProxy : undefined;
      if (accept !== undefined && !accept.trusted(socket.remoteAddress)) {
        env.proxyRefused(socket.remoteAddress, "the peer is not in trustedProxies");
        socket.end();
        return;
      }
      if (connections.size >= maxConnections) {
        socket.write(BUSY);
        socket.end();
        return;
      }
      // Without a PROXY header the client is the peer, known now; with one, the connection
      // counts once its header names the client (ClientConnection.readProxy).
      let client: string | undefined;
      if (accept === undefined) {
        client = plainAddress(pre?.proxied.named?.source.address ?? socket.remoteAddress);
        if (!env.clientConnections.admit(client)) {
          env.clientRefused(client);
          socket.write(env.clientRefusal);
          socket.end();
          return;
        }
      }
      socket.setNoDelay(true);
      const c = new ClientConnection(socket as Socket<ClientConnection>, env, client, pre?.proxied);
      socket.data = c;
      connections.add(c);
    },
  };
  // TLS: the listener reads each ClientHello first and starts TLS on the socket after it, with
  // the certificate chosen there (tls/hello-first.ts); these handlers then serve it.
  const helloLimits: HelloLimits = { helloTimeoutMs: opts.headerTimeout, maxPending: opts.limits.maxConnections, ...(opts.acceptProxy !== undefined ? { acceptProxy: opts.acceptProxy } : {}) };
  const helloFirst = opts.tls !== undefined
    ? listenHelloFirst({
        hostname: opts.host, port: opts.port, exclusive: !opts.reusePort, reusePort: opts.reusePort === true, allowHalfOpen: true,
        // TLS offers h2 then http/1.1 by ALPN (RFC 7301; RFC 9113 §3.2) when HTTP/2 is enabled.
        material: opts.tls, alpn: alpnWire(h2Offered), handlers, challenges: opts.alpnChallenges ?? NO_CHALLENGES, limits: helloLimits,
        proxyRefused: (peer, detail) => env.proxyRefused(peer, detail),
      })
    : undefined;
  const listener: Pick<TCPSocketListener<unknown>, "port" | "stop"> = helloFirst?.listener ?? Bun.listen<ClientConnection>({
    hostname: opts.host,
    port: opts.port,
    // A second balancer must not silently share the port (see balancer.ts); workers of one
    // balancer share it on purpose, and the kernel spreads connections among them.
    exclusive: !opts.reusePort,
    reusePort: opts.reusePort === true,
    // A client may send its FIN right after its request and still read the answer (RFC 9112 §9.6).
    allowHalfOpen: true,
    socket: handlers,
  });

  // One owner for every time-based rule: head and body deadlines, idle keep-alive, stuck
  // writes, and idle upstream connections. A sweep, not a timer per connection: ten thousand
  // idle clients cost one interval, and a request costs no timer at all.
  const tick = Math.max(20, Math.min(250, Math.floor(Math.min(opts.headerTimeout, opts.idleTimeout) / 4)));
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const c of connections) if (c.deadline !== 0 || c.writeDeadline !== 0) c.timedOut(now);
    pool.sweep(now);
    h2.sweep(now);
  }, tick);

  let stopped: Promise<void> | undefined;
  let listening = true;
  const closeListener = () => {
    if (!listening) return;
    listening = false;
    listener.stop(false);
  };
  return {
    port: listener.port,
    closeIdle(backend) {
      pool.closeIdle(backend);
      h2.closeIdle(backend);
    },
    renewTls(m) {
      helloFirst?.renew(m);
    },
    closeListener,
    reconfigure(next) {
      env.forwarder = createForwarder(next, upstream, clientWire);
      env.limits = next.limits;
      env.headerTimeout = next.headerTimeout;
      env.idleTimeout = next.idleTimeout;
      helloLimits.helloTimeoutMs = next.headerTimeout;
      helloLimits.maxPending = next.limits.maxConnections;
      helloLimits.acceptProxy = next.acceptProxy;
      env.acceptProxy = next.acceptProxy;
      env.clientCert = next.clientCert;
      if (opts.tls === undefined) {
        if (next.http2 === undefined) h2Front = undefined;
        else if (h2Front === undefined) h2Front = new H2Front(next.http2, next.limits);
        else h2Front.reconfigure(next.http2, next.limits);
      } else if (h2Front !== undefined && next.http2 !== undefined) {
        h2Front.reconfigure(next.http2, next.limits);
      }
      env.h2 = h2Front?.takeover;
      maxConnections = next.limits.maxConnections;
      if (next.limits.maxConnectionsPerClient !== env.clientConnections.max) {
        env.clientConnections.setMax(next.limits.maxConnectionsPerClient);
        env.clientRefusal = clientRefusal(next.limits.maxConnectionsPerClient);
      }
      traffic = next.traffic;
      pool.opts = next.upstream;
      h2.opts = next.upstream;
    },
    stop(force = false, noticeMs = 0, listenerFirst = false) {
      if (force) {
        // WebSockets get a 1001 Close frame where one can go (tunnel.ts), before the listener's
        // forced stop resets every connection it accepted.
        for (const c of [...connections]) c.tunnel !== undefined ? c.tunnel.goAway() : c.destroy();
        listener.stop(true);
        clearInterval(sweeper);
        pool.closeIdle();
        h2.closeIdle();
        return Promise.resolve();
      }
      stopped ??= new Promise<void>((resolve) => {
        if (listenerFirst) closeListener();
        env.draining = true;
        setTimeout(() => {
          closeListener();
          const done = () => {
            clearInterval(sweeper);
            pool.closeIdle();
            h2.closeIdle();
            resolve();
          };
          if (connections.size === 0) return done();
          onIdle = done;
          for (const c of [...connections]) c.drain();
        }, noticeMs);
      });
      return stopped;
    },
  };
}
