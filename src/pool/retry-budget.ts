/**
 * A pool's retry budget at run time: the requests and retries of the last
 * RETRY_BUDGET_WINDOW_S seconds, one slot per second in a ring (so counting costs O(1) and
 * needs no timer), and how many retries the budget refused. The decision itself is the pure
 * retryBudgetLeft (forward/retry.ts). One per pool, kept across reloads like the pool; its
 * counters change only through its own methods.
 */
import { RETRY_BUDGET_WINDOW_S, retryBudgetLeft, type RetryBudgetConfig } from "../forward/retry.ts";

export class RetryBudget {
  /** Per second of the window, at index (second % window): first tries sent, and retries. */
  private readonly requestsAt = new Float64Array(RETRY_BUDGET_WINDOW_S);
  private readonly retriesAt = new Float64Array(RETRY_BUDGET_WINDOW_S);
  /** Sums over the window. */
  private requests = 0;
  private retries = 0;
  /** The newest second counted (ms / 1000, floored); older slots are emptied as time passes. */
  private second = -Infinity;
  /** Retries refused because the budget was spent: the request got its last failure instead. */
  private exhaustedCount = 0;
  /** Multi-process mode: the workers' refusals as they last reported (the owner forwards nothing). */
  private remoteExhausted = 0;

  /** Retries refused, all time, over every process. */
  get exhausted(): number {
    return this.exhaustedCount + this.remoteExhausted;
  }

  /** Requests and retries counted over the window, as of `nowMs` (this process's). */
  window(nowMs: number): { requests: number; retries: number } {
    this.advance(nowMs);
    return { requests: this.requests, retries: this.retries };
  }

  /** Retries the budget would allow now (Infinity without one). */
  left(config: RetryBudgetConfig, nowMs: number): number {
    this.advance(nowMs);
    return Math.max(0, retryBudgetLeft(config, this.requests, this.retries));
  }

  /** A request's first try is sent: it earns the pool percent/100 of a retry. */
  request(nowMs: number): void {
    this.advance(nowMs);
    this.requestsAt[this.second % RETRY_BUDGET_WINDOW_S]! += 1;
    this.requests++;
  }

  /**
   * A request wants a retry: true, and the retry is counted, when the budget allows one; false,
   * counted as an exhaustion, when it is spent.
   */
  admit(config: RetryBudgetConfig, nowMs: number): boolean {
    this.advance(nowMs);
    if (retryBudgetLeft(config, this.requests, this.retries) < 1) {
      this.exhaustedCount++;
      return false;
    }
    this.retriesAt[this.second % RETRY_BUDGET_WINDOW_S]! += 1;
    this.retries++;
    return true;
  }

  /** Multi-process mode: the workers' refusals, summed by the owner. */
  setRemote(exhausted: number): void {
    this.remoteExhausted = exhausted;
  }

  /** Move the window to `nowMs`: the seconds that fell out of it are forgotten. */
  private advance(nowMs: number): void {
    const now = Math.floor(nowMs / 1000);
    if (now <= this.second) return;
    if (now - this.second >= RETRY_BUDGET_WINDOW_S) {
      this.requestsAt.fill(0);
      this.retriesAt.fill(0);
      this.requests = 0;
      this.retries = 0;
    } else {
      for (let s = this.second + 1; s <= now; s++) {
        const i = s % RETRY_BUDGET_WINDOW_S;
        this.requests -= this.requestsAt[i]!;
        this.retries -= this.retriesAt[i]!;
        this.requestsAt[i] = 0;
        this.retriesAt[i] = 0;
      }
    }
    this.second = now;
  }
}
