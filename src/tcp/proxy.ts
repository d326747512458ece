/**
 * Layer 4 mode: a Bun.listen listener whose every client connection is paired with a backend
 * connection chosen by the same pool, policy and health as HTTP mode (see relay.ts).
 *
 * - The backend's lease is held for the connection's lifetime, so `backend.inFlight` is its
 *   open connections (least-connections balances those) and `backend.acquired` counts every
 *   connection handed to it, failed dials included.
 * - `stats.bytesIn` is client -> backend, `stats.bytesOut` backend -> client (see stats.ts).
 * - A refused dial marks the backend down (passive.connectFailed) and the next one is tried,
 *   up to retry.attempts backends, while no client byte has been sent; a dial that outlasts
 *   timeouts.connect counts toward outlier ejection (passive.failed) and is also retried.
 * - timeouts.idle closes a relay through which no byte has moved either way for that long.
 * - With `sni` (SniRouting), the pool is chosen per connection by the server name of the
 *   client's TLS ClientHello, read but not terminated (client-hello.ts); a client with no
 *   complete ClientHello in time, a malformed one, plain text or a name no route takes is
 *   closed and counted (stats sni*). Without it nothing of this runs.
 *
 * One listener per call: a config with several listeners, each with its own mode, can start
 * one of these per TCP listener on the same context.
 */
import type { SocketHandler, TCPSocketListener } from "bun";
import type { Pool } from "../pool/pool.ts";
import type { PassiveSignals } from "../health/passive.ts";
import type { Logger } from "../log/logger.ts";
import { clientHandlers, refusedProxy, Relay, type RelayEnv, type SniRouting } from "./relay.ts";
import { TcpStats } from "./stats.ts";
import { CLIENT_HELLO_TIMEOUT_MS } from "./client-hello.ts";
import type { TlsMaterial } from "../tls/certificates.ts";
import { listenHelloFirst, NO_CHALLENGES, type AlpnChallenges, type HelloLimits, type PreTls } from "../tls/hello-first.ts";
import type { ProxyAccept } from "../net/proxy-protocol.ts";
import { clientCounts } from "../net/shared-client-counts.ts";

export { TcpStats, type SniRefusal } from "./stats.ts";
export type { RelayTarget, SniRouting } from "./relay.ts";
export { CLIENT_HELLO_MAX_BYTES, CLIENT_HELLO_TIMEOUT_MS } from "./client-hello.ts";

export interface TcpProxy {
  readonly port: number;
  /** This listener's totals (the per-backend figures live on each Backend). */
  readonly stats: TcpStats;
  /** Client connections open now. */
  readonly connections: number;
  /**
   * New timeouts, tries and hash key (a reload): they apply to connections accepted from now on.
   * `routing` given swaps the SNI chooser too (`{ sni: undefined }` turns SNI routing off);
   * omitted, the current one stays.
   */
  configure(config: TcpSettings, routing?: { readonly sni: SniRouting | undefined }): void;
  /** Renewed certificates (a reload re-read them): new handshakes use them, by server name. */
  renewTls(m: TlsMaterial): void;
  /**
   * Stop accepting. Graceful (default): resolves when every open connection has closed by
   * itself. force: resets every connection now and resolves once they are gone. A forced stop
   * may follow a graceful one that is still waiting; both promises then resolve.
   */
  stop(force?: boolean): Promise<void>;
}

/** The settings a TCP listener takes from the config: its pool's tries, connect timeout and hash key, the idle timeout. */
export interface TcpSettings {
  timeouts: { connect: number; idle: number };
  retry: { attempts: number };
  hash: { key: string } | undefined;
  /** listeners[].proxyProtocol: read a PROXY header from trusted peers first (net/proxy-protocol.ts). */
  acceptProxy?: ProxyAccept;
  /** limits.maxConnectionsPerClient: connections one client address may hold open to this listener; none when absent. */
  maxConnectionsPerClient?: number;
}

export interface TcpListenOptions {
  /** Where to listen. */
  host: string;
  port: number;
  /** Share the port with the other worker processes (SO_REUSEPORT). */
  reusePort?: boolean;
  /** Totals to count into, e.g. created by the balancer beforehand so that the admin app can show them. */
  stats?: TcpStats;
  /** Terminate TLS with these certificates (src/tls/): the backends get the plain bytes. */
  tls?: TlsMaterial;
  /** With `tls`: answer ACME's TLS-ALPN-01 challenges (tls/hello-first.ts). */
  alpnChallenges?: AlpnChallenges;
  /**
   * Choose the pool by the TLS server name the client sends, without terminating TLS (not
   * with `tls`: a terminated connection has no ClientHello left to pass on).
   */
  sni?: SniRouting;
}

/**
 * What a TCP listener reads of its balancer (a worker process has these too). `pool`: where
 * connections go; with `sni`, where a server name no route takes goes, when the chooser says so.
 */
export interface TcpContext {
  readonly settings: TcpSettings;
  readonly pool: Pool;
  readonly passive: PassiveSignals;
  readonly logger: Logger;
}

export async function startTcpProxy(ctx: TcpContext, opts: TcpListenOptions): Promise<TcpProxy> {
  const stats = opts.stats ?? new TcpStats();
  const tls = opts.tls;
  if (tls !== undefined && opts.sni !== undefined) throw new Error("a TCP listener either terminates TLS (tls) or routes by the server name it passes through (sni), not both");
  const relays = new Set<Relay>();
  let stopping = false;
  let drained: (() => void) | undefined;
  const allClosed = new Promise<void>((resolve) => (drained = resolve));

  const onFinished = (relay: Relay) => {
    if (!relays.delete(relay)) return;
    stats.open--;
    if (stopping && relays.size === 0) drained?.();
  };
  let sni = opts.sni;
  // The listener's, across reloads: relays started under one config release their counts in it.
  const clients = clientCounts(`connections ${opts.host}:${opts.port}`, ctx.settings.maxConnectionsPerClient);
  const envFor = (c: TcpSettings): RelayEnv => ({
    pool: ctx.pool,
    passive: ctx.passive,
    logger: ctx.logger,
    stats,
    connectTimeout: c.timeouts.connect,
    idleTimeout: c.timeouts.idle,
    maxTries: c.retry.attempts,
    // The only key a TCP connection has (load.ts refuses any other in TCP mode).
    hashByClientIp: c.hash?.key === "ip",
    ...(sni !== undefined ? { sni } : {}),
    ...(c.acceptProxy !== undefined ? { acceptProxy: c.acceptProxy } : {}),
    clients,
    onFinished,
  });
  // Each relay keeps the settings it started with; configure() swaps them for new connections.
  let env = envFor(ctx.settings);

  const handlers: SocketHandler<Relay> = {
    ...clientHandlers,
    open(socket) {
      if (stopping) {
        socket.terminate();
        return;
      }
      // TLS with a PROXY header: hello-first read it before the handshake, and hands over what it named.
      const pre = socket.data as unknown as PreTls | undefined;
      const relay = new Relay(env, socket);
      socket.data = relay;
      relays.add(relay);
      stats.accepted++;
      stats.open++;
      if (pre !== undefined) relay.startNamed(pre.proxied.named);
      else relay.start();
    },
  };
  // TLS: each ClientHello is read first, then TLS begins on the socket (tls/hello-first.ts). A
  // TCP listener bounds no count of connections, nor of these; each has CLIENT_HELLO_TIMEOUT_MS
  // for its ClientHello, as an SNI-routed one has.
  const helloLimits: HelloLimits = {
    helloTimeoutMs: CLIENT_HELLO_TIMEOUT_MS, maxPending: Number.POSITIVE_INFINITY,
    ...(ctx.settings.acceptProxy !== undefined ? { acceptProxy: ctx.settings.acceptProxy } : {}),
  };
  const helloFirst = tls !== undefined
    ? listenHelloFirst({
        hostname: opts.host, port: opts.port, exclusive: false, reusePort: opts.reusePort === true, allowHalfOpen: true,
        material: tls, alpn: undefined, handlers, challenges: opts.alpnChallenges ?? NO_CHALLENGES, limits: helloLimits,
        proxyRefused: (peer, detail) => refusedProxy(stats, ctx.logger, peer, detail),
      })
    : undefined;
  // Bun.listen refuses a port that is in use (no SO_REUSEPORT unless asked), as HTTP mode does.
  const listener: Pick<TCPSocketListener<unknown>, "port" | "stop"> = helloFirst?.listener ?? Bun.listen<Relay>({
    hostname: opts.host,
    port: opts.port,
    reusePort: opts.reusePort === true,
    // Half-closes are relayed, not turned into full closes (see relay.ts).
    allowHalfOpen: true,
    socket: handlers,
  });

  return {
    port: listener.port,
    stats,
    configure(c, routing) {
      if (routing !== undefined) {
        if (tls !== undefined && routing.sni !== undefined) throw new Error("a TCP listener that terminates TLS cannot route by server name");
        sni = routing.sni;
      }
      clients.setMax(c.maxConnectionsPerClient);
      env = envFor(c);
      helloLimits.acceptProxy = c.acceptProxy;
    },
    renewTls(m) {
      helloFirst?.renew(m);
    },
    get connections() {
      return relays.size;
    },
    stop(force = false): Promise<void> {
      if (!stopping) {
        stopping = true;
        // Stop accepting; connections already accepted live on.
        listener.stop(false);
      }
      if (force) {
        for (const relay of [...relays]) relay.destroy();
        listener.stop(true);
      }
      if (relays.size === 0) drained?.();
      return allClosed;
    },
  };
}
