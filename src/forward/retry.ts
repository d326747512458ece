/**
 * Whether a failed try may be tried again: a pure function, tested as a table
 * (in the manner of Caddy's tryAgain).
 */

/** How one try failed. */
export type TryFailure =
  /** The connection was never made (refused, no such host): nothing was sent. */
  | { kind: "connect" }
  /**
   * The backend refused the request without processing it (HTTP/2 REFUSED_STREAM, or a stream
   * above a GOAWAY's last stream id, RFC 9113 §8.7): nothing was acted on.
   */
  | { kind: "refused" }
  /** The connection broke after the request may have been sent. */
  | { kind: "reset" }
  /** perTryTimeout ran out before the response head arrived. */
  | { kind: "timeout" }
  /** The backend answered with a status listed in retry.onStatus. */
  | { kind: "status"; status: number }
  /** A gRPC call answered in its head with a grpc-status listed in retry.onGrpcStatus. */
  | { kind: "grpc"; status: number };

export interface RetryContext {
  failure: TryFailure;
  method: string;
  /** Tries made so far, including the failed one. */
  tries: number;
  maxTries: number;
  /** The body can be sent again: none, or fully buffered. A streamed body is gone once sent. */
  replayableBody: boolean;
  /** retry.nonIdempotent: the operator vouches that replaying unsafe methods is harmless. */
  retryNonIdempotent: boolean;
  /** Time left before retry.timeout, in ms. */
  timeLeft: number;
}

/**
 * Idempotent methods, RFC 9110 §9.2.2: repeating them has the same effect as sending them once,
 * so a request that may or may not have reached the backend can be sent again.
 */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

export function shouldRetry(ctx: RetryContext): boolean {
  if (ctx.tries >= ctx.maxTries || ctx.timeLeft <= 0) return false;
  if (!ctx.replayableBody) return false;
  // Nothing reached the backend, or it says it acted on nothing (RFC 9113 §8.7): safe to send
  // anywhere else, whatever the method.
  if (ctx.failure.kind === "connect" || ctx.failure.kind === "refused") return true;
  // gRPC has no idempotency flag (every call is a POST): naming the status in
  // retry.onGrpcStatus is the operator vouching that such calls may be sent twice.
  if (ctx.failure.kind === "grpc") return true;
  // The backend may have acted on it: only if doing so twice is harmless (RFC 9110 §9.2.2).
  return isIdempotent(ctx.method) || ctx.retryNonIdempotent;
}

/** retry.budget, as the config gives it (false: no budget). */
export type RetryBudgetConfig = false | { readonly percent: number; readonly minRetriesPerSecond: number };

/** The span the retry budget counts requests and retries over (Finagle's and Linkerd's ttl). */
export const RETRY_BUDGET_WINDOW_S = 10;

/**
 * Retries the budget still allows, given the requests and the retries of its window: percent of
 * the requests, plus minRetriesPerSecond for every second of the window (so that a quiet pool
 * can still retry), less the retries already made. Infinity when there is no budget.
 *
 * A ratio over time, as Finagle's RetryBudget and Linkerd's retry budget, rather than Envoy's
 * share of the requests in flight at one moment: a backend that dies with a fifth of the
 * requests in flight on it needs all of them retried at once (its resets arrive together), and
 * a budget of in-flight retries refuses the excess though nothing is storming (it failed 2 of
 * about 5 such GETs at 16 connections over 3 backends); credit earned by the window's requests
 * pays for that burst. A failing pool sustains no more: its backends get at most
 * 1 + percent/100 tries per client request over any window, plus the floor.
 */
export function retryBudgetLeft(budget: RetryBudgetConfig, requests: number, retries: number): number {
  if (budget === false) return Infinity;
  return Math.floor((budget.percent * requests) / 100) + budget.minRetriesPerSecond * RETRY_BUDGET_WINDOW_S - retries;
}
