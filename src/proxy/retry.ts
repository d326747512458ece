/**
 * Whether a failed try may be tried again: a pure function, tested as a table
 * (in the manner of Caddy's tryAgain).
 */

/** How one try failed. */
export type TryFailure =
  /** The connection was never made (refused, no such host): nothing was sent. */
  | { kind: "connect" }
  /** The connection broke after the request may have been sent. */
  | { kind: "reset" }
  /** perTryTimeout ran out before the response head arrived. */
  | { kind: "timeout" }
  /** The backend answered with a status listed in retry.onStatus. */
  | { kind: "status"; status: number };

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
  // Nothing reached the backend: safe to send anywhere else, whatever the method.
  if (ctx.failure.kind === "connect") return true;
  // The backend may have acted on it: only if doing so twice is harmless (RFC 9110 §9.2.2).
  return isIdempotent(ctx.method) || ctx.retryNonIdempotent;
}

/** retry.budget, as the config gives it (false: no budget). */
export type RetryBudgetConfig = false | { readonly percent: number; readonly minRetries: number };

/**
 * How many retries may be in flight at once while `active` requests are in flight to the pool
 * (Envoy's retry_budget: budget_percent of the active requests, never below
 * min_retry_concurrency). Retries count among the active requests, so at the limit they are at
 * most `percent` of what the backends receive: a pool that fails everything gets at most
 * 1/(1 - percent/100) tries per client request, 1.25 at 20%. Infinity when there is no budget.
 */
export function retryBudgetLimit(budget: RetryBudgetConfig, active: number): number {
  if (budget === false) return Infinity;
  return Math.max(budget.minRetries, Math.floor((budget.percent * active) / 100));
}
