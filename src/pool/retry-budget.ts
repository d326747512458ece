/**
 * A pool's retry budget at run time (its limit is the pure retryBudgetLimit, proxy/retry.ts):
 * the retries in flight now, and how many the budget refused. One per pool, kept across
 * reloads like the pool itself; the counters change only through admit() and RetrySlot.release(),
 * in pairs, and (multi-process mode) setRemote() with the workers' own counts.
 */
import { retryBudgetLimit, type RetryBudgetConfig } from "../proxy/retry.ts";
import { BackendError } from "./backend.ts";

export class RetryBudget {
  /** Retries admitted whose try has not ended. Changed only by admit() and RetrySlot.release(). */
  private inFlightCount = 0;
  /** Retries refused because the budget was spent: the request got its last failure instead. */
  private exhaustedCount = 0;
  /** Multi-process mode: the workers' counts, as they last reported (the owner forwards nothing). */
  private remoteInFlight = 0;
  private remoteExhausted = 0;

  /** Retries in flight now, over every process. */
  get inFlight(): number {
    return this.inFlightCount + this.remoteInFlight;
  }

  /** Retries the budget refused, all time, over every process. */
  get exhausted(): number {
    return this.exhaustedCount + this.remoteExhausted;
  }

  /**
   * A request wants a retry while `active` requests (itself included) are in flight to the
   * pool: a slot to release when that retry's try ends, or undefined, counted as an
   * exhaustion, when the retries already in flight fill the budget.
   */
  admit(config: RetryBudgetConfig, active: number): RetrySlot | undefined {
    if (this.inFlightCount >= retryBudgetLimit(config, active)) {
      this.exhaustedCount++;
      return undefined;
    }
    this.inFlightCount++;
    return new RetrySlot(this);
  }

  /** @internal Only RetrySlot calls this. */
  _release(): void {
    if (this.inFlightCount <= 0) throw new BackendError("SY_COUNTER_UNDERFLOW", "the pool's retries in flight would go below zero");
    this.inFlightCount--;
  }

  /** Multi-process mode: the workers' retries in flight and exhaustions, summed by the owner. */
  setRemote(inFlight: number, exhausted: number): void {
    this.remoteInFlight = inFlight;
    this.remoteExhausted = exhausted;
  }
}

/** One admitted retry. release() is idempotent, so a second call cannot corrupt the count. */
export class RetrySlot {
  private released = false;
  constructor(private readonly budget: RetryBudget) {}
  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget._release();
  }
}
