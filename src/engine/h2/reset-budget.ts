/**
 * The rapid-reset bound (CVE-2023-44487): how many streams a client may reset before they were
 * answered, per connection. Opening a stream and resetting it at once (RST_STREAM, RFC 9113
 * §6.4) costs the client two small frames and never counts against SETTINGS_MAX_CONCURRENT_STREAMS
 * (§5.1.2: a reset stream is closed), while each one may have started a try to a backend. As Go's
 * and nginx's fixes do, streams reset before their answer is done are counted; past the budget
 * the session ends with GOAWAY ENHANCE_YOUR_CALM (§5.4.1, §6.8).
 *
 * A token bucket: `perSecond` resets a second on average, bursts of up to `perSecond` (a
 * browser leaving a page cancels its streams at once). Costs two numbers a connection and no timer.
 */
export class ResetBudget {
  private tokens: number;
  private at = performance.now();

  constructor(private readonly perSecond: number) {
    this.tokens = perSecond;
  }

  /** One premature reset; false once the client is over its budget. */
  take(now = performance.now()): boolean {
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.at) * this.perSecond) / 1000);
    this.at = now;
    this.tokens -= 1;
    return this.tokens >= 0;
  }
}
