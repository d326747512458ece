/**
 * One proxy listener: an address, a mode, certificates, and what it does with what arrives.
 * The HTTP listener (either engine, src/listener/http.ts) and the TCP listener (tcp.ts)
 * implement it; ListenerSet (listener-set.ts) keeps a config's listeners, in one process and in
 * each worker alike.
 */
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Backend } from "../pool/backend.ts";
import type { TlsMaterial } from "../tls/certificates.ts";
import type { RenewCause } from "../tls/termination.ts";
import type { Logger } from "../log/logger.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import type { AccessLog } from "../log/access.ts";
import type { TcpStats } from "../tcp/stats.ts";
import type { PoolSource, RouteTraffic } from "./routing.ts";
import type { MirrorFactory } from "./route-modifiers.ts";
import type { GuardState } from "../guard/build.ts";
import type { RequestTracer } from "../tracing/tracer.ts";
import type { RecentFailures } from "../stats/recent-failures.ts";

export interface Listener {
  readonly name: string;
  /** The address as configured: a change of host, port or mode means a new listener. */
  readonly config: ListenerConfig;
  /** The port bound (a configured 0 is a chosen port here). */
  readonly port: number;
  /** http://, https://, tcp:// or tls://, with a host a client can use. */
  readonly url: string;
  /** A new config for the same address: what it serves from now on (routes, limits, timeouts); what is in flight finishes as it began. */
  reconfigure(config: Config, listener: ListenerConfig): void;
  /** Renewed certificates: new handshakes use them (`cause`: a reload, or their files renewed by themselves). */
  renewTls(m: TlsMaterial, cause?: RenewCause): void;
  /** A backend left its pool: close its idle upstream connections now (socket engine). */
  closeIdle(backend: Backend): void;
  /** Stop accepting, and nothing else (the first step of a handover with workers). */
  closeListener(): void;
  /**
   * Stop: graceful, stop accepting and let in-flight work finish within `grace`, then cut what
   * is left; else cut everything now. handover: a successor serves the same port.
   */
  stop(graceful: boolean, grace: number, handover: boolean): Promise<void>;
}

/** What the listeners of one process read: the pools, where to count and log, how to bind. */
export interface ListenerContext {
  readonly pools: PoolSource;
  readonly traffic: TrafficStats;
  readonly routes: RouteTraffic;
  readonly mirrors: MirrorFactory;
  /** What the routes' guards keep across reloads (rate-limit budgets, stores, key caches). */
  readonly guards: GuardState;
  /** The last failed requests of every listener of the process (the dashboard's list). */
  readonly failures?: RecentFailures;
  /** TCP listeners' totals (connections, bytes), all TCP listeners together: made by the first that asks. */
  tcpTotals(): TcpStats;
  readonly logger: Logger;
  /** The access log of a config (one per format, kept to the end), or none when it is off. */
  accessLog(config: Config): AccessLog | undefined;
  /** The tracer of a config (tracing/tracer.ts), or none when `tracing` is absent. */
  tracer(config: Config): RequestTracer | undefined;
  /** Set when the process starts to stop: fetch-engine answers carry Connection: close. */
  readonly lifecycle: { readonly draining: boolean };
  /**
   * The port to bind for a listener (SO_REUSEPORT): claimed exclusively first when started
   * fresh, or the one a predecessor or the supervisor holds. `key`: "proxy" for the listener
   * `default` (the single-listener form), else `listener:<name>`; "redirect" likewise.
   */
  portFor(key: string, host: string, port: number): number;
}

/** The key a listener's port is known by among a process's ports (ListenerContext.portFor). */
export function portKey(listener: ListenerConfig, kind: "proxy" | "redirect"): string {
  return listener.name === "default" ? kind : `${kind}:${listener.name}`;
}

/** How a listener is named in messages: "proxy" for the single listener, `proxy "web"` otherwise. */
export function listenerLabel(listener: ListenerConfig, kind: "proxy" | "redirect" = "proxy"): string {
  return listener.name === "default" ? kind : `${kind} "${listener.name}"`;
}

export function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
