/**
 * The /stats document: every figure the dashboard shows, as plain JSON. Built from one read of
 * the live state (counters, states, the sampler's window, what backends reported), so the
 * page, the event stream and /stats always agree.
 */
import type { Backend, BackendState } from "../pool/backend.ts";
import { isStandby } from "../pool/tiers.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import { tracingFiguresOf, type TracingFigures } from "../tracing/counts.ts";
import type { ProxyErrorCode } from "../errors.ts";
import type { LocalCode } from "../net/network-error.ts";
import type { TcpStats } from "../tcp/stats.ts";
import {
  backendTally, formatUptime, percentiles, responsesByClass, totalTally,
  type ErrorRates, type Mode, type Percentiles, type WindowFigures,
} from "./tally.ts";
import type { Sampler } from "./sampler.ts";
import type { BackendStatsPoller } from "./poller.ts";
import type { ConfigStatus } from "../control/control.ts";
import type { Change } from "../control/changes.ts";
import type { RetryBudgetConfig } from "../forward/retry.ts";
import type { FailureRecord } from "../stats/recent-failures.ts";
import type { AcmeNameFigures } from "../acme/manager.ts";
import {
  backendId, balancerMode, poolsOf, routeStatsOf, routeSummaries, usersOfPools,
  type PoolsSource, type PoolUsers, type PoolView, type RouteStatsSource, type RouteSummary, type TopologyConfig,
} from "./topology.ts";

/**
 * With `workers`, what /stats shows of one worker process. Declared here, by the view that
 * shows it (with WorkersFigures), and produced by the supervisor (workers/supervisor.ts), which
 * sits above the admin layer.
 */
export interface WorkerFigures {
  index: number;
  pid: number | null;
  state: "starting" | "serving" | "restarting" | "stopping" | "stopped";
  restarts: number;
  /** When the current process started serving, ISO 8601. */
  since: string | null;
  /** The last table version it applied. */
  stateVersion: number;
  /** From its last report: requests answered (TCP: connections accepted) and work in flight. */
  requests: number;
  inFlight: number;
  lastExit: string | null;
}

export interface WorkersFigures {
  count: number;
  /** The version of the backend table the owner sent last. */
  stateVersion: number;
  list: WorkerFigures[];
}

/**
 * What the admin views read. A BalancerContext fits: its `pools` (every named pool) and
 * `routes` (each route's figures). A source of one pool may give `pool` alone (topology.ts
 * poolsOf): it reads as the pool `default`.
 */
export interface SnapshotSource extends PoolsSource {
  readonly config: TopologyConfig;
  readonly traffic: TrafficStats;
  /** Each route's figures, by name (src/listener/routing.ts RouteTraffic). */
  readonly routes?: RouteStatsSource;
  readonly startedAt: number;
  /** TCP mode's listener totals, when the balancer hands them over. */
  readonly tcpStats?: TcpStats;
  /** The running config's version and the last reload's outcome, when the balancer has them. */
  readonly control?: { status(): ConfigStatus };
  /** The changes made while running. */
  readonly changes?: { recent(n?: number): Change[] };
  /** With `workers` above 1: the worker processes (the figures above are already their sum). */
  readonly workers?: { figures(): WorkersFigures };
  /** The last failed requests (stats/recent-failures.ts). */
  readonly failures?: { list(): FailureRecord[] };
  /** The names whose certificates come from ACME (acme/manager.ts). */
  readonly acme?: { figures(): AcmeNameFigures[] };
  /** Bring the figures up to date before they are read whole (the workers' latest counts). */
  refresh?(): Promise<void>;
}

/** Changes listed in /stats and on the dashboard. */
export const RECENT_CHANGES = 20;

export type ClassCounts = Record<"1xx" | "2xx" | "3xx" | "4xx" | "5xx", number>;

export interface CheckFigures {
  ok: boolean;
  detail: string;
  /** ISO 8601. */
  at: string;
  durationMs: number;
  agoSeconds: number;
}

export interface BackendFigures {
  name: string;
  /** The pool it is in. */
  pool: string;
  /** What the admin API, `switchyard ctl` and the charts call it: "pool/backend", or the bare name in the pool `default`. */
  id: string;
  url: string;
  state: BackendState;
  /** Healthy as far as probes and passive detection know (seed 001's "alive"). */
  alive: boolean;
  /** Would get new traffic now: healthy, enabled, not ejected, not full. */
  available: boolean;
  enabled: boolean;
  /** An operator's maintenance override of health ("down" or "up"), else null. */
  forced: "up" | "down" | null;
  weight: number;
  /** Failover tier (RFC 2782's SRV priority): lower is preferred. */
  priority: number;
  /** In a tier worse than the active one: gets no new traffic while that tier has an available backend. */
  standby: boolean;
  /** 0..1 while slow-starting, else 1. */
  rampFactor: number;
  maxConnections: number;
  inFlight: number;
  /** WebSockets open through it now (each also one of inFlight), and all time. */
  webSockets: number;
  webSocketsTotal: number;
  /** Tries sent to this backend (connections in TCP mode), all time. */
  requests: number;
  /** Over the window. */
  rps: number | null;
  responses: ClassCounts;
  /** All time: statuses 4xx/5xx it answered, and tries that got no answer. */
  errors: ErrorRates & { total: number };
  /** Over the window: shares of its requests; null when it had none. */
  errorRate: ErrorRates | null;
  retries: number;
  ejections: number;
  connectFailures: number;
  /** Time to the response head, ms, over the window. */
  latencyMs: Percentiles | null;
  latencyMsAllTime: Percentiles | null;
  lastCheck: CheckFigures | null;
  lastChange: { at: string; reason: string; agoSeconds: number };
  ejectedUntil: string | null;
  statsPath: string | null;
  /** What the backend reports about itself (statsPath), else null. */
  uptime: string | null;
  uptimeSeconds: number | null;
  memoryUsage: number | null;
  memory_usage: string | null;
  reportedAt: string | null;
  reportError: string | null;
  /** TCP mode (present when the mode is tcp or any is non-zero). */
  connections?: number;
  bytesIn?: number;
  bytesOut?: number;
}

/** One pool: its state as a whole; its backends are the entries of `backends` with this `pool`. */
export interface PoolFigures {
  name: string;
  mode: Mode;
  strategy: string;
  /** The ids of its backends, in order. */
  members: string[];
  backends: { total: number; available: number; standby: number } & Record<BackendState, number>;
  activePriority: number | null;
  panic: { active: boolean; threshold: number; entered: number; picks: number };
  /** HTTP pools: retries the pool's retry budget refused, all time, and the budget configured. */
  retryBudget?: { exhausted: number; budget: RetryBudgetConfig | null };
  inFlight: number;
  /** Tries (TCP: connections) sent to its backends, all time. */
  requests: number;
  /** The routes that forward to it, the TCP listeners whose own pool it is, and the routes that mirror to it. */
  routes: string[];
  listeners: string[];
  mirroredBy: string[];
}

/** A route's traffic: responses it sent, all time and over the window. */
export interface RouteTrafficFigures {
  /** Requests it answered or that the client abandoned. */
  requests: number;
  rps: number | null;
  responses: ClassCounts;
  /** 4xx/5xx answered by backends (or by the route's respond), and the balancer's own error answers. */
  errors: ErrorRates & { total: number };
  errorRate: ErrorRates | null;
  /** Its requests the balancer answered itself, by code (only codes with a count). */
  proxyErrors: Partial<Record<ProxyErrorCode, number>>;
  latencyMs: Percentiles | null;
  latencyMsAllTime: Percentiles | null;
}

/** One route: as configured (topology.ts), and its traffic. */
export interface RouteFigures extends RouteSummary {
  /**
   * Null where this process does not count the route: an SNI route (its connections are in
   * totals.tcp and its pool's backends), or with `workers` (the workers route the requests).
   */
  traffic: RouteTrafficFigures | null;
}

export interface StatsDocument {
  balancer: {
    mode: Mode;
    strategy: string;
    startedAt: string;
    uptimeSeconds: number;
    uptime: string;
    now: string;
    /** Seconds the windowed figures (rps, errorRate, latencyMs) cover; 0 until two samples exist. */
    windowSeconds: number;
    /** `standby`: backends in a tier worse than the active one (see activePriority). */
    backends: { total: number; available: number; standby: number } & Record<BackendState, number>;
    /**
     * The priority of the tier taking new traffic (pool/tiers.ts); null when no backend is
     * available. With several pools, the first pool's (each pool's own is in `pools`).
     */
    activePriority: number | null;
    /**
     * Panic mode (Envoy's healthy panic threshold, pool.ts): whether the pool balances over
     * every backend in service now, its threshold (%), how often it began, and the picks
     * (requests; TCP: connections) made in it, all time. With several pools: active when any
     * pool is, the first pool's threshold, counts summed (each pool's own is in `pools`).
     */
    panic: { active: boolean; threshold: number; entered: number; picks: number };
  };
  totals: {
    /** Requests answered or abandoned by their client (TCP: connections accepted), all time. */
    requests: number;
    inFlight: number;
    /** WebSockets open now, over all backends. */
    webSockets: number;
    rps: number | null;
    responses: ClassCounts;
    errors: ErrorRates & { total: number };
    errorRate: ErrorRates | null;
    proxyErrors: Record<ProxyErrorCode, number>;
    /**
     * Tries that failed for want of the proxy's own resources, by code (net/network-error.ts):
     * the proxy's errors, never counted against a backend (TCP mode: tcp.localErrors).
     */
    localErrors: Record<LocalCode, number>;
    retries: number;
    /** Access-log lines dropped (log.maxBuffer full, or a write failed), all time; with workers, all of theirs. */
    accessLogDropped: number;
    /**
     * HTTP mode: the pools' retry budgets. Retries they refused (each request got its last
     * failure), all time, summed over the pools; the top-level budget as configured (false:
     * off; null: the source does not say). Each pool's own is in `pools`.
     */
    retryBudget?: { exhausted: number; budget: RetryBudgetConfig | null };
    latencyMs: Percentiles | null;
    latencyMsAllTime: Percentiles | null;
    bytesIn?: number;
    bytesOut?: number;
    connections?: number;
    /** TCP mode: the listener's own counters (see src/tcp/stats.ts). */
    tcp?: TcpStats;
    /** When `tracing` is on: the span exporter's counts, all processes together (tracing/counts.ts). */
    tracing?: TracingFigures;
  };
  /** Every backend of every pool, pool by pool; `pool` says which. */
  backends: BackendFigures[];
  /** Each pool: its backends' states, panic mode, retry budget, and who sends to it. */
  pools: PoolFigures[];
  /** Each route of the config in force, in order: what it matches and does, and its traffic. */
  routes: RouteFigures[];
  /** Config version, when it was loaded, the last reload's outcome (absent without a control plane). */
  config?: ConfigStatus;
  /** The last changes made while running, oldest first. */
  changes?: Change[];
  /** With `workers` above 1: each worker process (state, restarts, its share of the traffic). */
  workers?: WorkersFigures;
  /**
   * HTTP: the last failed requests, newest first (at most 50: stats/recent-failures.ts): a 5xx
   * or a cut answer, with why, where it went and how often it was tried.
   */
  recentFailures?: FailureRecord[];
  /** With `tls.acme`: each name, what serves it, when it expires and is renewed, and failed orders in a row. */
  acme?: AcmeNameFigures[];
}

export function buildSnapshot(src: SnapshotSource, sampler: Sampler, poller: BackendStatsPoller, now = Date.now()): StatsDocument {
  const { traffic, config } = src;
  const win = sampler.window();
  const pools = poolsOf(src);
  const users = usersOfPools(config);
  const states: Record<BackendState, number> = emptyStates();
  let available = 0;
  let standby = 0;
  let inFlight = 0;
  let webSockets = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let connections = 0;
  const backends: BackendFigures[] = [];
  const poolFigures: PoolFigures[] = [];
  for (const p of pools) {
    const pf = poolFiguresOf(p, users.get(p.name), now);
    poolFigures.push(pf);
    const active = pf.activePriority ?? undefined;
    for (const b of p.pool.backends) {
      const fig = backendFigures(b, p, pools.length, win?.backends.get(b), poller, now, active);
      backends.push(fig);
      pf.members.push(fig.id);
      pf.backends[fig.state]++;
      pf.backends.total++;
      pf.inFlight += b.inFlight;
      pf.requests += fig.requests;
      if (fig.available) pf.backends.available++;
      if (fig.standby) pf.backends.standby++;
      states[fig.state]++;
      if (fig.available) available++;
      if (fig.standby) standby++;
      inFlight += b.inFlight;
      webSockets += b.stats.webSockets;
      bytesIn += b.stats.bytesIn;
      bytesOut += b.stats.bytesOut;
      connections += b.acquired;
    }
  }
  const all = pools.flatMap((p) => p.pool.backends);
  const mode = balancerMode(config);
  const total = totalTally(traffic, mode, src.tcpStats, all);
  const tcp = mode === "tcp" || bytesIn > 0 || bytesOut > 0;
  const uptimeSeconds = Math.floor((now - src.startedAt) / 1000);
  const first = poolFigures[0];
  const http = pools.filter((p) => p.config.mode === "http");
  return {
    balancer: {
      mode,
      strategy: config.strategy,
      startedAt: new Date(src.startedAt).toISOString(),
      uptimeSeconds,
      uptime: formatUptime(uptimeSeconds),
      now: new Date(now).toISOString(),
      windowSeconds: win?.seconds ?? 0,
      backends: { total: backends.length, available, standby, ...states },
      activePriority: first?.activePriority ?? null,
      panic: {
        active: poolFigures.some((p) => p.panic.active),
        threshold: first?.panic.threshold ?? 0,
        entered: sum(poolFigures, (p) => p.panic.entered),
        picks: sum(poolFigures, (p) => p.panic.picks),
      },
    },
    totals: {
      requests: total.units,
      inFlight,
      webSockets,
      rps: win?.total.rate ?? null,
      responses: classCounts(responsesByClass(traffic)),
      errors: { "4xx": total.c4, "5xx": total.c5, proxy: total.proxy, total: total.c4 + total.c5 + total.proxy },
      errorRate: win?.total.errorRate ?? null,
      proxyErrors: { ...traffic.proxyErrors },
      localErrors: { ...traffic.localErrors },
      retries: mode === "tcp" && src.tcpStats ? src.tcpStats.retries : traffic.retries,
      accessLogDropped: traffic.accessLogDropped,
      ...(config.tracing !== undefined ? { tracing: tracingFiguresOf(traffic.tracing) } : {}),
      ...(mode === "http"
        ? { retryBudget: { exhausted: sum(http, (p) => p.pool.retryBudget.exhausted), budget: config.retry ? budgetOf(config.retry.budget) : null } }
        : {}),
      latencyMs: win?.total.latencyMs ?? null,
      latencyMsAllTime: percentiles(total.latency),
      ...(tcp ? { bytesIn, bytesOut, connections } : {}),
      ...(src.tcpStats ? { tcp: { ...src.tcpStats } } : {}),
    },
    backends,
    pools: poolFigures,
    routes: routeFigures(src, win?.routes),
    ...(src.control ? { config: src.control.status() } : {}),
    ...(src.changes ? { changes: src.changes.recent(RECENT_CHANGES) } : {}),
    ...(src.workers ? { workers: src.workers.figures() } : {}),
    ...(src.failures ? { recentFailures: src.failures.list() } : {}),
    ...acmeOf(src),
  };
}

function acmeOf(src: SnapshotSource): { acme?: AcmeNameFigures[] } {
  const names = src.acme?.figures() ?? [];
  return names.length > 0 ? { acme: names } : {};
}

function emptyStates(): Record<BackendState, number> {
  return { up: 0, down: 0, draining: 0, ejected: 0, "slow-starting": 0 };
}

function sum<T>(xs: readonly T[], f: (x: T) => number): number {
  let n = 0;
  for (const x of xs) n += f(x);
  return n;
}

/** A pool's own figures; `members` and the backend counts are filled in by the caller, backend by backend. */
function poolFiguresOf(p: PoolView, users: PoolUsers | undefined, now: number): PoolFigures {
  const { pool, config } = p;
  return {
    name: p.name,
    mode: config.mode,
    strategy: config.strategy,
    members: [],
    backends: { total: 0, available: 0, standby: 0, ...emptyStates() },
    activePriority: pool.activePriority(now) ?? null,
    panic: { active: pool.panicking(now), threshold: pool.panicThreshold, ...pool.panic },
    ...(config.mode === "http" ? { retryBudget: { exhausted: pool.retryBudget.exhausted, budget: config.retry ? budgetOf(config.retry.budget) : null } } : {}),
    inFlight: 0,
    requests: 0,
    routes: users?.routes ?? [],
    listeners: users?.listeners ?? [],
    mirroredBy: users?.mirroredBy ?? [],
  };
}

/** Each pool's figures, backend counts included (the admin API's pool list). */
export function poolFigures(src: PoolsSource, now = Date.now()): PoolFigures[] {
  const users = usersOfPools(src.config);
  const pools = poolsOf(src);
  return pools.map((p) => {
    const f = poolFiguresOf(p, users.get(p.name), now);
    const active = f.activePriority ?? undefined;
    for (const b of p.pool.backends) {
      const state = b.state(now);
      f.members.push(backendId(p.name, b, pools.length));
      f.backends.total++;
      f.backends[state]++;
      if (b.available(now)) f.backends.available++;
      if (isStandby(b, active)) f.backends.standby++;
      f.inFlight += b.inFlight;
      f.requests += backendTally(b, p.config.mode).units;
    }
    return f;
  });
}

/** Each route of the config, with its traffic where this process counts it. */
export function routeFigures(src: { readonly config: TopologyConfig; readonly routes?: RouteStatsSource }, windows?: Map<string, WindowFigures>): RouteFigures[] {
  const stats = routeStatsOf(src);
  return routeSummaries(src.config).map((r) => {
    const t = r.sni ? undefined : stats.get(r.name);
    return { ...r, traffic: t === undefined ? null : routeTraffic(t, windows?.get(r.name)) };
  });
}

/** A route's figures from its TrafficStats (all time) and the sampler's window. */
export function routeTraffic(t: TrafficStats, w?: WindowFigures): RouteTrafficFigures {
  const tally = totalTally(t, "http");
  const proxyErrors: Partial<Record<ProxyErrorCode, number>> = {};
  for (const [code, n] of Object.entries(t.proxyErrors) as [ProxyErrorCode, number][]) if (n > 0) proxyErrors[code] = n;
  return {
    requests: tally.units,
    rps: w?.rate ?? null,
    responses: classCounts(responsesByClass(t)),
    errors: { "4xx": tally.c4, "5xx": tally.c5, proxy: tally.proxy, total: tally.c4 + tally.c5 + tally.proxy },
    errorRate: w?.errorRate ?? null,
    proxyErrors,
    latencyMs: w?.latencyMs ?? null,
    latencyMsAllTime: percentiles(tally.latency),
  };
}

function backendFigures(b: Backend, p: PoolView, poolCount: number, w: WindowFigures | undefined, poller: BackendStatsPoller, now: number, active: number | undefined): BackendFigures {
  const mode = p.config.mode;
  const s = b.stats;
  const t = backendTally(b, mode);
  const reported = poller.get(b);
  const check = b.lastCheck;
  const fig: BackendFigures = {
    name: b.name,
    pool: p.name,
    id: backendId(p.name, b, poolCount),
    url: b.url.href,
    state: b.state(now),
    alive: b.isHealthy,
    available: b.available(now),
    enabled: b.isEnabled,
    forced: b.forcedHealth ?? null,
    weight: b.weight,
    priority: b.priority,
    standby: isStandby(b, active),
    rampFactor: Math.round(b.rampFactor(now) * 1000) / 1000,
    maxConnections: b.maxConnections,
    inFlight: b.inFlight,
    webSockets: s.webSockets,
    webSocketsTotal: s.webSocketsTotal,
    requests: t.units,
    rps: w?.rate ?? null,
    responses: classCounts(s.byClass),
    errors: { "4xx": t.c4, "5xx": t.c5, proxy: t.proxy, total: t.c4 + t.c5 + t.proxy },
    errorRate: w?.errorRate ?? null,
    retries: s.retries,
    ejections: s.ejections,
    connectFailures: s.connectFailures,
    latencyMs: w?.latencyMs ?? null,
    latencyMsAllTime: percentiles(s.latency),
    lastCheck: check
      ? { ok: check.ok, detail: check.detail, at: new Date(check.at).toISOString(), durationMs: Math.round(check.durationMs * 1000) / 1000, agoSeconds: ago(check.at, now) }
      : null,
    lastChange: { at: new Date(b.lastChange).toISOString(), reason: b.lastChangeReason, agoSeconds: ago(b.lastChange, now) },
    ejectedUntil: b.ejectedUntilMs > now ? new Date(b.ejectedUntilMs).toISOString() : null,
    statsPath: b.statsPath ?? null,
    uptime: reported?.uptime ?? null,
    uptimeSeconds: reported?.uptimeSeconds ?? null,
    memoryUsage: reported?.memoryUsage ?? null,
    memory_usage: reported?.memory_usage ?? null,
    reportedAt: reported && reported.at > 0 ? new Date(reported.at).toISOString() : null,
    reportError: reported?.error ?? null,
  };
  if (mode === "tcp" || s.bytesIn > 0 || s.bytesOut > 0) {
    fig.connections = b.acquired;
    fig.bytesIn = s.bytesIn;
    fig.bytesOut = s.bytesOut;
  }
  return fig;
}

/** A copy: the document is plain data, never the running config's own object. */
function budgetOf(b: RetryBudgetConfig): RetryBudgetConfig {
  return b === false ? false : { percent: b.percent, minRetriesPerSecond: b.minRetriesPerSecond };
}

function classCounts(byClass: readonly number[]): ClassCounts {
  return { "1xx": byClass[1] ?? 0, "2xx": byClass[2] ?? 0, "3xx": byClass[3] ?? 0, "4xx": byClass[4] ?? 0, "5xx": byClass[5] ?? 0 };
}

function ago(at: number, now: number): number {
  return Math.max(0, Math.round((now - at) / 100) / 10);
}
