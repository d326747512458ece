/**
 * The messages between the owner process and its workers (src/workers/), over the IPC channel
 * Bun.spawn opens (structured clone). Plain data only: a worker rebuilds its objects from them.
 *
 * Owner -> worker: `start` once (the config, every pool's table, and the port the owner claimed
 * for each listener), then `tables` on every change of the backends (state or config), `config`
 * on every change of the running config (with the tables of that config's pools, so that a
 * route never names a pool the worker does not hold yet, and the ports of its listeners, so
 * that one added or moved binds the port the owner claimed), `pull` when the admin port needs
 * figures now, `unlisten` (a handover's first step) and `stop` to drain and exit. Worker ->
 * owner: `ready` or `failed` once, `unlistened`, `applied` after each tables, `configured` once
 * a config is in force (its listeners bound, stopped or changed), `report` (figures, in-flight)
 * on a short timer and on each pull, `passive` (what live traffic said about backends), `log`,
 * and `stopped` before it exits.
 *
 * Backends are named per pool (two pools may each have a `backend-1`): everything about a
 * backend travels with its pool's name.
 */
import type { UpstreamTlsConfig } from "../tls/upstream.ts";
import type { Config } from "../config/schema.ts";
import type { TracingFigures } from "../tracing/counts.ts";
import type { UpstreamSettings, BackendOptions, MirrorState } from "../pool/backend.ts";
import type { PolicyName } from "../config/policy-names.ts";
import type { ProxyErrorCode } from "../errors.ts";
import type { MethodLabel } from "../stats/traffic.ts";
import type { LocalCode } from "../net/network-error.ts";
import type { FailureRecord } from "../stats/recent-failures.ts";

/** One backend as the owner describes it to its workers: its config, then its runtime state. */
export interface TableEntry {
  spec: Required<Pick<BackendOptions, "name" | "url" | "weight" | "maxConnections" | "slowStart" | "latencyDecay">> & { priority?: number; statsPath?: string; tls?: UpstreamTlsConfig; upstream?: UpstreamSettings };
  state: MirrorState;
}

/** One pool: every backend, in the pool's order, with the strategy and panic threshold: a worker's copy becomes exactly this. */
export interface Table {
  strategy: PolicyName;
  panicThreshold: number;
  backends: TableEntry[];
}

/** Every pool of the owner, by name, as of `version`: a pool not named here is gone. */
export interface Tables {
  version: number;
  pools: Record<string, Table>;
}

/**
 * The port each listener binds, by its key (listener.ts portKey: "proxy" for the listener
 * `default`, `proxy:<name>` for the others): claimed by the owner, shared by every worker
 * through SO_REUSEPORT.
 */
export type Ports = Record<string, number>;

export type ToWorker =
  /** `budgetDir`: the owner's shared directory, which every worker maps files of: the rate-limit budgets (src/guard/rate-limit-shared.ts) and the per-client counts (src/net/shared-client-counts.ts). */
  | { t: "start"; index: number; count: number; ports: Ports; config: Config; tables: Tables; budgetDir?: string }
  | { t: "tables"; tables: Tables }
  /** `id`: answered by `configured` with the same id. */
  | { t: "config"; id: number; config: Config; tables: Tables; ports: Ports }
  | { t: "pull"; id: number }
  /** A handover's first step: stop accepting, change nothing else; answered with `unlistened`. */
  | { t: "unlisten" }
  /** handover: a successor's workers serve the same port (`switchyard upgrade`). */
  | { t: "stop"; force: boolean; graceMs: number; handover?: boolean };

/** Histogram counts as plain numbers. */
export interface HistogramFigures {
  counts: number[];
  count: number;
  sum: number;
}

export interface BackendFigures {
  inFlight: number;
  acquired: number;
  requests: number;
  byClass: number[];
  byMethod: Record<MethodLabel, number[]>;
  proxyErrors: number;
  retries: number;
  /** Counted by the worker itself (TCP: a connect that timed out); refused connects the owner counts from events. */
  connectFailures: number;
  bytesIn: number;
  bytesOut: number;
  latency: HistogramFigures;
}

/** A TrafficStats as plain numbers: the worker's totals, and each route's. */
export interface TrafficFigures {
  requests: number;
  byMethod: Record<MethodLabel, number[]>;
  proxyErrors: Record<ProxyErrorCode, number>;
  localErrors: Record<LocalCode, number>;
  retries: number;
  /** Absent from a worker of an older binary (an upgrade in place): 0. */
  queued?: number;
  /** Access-log lines the worker dropped (TrafficStats.accessLogDropped); absent from routes'. */
  accessLogDropped?: number;
  latency: HistogramFigures;
  /** The worker's span exporter (tracing/counts.ts); absent in a route's figures. */
  tracing?: TracingFigures;
}

/** One pool's figures in a worker. */
export interface PoolFigures {
  backends: Record<string, BackendFigures>;
  /** Picks the worker's copy made in panic mode (it follows the owner's table and threshold). */
  panicPicks: number;
  /** Retries the worker's own retry budget of this pool (pool/retry-budget.ts) refused. */
  retryBudgetExhausted: number;
}

/** A worker's cumulative figures since it started, and what it holds in flight now. */
export interface Report {
  traffic: TrafficFigures;
  /** TCP listeners' totals (field for field as TcpStats). */
  tcp?: Record<string, number>;
  /** By pool name. */
  pools: Record<string, PoolFigures>;
  /** By route name (listener/routing.ts RouteTraffic). */
  routes: Record<string, TrafficFigures>;
  /** Failed requests since the worker's last report, oldest first (stats/recent-failures.ts). */
  failures?: FailureRecord[];
}

/** What a worker saw of backend `b` of pool `p`, in order; a run of good answers is one "ok". */
export type PassiveEvent = { p: string; b: string; k: "ok" } | { p: string; b: string; k: "connect" | "fail"; d: string };

export type FromWorker =
  | { t: "ready"; pid: number }
  | { t: "failed"; error: { name: string; code?: string; message: string; problems?: string[]; listener?: string; address?: string; reason?: string } }
  | { t: "applied"; version: number }
  /** A config's listeners applied: what changed (ListenerSet.apply's lines), or why it could not. */
  | { t: "configured"; id: number; lines: string[]; error?: string }
  | { t: "report"; report: Report; id?: number }
  | { t: "passive"; events: PassiveEvent[] }
  | { t: "log"; level: "info" | "warn" | "error"; msg: string }
  | { t: "unlistened" }
  | { t: "stopped" };

/** The internal subcommand a worker process runs (src/cli.ts). Not for people. */
export const WORKER_COMMAND = "__worker";
