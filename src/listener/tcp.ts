/**
 * The layer-4 listener: connections relayed to the listener's pool (src/tcp/), with the pool's
 * policy, health, connect timeout and tries. A reconfigure applies to connections accepted from
 * then on; relays already running keep what they started with.
 */
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Backend } from "../pool/backend.ts";
import { CLIENT_HELLO_MAX_BYTES, startTcpProxy, type SniRouting, type TcpProxy, type TcpSettings } from "../tcp/proxy.ts";
import { RouteTable } from "../route/table.ts";
import { routesServed } from "../config/expand.ts";
import { listenError } from "../listen-error.ts";
import { cidrMatcher } from "../net/cidr.ts";
import { proxyAccept } from "../net/proxy-protocol.ts";
import type { TlsMaterial } from "../tls/certificates.ts";
import { StoredAlpnChallenges } from "../acme/tls-alpn01.ts";
import { withGrace } from "./http.ts";
import { hostForUrl, listenerLabel, portKey, type Listener, type ListenerContext } from "./listener.ts";

/** The settings of a TCP listener's relays: its pool's tries, connect timeout and hash key, the idle timeout, PROXY header reading, the bound per client. */
function tcpSettings(config: Config, listener: ListenerConfig): TcpSettings {
  const pool = config.pools[fallbackPool(config, listener)]!;
  const acceptProxy = proxyAccept(listener.proxyProtocol, cidrMatcher(config.trustedProxies), config.timeouts.header);
  const maxConnectionsPerClient = config.limits.maxConnectionsPerClient;
  return {
    timeouts: { connect: pool.timeouts.connect, idle: config.timeouts.idle }, retry: pool.retry, hash: pool.hash,
    ...(acceptProxy !== undefined ? { acceptProxy } : {}),
    ...(maxConnectionsPerClient !== undefined ? { maxConnectionsPerClient } : {}),
  };
}


/**
 * The pool whose settings a listener's relays take, and where a connection goes without SNI
 * routes: the listener's `pool`, else its first SNI route's.
 */
function fallbackPool(config: Config, listener: ListenerConfig): string {
  return listener.pool ?? routesServed(config, listener)[0]!.pool!;
}

/**
 * Choose by server name (HAProxy's req.ssl_sni) through the route table's SNI index (exact
 * names in a map, `*.` wildcards by the name's suffixes), first route in config order among
 * those that match, as for HTTP routes; no match goes to the listener's `pool`, or is closed.
 * Built once per config.
 */
function sniRouting(config: Config, listener: ListenerConfig, ctx: ListenerContext): SniRouting | undefined {
  const routes = routesServed(config, listener);
  if (routes.length === 0) return undefined;
  const table = RouteTable.compile(routes, (name) => ctx.pools.handle(name));
  const fallback = listener.pool !== undefined ? ctx.pools.handle(listener.pool) : undefined;
  return {
    choose: (serverName) => table.matchSni(serverName)?.pool ?? fallback,
    timeoutMs: config.timeouts.header,
    maxBytes: CLIENT_HELLO_MAX_BYTES,
  };
}

export class TcpListener implements Listener {
  readonly name: string;
  private cfg: ListenerConfig;

  private constructor(
    listener: ListenerConfig,
    private readonly proxy: TcpProxy,
    private readonly ctx: ListenerContext,
    /** With tls: the TLS-ALPN-01 challenges it answers (none without tls.acme tls-alpn-01). */
    private readonly challenges: StoredAlpnChallenges | undefined,
  ) {
    this.name = listener.name;
    this.cfg = listener;
  }

  static async start(config: Config, listener: ListenerConfig, ctx: ListenerContext, tls: TlsMaterial | undefined): Promise<TcpListener> {
    const port = ctx.portFor(portKey(listener, "proxy"), listener.host, listener.port);
    const { pool, passive } = ctx.pools.handle(fallbackPool(config, listener));
    const sni = sniRouting(config, listener, ctx);
    const alpnChallenges = tls !== undefined ? new StoredAlpnChallenges(config.acme?.storage, listener) : undefined;
    const proxy = await startTcpProxy(
      { settings: tcpSettings(config, listener), pool, passive, logger: ctx.logger },
      {
        host: listener.host, port, reusePort: true, stats: ctx.tcpTotals(),
        ...(tls !== undefined ? { tls } : {}), ...(sni !== undefined ? { sni } : {}), ...(alpnChallenges !== undefined ? { alpnChallenges } : {}),
      },
    ).catch((e: unknown) => {
      throw listenError(listenerLabel(listener), listener.host, port, e);
    });
    return new TcpListener(listener, proxy, ctx, alpnChallenges);
  }

  get config(): ListenerConfig {
    return this.cfg;
  }

  get port(): number {
    return this.proxy.port;
  }

  get url(): string {
    return `${this.cfg.tls !== undefined ? "tls" : "tcp"}://${hostForUrl(this.cfg.host)}:${this.port}`;
  }

  /** Client connections open now. */
  get connections(): number {
    return this.proxy.connections;
  }

  reconfigure(config: Config, listener: ListenerConfig): void {
    this.cfg = listener;
    // The names it answers TLS-ALPN-01 for, and the store, may change.
    this.challenges?.update(config.acme?.storage, listener);
    this.proxy.configure(tcpSettings(config, listener), { sni: sniRouting(config, listener, this.ctx) });
  }

  renewTls(m: TlsMaterial): void {
    this.proxy.renewTls(m);
  }

  closeIdle(_backend: Backend): void {
    // A relay holds its backend connection for the client's; nothing idles.
  }

  closeListener(): void {
    // TCP's stop closes its listener first anyway.
  }

  async stop(graceful: boolean, grace: number): Promise<void> {
    if (!graceful) return this.proxy.stop(true);
    await withGrace(this.proxy.stop(false), grace, this.ctx.logger, `${listenerLabel(this.cfg)} listener`, () => this.proxy.stop(true));
  }
}
