/**
 * The messages between the owner process and its workers (src/workers/), over the IPC channel
 * Bun.spawn opens (structured clone). Plain data only: a worker rebuilds its objects from them.
 *
 * Owner -> worker: `start` once, then `table` on every change of the backends (state or
 * config), `config` on every change of the running config, `pull` when the admin port needs
 * figures now, `unlisten` (a handover's first step) and `stop` to drain and exit. Worker -> owner:
 * `ready` or `failed` once, `unlistened`, `applied`
 * after each table, `report` (figures, in-flight) on a short timer and on each pull, `passive`
 * (what live traffic said about backends), `log`, and `stopped` before it exits.
 */
import type { UpstreamTlsConfig } from "../tls/upstream.ts";
import type { Config } from "../config/schema.ts";
import type { UpstreamSettings, BackendOptions, MirrorState } from "../pool/backend.ts";
import type { PolicyName } from "../config/policy-names.ts";
import type { ProxyErrorCode } from "../errors.ts";
import type { MethodLabel } from "../stats/traffic.ts";
import type { LocalCode } from "../net/network-error.ts";

/** One backend as the owner describes it to its workers: its config, then its runtime state. */
export interface TableEntry {
  spec: Required<Pick<BackendOptions, "name" | "url" | "weight" | "maxConnections" | "slowStart" | "latencyDecay">> & { priority?: number; statsPath?: string; tls?: UpstreamTlsConfig; upstream?: UpstreamSettings };
  state: MirrorState;
}

/** Every backend, in the pool's order, with the strategy: a worker's pool becomes exactly this. */
export interface Table {
  version: number;
  strategy: PolicyName;
  backends: TableEntry[];
}

export type ToWorker =
  | { t: "start"; index: number; count: number; port: number; config: Config; table: Table }
  | { t: "table"; table: Table }
  | { t: "config"; config: Config }
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

export interface TrafficFigures {
  requests: number;
  byMethod: Record<MethodLabel, number[]>;
  proxyErrors: Record<ProxyErrorCode, number>;
  localErrors: Record<LocalCode, number>;
  /** Picks the worker's pool made in panic mode (it follows the owner's table and threshold). */
  panicPicks: number;
  retries: number;
  latency: HistogramFigures;
}

/** A worker's cumulative figures since it started, and what it holds in flight now. */
export interface Report {
  traffic: TrafficFigures;
  /** TCP mode's listener totals (field for field as TcpStats). */
  tcp?: Record<string, number>;
  backends: Record<string, BackendFigures>;
  /** HTTP mode: retries the worker's own retry budget (pool/retry-budget.ts) refused. */
  retryBudget?: { exhausted: number };
}

/** What a worker saw of a backend, in order; a run of good answers is one "ok". */
export type PassiveEvent = { b: string; k: "ok" } | { b: string; k: "connect" | "fail"; d: string };

export type FromWorker =
  | { t: "ready"; pid: number }
  | { t: "failed"; error: { name: string; code?: string; message: string; problems?: string[]; listener?: string; address?: string; reason?: string } }
  | { t: "applied"; version: number }
  | { t: "report"; report: Report; id?: number }
  | { t: "passive"; events: PassiveEvent[] }
  | { t: "log"; level: "info" | "warn" | "error"; msg: string }
  | { t: "unlistened" }
  | { t: "stopped" };

/** The internal subcommand a worker process runs (src/cli.ts). Not for people. */
export const WORKER_COMMAND = "__worker";
