/**
 * A latency histogram with fixed, log-spaced buckets: constant memory whatever the request count,
 * cheap to record into (a binary search over 61 bounds), and directly exportable as a
 * Prometheus histogram. Percentiles are interpolated inside a bucket, so they are estimates
 * with a relative error bounded by the bucket ratio (ten buckets per decade: at most ~28%).
 */

/** Upper bounds in milliseconds: 10 per decade from 0.1 ms to 100 s, then +Inf. */
export const LATENCY_BOUNDS_MS: readonly number[] = (() => {
  const bounds: number[] = [];
  for (let exp = -1; exp < 5; exp++) {
    for (const m of [1, 1.25, 1.6, 2, 2.5, 3.2, 4, 5, 6.4, 8]) bounds.push(Number((m * 10 ** exp).toPrecision(3)));
  }
  bounds.push(100_000);
  return bounds;
})();

export class Histogram {
  /** counts[i] counts values <= bounds[i] and > bounds[i-1]; the last slot is +Inf. */
  readonly counts: Float64Array;
  count = 0;
  sum = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BOUNDS_MS) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  record(value: number): void {
    let lo = 0;
    let hi = this.bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (value <= this.bounds[mid]!) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo]!++;
    this.count++;
    this.sum += value;
  }

  /** The q-quantile (0..1), interpolated linearly within its bucket; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const c = this.counts[i]!;
      if (c > 0 && seen + c >= rank) {
        const lower = i === 0 ? 0 : this.bounds[i - 1]!;
        const upper = i < this.bounds.length ? this.bounds[i]! : lower;
        return lower + (upper - lower) * ((rank - seen) / c);
      }
      seen += c;
    }
    return this.bounds[this.bounds.length - 1]!;
  }

  /** Add another histogram's counts (same bounds) into this one. */
  merge(other: Histogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sum += other.sum;
  }

  /** counts minus an earlier copy's: the distribution over a window. */
  minus(earlier: Histogram): Histogram {
    const h = new Histogram(this.bounds);
    for (let i = 0; i < h.counts.length; i++) h.counts[i] = this.counts[i]! - earlier.counts[i]!;
    h.count = this.count - earlier.count;
    h.sum = this.sum - earlier.sum;
    return h;
  }

  clone(): Histogram {
    const h = new Histogram(this.bounds);
    h.counts.set(this.counts);
    h.count = this.count;
    h.sum = this.sum;
    return h;
  }
}
