/**
 * A peak-sensitive exponentially weighted moving average of response time, as Finagle's
 * PeakEwma and Linkerd's (tower's) peak_ewma keep per endpoint:
 *
 * - a sample above the average replaces it at once (the "peak"): a backend that turns slow is
 *   avoided after its first slow answer, not after many;
 * - a sample below it is blended in with weight 1 - e^(-Δt/τ), Δt being the time since the
 *   previous update: how fast the average comes down depends on time, not on request rate;
 * - read between updates, the average decays towards 0 with the same τ, so a backend that was
 *   slow, and is therefore no longer chosen, looks cheaper as time passes and is tried again:
 *   without that, a backend that recovered would never get the traffic that shows it.
 *
 * One difference, measured: samples are taken in windows. The average is updated at most once
 * per WINDOW_MS, with the mean of the samples since the last update. A backend answering less
 * often than that (the case Finagle and Linkerd were tuned for) has every sample taken alone,
 * exactly as they do. A busy one answers thousands of times a second, and in a JavaScript
 * proxy each of those times includes the proxy's own event-loop delay: a GC pause or a burst
 * of work makes dozens of answers from a quick backend look slow at once. Taken one by one,
 * those peaks held a 2 ms backend's average at the top of its noise (17-30 ms with a 40 ms
 * backend beside it, which then looked only 2-3 times slower and kept 1.5-2.5% of the traffic,
 * enough to set the p99). Averaged over 100 ms first, the average stays near what the backend
 * really answers in, and a backend that really turns slow is caught within one window (its
 * in-flight count, the other factor of the cost, rises at once in the meantime).
 *
 * τ is 1 s by default where Finagle and Linkerd use 10 s, measured too: here every backend's
 * times include the proxy's own stalls (a 70 ms pause lifts every backend's average at once),
 * and a 10 s memory of such a stall flattened the difference between a quick and a slow
 * backend for seconds after it (in the model of the skewed bench, 70 ms stalls every 2 s sent
 * twice the traffic to the slow backend with τ 10 s as with 1 s, and set the p99). A shorter
 * memory also retries a recovered backend sooner; at low load the probes it costs stay rare
 * (a 40 ms backend beside 2 ms ones got 0.02-0.07% of the requests).
 */
export const DEFAULT_DECAY_MS = 1000;
export const WINDOW_MS = 100;

export class PeakEwma {
  /** The average in ms as of `stamp`; meaningless while `stamp` is 0 (no update yet). */
  private value = 0;
  /** performance.now() of the last update; 0 before the first. */
  private stamp = 0;
  /** Samples since the last update. */
  private sum = 0;
  private count = 0;

  constructor(
    /** τ; a reload may change it (Backend.configure). */
    public decayMs = DEFAULT_DECAY_MS,
    readonly windowMs = WINDOW_MS,
  ) {}

  /** True once a sample has been taken in. */
  get measured(): boolean {
    return this.stamp !== 0;
  }

  observe(rttMs: number, now = performance.now()): void {
    this.sum += Math.max(0, rttMs);
    this.count++;
    // The first sample, and any sample at least a window after the last update, updates at once.
    if (this.stamp !== 0 && now - this.stamp < this.windowMs) return;
    const rtt = this.sum / this.count;
    this.sum = 0;
    this.count = 0;
    if (this.stamp === 0 || rtt > this.value) {
      this.value = rtt;
    } else {
      const w = Math.exp(-Math.max(0, now - this.stamp) / this.decayMs);
      this.value = this.value * w + rtt * (1 - w);
    }
    // Never 0, so that an update at performance.now() === 0 still counts as measured.
    this.stamp = now || Number.MIN_VALUE;
  }

  /** The average as of `now` (decayed since the last update); 0 before any sample. */
  estimate(now = performance.now()): number {
    if (this.stamp === 0) return 0;
    return this.value * Math.exp(-Math.max(0, now - this.stamp) / this.decayMs);
  }
}
