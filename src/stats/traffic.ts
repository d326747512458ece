/**
 * Balancer-wide traffic figures, beside each backend's own BackendStats. Fixed-size: counters
 * and one histogram, so memory stays flat however many requests pass.
 */
import { Histogram } from "./histogram.ts";
import type { ProxyErrorCode } from "../errors.ts";
import { LOCAL_CODES, type LocalCode } from "../net/network-error.ts";
import { TracingCounts } from "../tracing/counts.ts";

export function emptyLocalErrors(): Record<LocalCode, number> {
  return Object.fromEntries(LOCAL_CODES.map((c) => [c, 0])) as Record<LocalCode, number>;
}

/** Methods get their own label; anything else counts as OTHER (bounded label cardinality). */
export const METHOD_LABELS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER"] as const;
export type MethodLabel = (typeof METHOD_LABELS)[number];

export function methodLabel(method: string): MethodLabel {
  return (METHOD_LABELS as readonly string[]).includes(method) ? (method as MethodLabel) : "OTHER";
}

/** Counts by method label and status class: counts[method][class 1..5]. */
export function emptyByMethod(): Record<MethodLabel, number[]> {
  return Object.fromEntries(METHOD_LABELS.map((m) => [m, [0, 0, 0, 0, 0, 0]])) as Record<MethodLabel, number[]>;
}

export class TrafficStats {
  readonly startedAt = Date.now();
  requests = 0;
  /** Responses sent to clients by method and status class: counts[method][class 1..5]. */
  readonly byMethod = emptyByMethod();
  /** Answers the balancer made itself, by error code (connections refused per client too: no request was read). */
  readonly proxyErrors: Record<ProxyErrorCode, number> = {
    SY_NO_BACKEND: 0,
    SY_UPSTREAM_FAILED: 0,
    SY_LOCAL_RESOURCES: 0,
    SY_UPSTREAM_TIMEOUT: 0,
    SY_QUEUE_TIMEOUT: 0,
    SY_UPSTREAM_TRUNCATED: 0,
    SY_BODY_TOO_LARGE: 0,
    SY_CLIENT_TIMEOUT: 0,
    SY_CLIENT_ABORTED: 0,
    SY_NO_ROUTE: 0,
    SY_BAD_PATH: 0,
    SY_FORBIDDEN: 0,
    SY_AUTH_REQUIRED: 0,
    SY_RATE_LIMITED: 0,
    SY_AUTH_UNAVAILABLE: 0,
    SY_TOO_MANY_CLIENT_CONNECTIONS: 0,
    SY_PROXY_PROTOCOL_REFUSED: 0,
  };
  /**
   * Tries that failed for want of the proxy's own resources, by code (net/network-error.ts):
   * errors of the proxy, never counted against a backend. A retry may still have answered.
   */
  readonly localErrors: Record<LocalCode, number> = emptyLocalErrors();
  retries = 0;
  /** The span exporter's figures (tracing/exporter.ts): only the listeners' totals count them, never a route's. */
  readonly tracing = new TracingCounts();
  /** Requests that waited in line for an upstream slot (fetch engine: limits.upstreamConcurrency, uploadConcurrency). */
  queued = 0;
  /**
   * Access-log lines dropped: the queue of lines waiting for stdout or the file was full
   * (log.maxBuffer), or a write failed (src/log/access-sink.ts). The process's own total, on
   * the balancer's TrafficStats (each listener's has none).
   */
  accessLogDropped = 0;
  /** Time from request arrival to the response head being ready, ms. */
  readonly latency = new Histogram();

  record(method: string, status: number, latencyMs: number): void {
    this.requests++;
    this.byMethod[methodLabel(method)]![Math.floor(status / 100)]! += 1;
    this.latency.record(latencyMs);
  }

  countAccessLogDrop(lines: number): void {
    this.accessLogDropped += lines;
  }
}
