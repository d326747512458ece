/**
 * Reading the live counters into plain cumulative figures ("tallies"), and turning two tallies
 * into rates over the time between them. The sampler, /stats and /metrics all read through
 * here, so the figures agree everywhere.
 *
 * What counts as what:
 * - Balancer totals come from TrafficStats: responses sent to clients by status class, plus
 *   requests the client abandoned. The balancer's own error answers (503 no backend, 502/504
 *   after failed tries, 413) are counted as "proxy" errors and taken out of the 4xx/5xx
 *   classes, so 4xx + 5xx + proxy never counts one response twice.
 * - In TCP mode the totals are connections (TcpStats): accepted ones, and as "proxy" errors the
 *   ones closed because no backend was available or reachable; latency is the backends' connect
 *   time, merged.
 * - Per backend, a "request" is one try sent to it (a retry counts on the backend it went to),
 *   or one connection in TCP mode. 4xx/5xx are the statuses it answered; "proxy" errors are
 *   tries that got no answer at all (refused, reset, timed out).
 */
import type { Backend } from "../pool/backend.ts";
import { Histogram } from "../stats/histogram.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import { statusFor, type ProxyAnswerCode } from "../errors.ts";
import type { TcpStats } from "../tcp/stats.ts";

export type Mode = "http" | "tcp";

/** Cumulative figures at one instant. `latency` is the live histogram or a clone of it. */
export interface Tally {
  /** Requests (totals), tries or connections (a backend). */
  units: number;
  c4: number;
  c5: number;
  proxy: number;
  latency: Histogram;
}

/** The balancer's own answers that count as proxy errors. A client that left is not an error. */
const OWN_ANSWERS: readonly ProxyAnswerCode[] = ["SY_NO_BACKEND", "SY_UPSTREAM_FAILED", "SY_LOCAL_RESOURCES", "SY_UPSTREAM_TIMEOUT", "SY_QUEUE_TIMEOUT", "SY_BODY_TOO_LARGE", "SY_CLIENT_TIMEOUT"];

/** Responses sent to clients by status class (index 1..5), summed over methods. */
export function responsesByClass(traffic: TrafficStats): number[] {
  const out = [0, 0, 0, 0, 0, 0];
  for (const counts of Object.values(traffic.byMethod)) {
    for (let k = 1; k <= 5; k++) out[k]! += counts[k] ?? 0;
  }
  return out;
}

/** The balancer's totals: HTTP from TrafficStats; TCP from TcpStats when the admin app has them. */
export function totalTally(traffic: TrafficStats, mode: Mode = "http", tcp?: TcpStats, backends: readonly Backend[] = []): Tally {
  if (mode === "tcp") {
    const latency = new Histogram();
    for (const b of backends) latency.merge(b.stats.latency);
    if (tcp) return { units: tcp.accepted, c4: 0, c5: 0, proxy: tcp.rejected + tcp.unreachable, latency };
    let units = 0;
    let proxy = 0;
    for (const b of backends) {
      units += b.acquired;
      proxy += b.stats.proxyErrors;
    }
    return { units, c4: 0, c5: 0, proxy, latency };
  }
  const cls = responsesByClass(traffic);
  const own = [0, 0, 0, 0, 0, 0];
  let proxy = 0;
  for (const code of OWN_ANSWERS) {
    const n = traffic.proxyErrors[code];
    own[Math.floor(statusFor(code) / 100)]! += n;
    proxy += n;
  }
  let answered = 0;
  for (let k = 1; k <= 5; k++) answered += cls[k]!;
  return {
    units: answered + traffic.proxyErrors.SY_CLIENT_ABORTED,
    c4: Math.max(0, cls[4]! - own[4]!),
    c5: Math.max(0, cls[5]! - own[5]!),
    proxy,
    latency: traffic.latency,
  };
}

export function backendTally(b: Backend, mode: Mode): Tally {
  const s = b.stats;
  return {
    units: mode === "tcp" ? b.acquired : s.requests,
    c4: s.byClass[4] ?? 0,
    c5: s.byClass[5] ?? 0,
    proxy: s.proxyErrors,
    latency: s.latency,
  };
}

/** A tally whose histogram is a copy, safe to keep while the live one goes on counting. */
export function frozen(t: Tally): Tally {
  return { ...t, latency: t.latency.clone() };
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

export interface ErrorRates {
  "4xx": number;
  "5xx": number;
  proxy: number;
}

/** Figures over a window between two tallies. */
export interface WindowFigures {
  seconds: number;
  /** Units per second. */
  rate: number;
  /** Units counted in the window. */
  units: number;
  /** Errors counted in the window, by kind. */
  errors: ErrorRates;
  /** Share of the window's units (0..1); null when there were none. */
  errorRate: ErrorRates | null;
  /** Milliseconds; null when nothing was timed in the window. */
  latencyMs: Percentiles | null;
}

export function percentiles(h: Histogram): Percentiles | null {
  if (h.count <= 0) return null;
  return { p50: round3(h.quantile(0.5)), p95: round3(h.quantile(0.95)), p99: round3(h.quantile(0.99)), mean: round3(h.sum / h.count) };
}

/** `newer` minus `older` over `seconds`. */
export function windowBetween(older: Tally, newer: Tally, seconds: number): WindowFigures {
  const units = Math.max(0, newer.units - older.units);
  const d4 = Math.max(0, newer.c4 - older.c4);
  const d5 = Math.max(0, newer.c5 - older.c5);
  const dp = Math.max(0, newer.proxy - older.proxy);
  return {
    seconds,
    rate: seconds > 0 ? round3(units / seconds) : 0,
    units,
    errors: { "4xx": d4, "5xx": d5, proxy: dp },
    errorRate: units > 0 ? { "4xx": round4(d4 / units), "5xx": round4(d5 / units), proxy: round4(dp / units) } : null,
    latencyMs: percentiles(newer.latency.minus(older.latency)),
  };
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function round4(x: number): number {
  return Math.round(x * 10000) / 10000;
}

/** "3d 04h:05m:06s", or "04h:05m:06s" under a day: the sim's and seed 001's uptime form. */
export function formatUptime(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const pad = (n: number) => String(n).padStart(2, "0");
  const days = Math.floor(s / 86400);
  const hms = `${pad(Math.floor((s % 86400) / 3600))}h:${pad(Math.floor((s % 3600) / 60))}m:${pad(s % 60)}s`;
  return days > 0 ? `${days}d ${hms}` : hms;
}
