/**
 * The /stats document: every figure the dashboard shows, as plain JSON. Built from one read of
 * the live state (counters, states, the sampler's window, what backends reported), so the
 * page, the event stream and /stats always agree.
 */
import type { Backend, BackendState } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import { isStandby } from "../pool/tiers.ts";
import type { TrafficStats } from "../stats/traffic.ts";
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

export interface SnapshotSource {
  readonly config: { readonly mode: Mode; readonly strategy: string; readonly retry?: { readonly budget: RetryBudgetConfig } };
  readonly pool: Pool;
  readonly traffic: TrafficStats;
  readonly startedAt: number;
  /** TCP mode's listener totals, when the balancer hands them over. */
  readonly tcpStats?: TcpStats;
  /** The running config's version and the last reload's outcome, when the balancer has them. */
  readonly control?: { status(): ConfigStatus };
  /** The changes made while running. */
  readonly changes?: { recent(n?: number): Change[] };
  /** With `workers` above 1: the worker processes (the figures above are already their sum). */
  readonly workers?: { figures(): WorkersFigures };
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
    /** The priority of the tier taking new traffic (pool/tiers.ts); null when no backend is available. */
    activePriority: number | null;
    /**
     * Panic mode (Envoy's healthy panic threshold, pool.ts): whether the pool balances over
     * every backend in service now, its threshold (%), how often it began, and the picks
     * (requests; TCP: connections) made in it, all time.
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
    /**
     * HTTP mode: the pool's retry budget. Retries it refused (each request got its last
     * failure), all time; the budget as configured (false: off; null: the source does not say).
     */
    retryBudget?: { exhausted: number; budget: RetryBudgetConfig | null };
    latencyMs: Percentiles | null;
    latencyMsAllTime: Percentiles | null;
    bytesIn?: number;
    bytesOut?: number;
    connections?: number;
    /** TCP mode: the listener's own counters (see src/tcp/stats.ts). */
    tcp?: TcpStats;
  };
  backends: BackendFigures[];
  /** Config version, when it was loaded, the last reload's outcome (absent without a control plane). */
  config?: ConfigStatus;
  /** The last changes made while running, oldest first. */
  changes?: Change[];
  /** With `workers` above 1: each worker process (state, restarts, its share of the traffic). */
  workers?: WorkersFigures;
}

export function buildSnapshot(src: SnapshotSource, sampler: Sampler, poller: BackendStatsPoller, now = Date.now()): StatsDocument {
  const { pool, traffic, config } = src;
  const win = sampler.window();
  const states: Record<BackendState, number> = { up: 0, down: 0, draining: 0, ejected: 0, "slow-starting": 0 };
  let available = 0;
  let standby = 0;
  const active = pool.activePriority(now);
  let inFlight = 0;
  let webSockets = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let connections = 0;
  const backends = pool.backends.map((b) => {
    const fig = backendFigures(b, config.mode, win?.backends.get(b), poller, now, active);
    states[fig.state]++;
    if (fig.available) available++;
    if (fig.standby) standby++;
    inFlight += b.inFlight;
    webSockets += b.stats.webSockets;
    bytesIn += b.stats.bytesIn;
    bytesOut += b.stats.bytesOut;
    connections += b.acquired;
    return fig;
  });
  const total = totalTally(traffic, config.mode, src.tcpStats, pool.backends);
  const tcp = config.mode === "tcp" || bytesIn > 0 || bytesOut > 0;
  const uptimeSeconds = Math.floor((now - src.startedAt) / 1000);
  return {
    balancer: {
      mode: config.mode,
      strategy: config.strategy,
      startedAt: new Date(src.startedAt).toISOString(),
      uptimeSeconds,
      uptime: formatUptime(uptimeSeconds),
      now: new Date(now).toISOString(),
      windowSeconds: win?.seconds ?? 0,
      backends: { total: backends.length, available, standby, ...states },
      activePriority: active ?? null,
      panic: { active: pool.panicking(now), threshold: pool.panicThreshold, ...pool.panic },
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
      retries: config.mode === "tcp" && src.tcpStats ? src.tcpStats.retries : traffic.retries,
      ...(config.mode === "http"
        ? { retryBudget: { exhausted: pool.retryBudget.exhausted, budget: config.retry ? budgetOf(config.retry.budget) : null } }
        : {}),
      latencyMs: win?.total.latencyMs ?? null,
      latencyMsAllTime: percentiles(total.latency),
      ...(tcp ? { bytesIn, bytesOut, connections } : {}),
      ...(src.tcpStats ? { tcp: { ...src.tcpStats } } : {}),
    },
    backends,
    ...(src.control ? { config: src.control.status() } : {}),
    ...(src.changes ? { changes: src.changes.recent(RECENT_CHANGES) } : {}),
    ...(src.workers ? { workers: src.workers.figures() } : {}),
  };
}

function backendFigures(b: Backend, mode: Mode, w: WindowFigures | undefined, poller: BackendStatsPoller, now: number, active: number | undefined): BackendFigures {
  const s = b.stats;
  const t = backendTally(b, mode);
  const reported = poller.get(b);
  const check = b.lastCheck;
  const fig: BackendFigures = {
    name: b.name,
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
