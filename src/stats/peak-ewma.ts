/**
 * A peak-sensitive exponentially weighted moving average of response time, as Finagle's
 * PeakEwma and Linkerd's (tower's) peak_ewma keep per endpoint:
 *
 * - a sample above the average replaces it at once (the "peak"): a backend that turns slow is
 *   avoided after its first slow answer, not after many;
 * - a sample below it is blended in with weight 1 - e^(-Δt/τ), Δt being the time since the
 *   previous sample: how fast the average comes down depends on time, not on request rate;
 * - read between samples, the average decays towards 0 with the same τ, so a backend that was
 *   slow, and is therefore no longer chosen, looks cheaper as time passes and is tried again:
 *   without that, a backend that recovered would never get the traffic that shows it.
 *
 * τ is 10 s by default, Finagle's and Linkerd's default decay time.
 */
export const DEFAULT_DECAY_MS = 10_000;

export class PeakEwma {
  /** The average in ms as of `stamp`; meaningless while `stamp` is 0 (no sample yet). */
  private value = 0;
  /** performance.now() of the last sample; 0 before the first. */
  private stamp = 0;

  /** τ; a reload may change it (Backend.configure). */
  constructor(public decayMs = DEFAULT_DECAY_MS) {}

  /** True once a sample has been recorded. */
  get measured(): boolean {
    return this.stamp !== 0;
  }

  observe(rttMs: number, now = performance.now()): void {
    const rtt = Math.max(0, rttMs);
    if (this.stamp === 0 || rtt > this.value) {
      this.value = rtt;
    } else {
      const w = Math.exp(-Math.max(0, now - this.stamp) / this.decayMs);
      this.value = this.value * w + rtt * (1 - w);
    }
    // Never 0, so that a sample at performance.now() === 0 still counts as measured.
    this.stamp = now || Number.MIN_VALUE;
  }

  /** The average as of `now` (decayed since the last sample); 0 before any sample. */
  estimate(now = performance.now()): number {
    if (this.stamp === 0) return 0;
    return this.value * Math.exp(-Math.max(0, now - this.stamp) / this.decayMs);
  }
}
