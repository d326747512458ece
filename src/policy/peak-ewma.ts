import type { Backend } from "../pool/backend.ts";
import type { SelectionPolicy } from "../pool/selection.ts";

/**
 * What choosing a backend with no response time yet costs when it already has requests in
 * flight (Finagle's Penalty): large, so that an unmeasured backend takes one request at a time
 * until its first answer tells what it is worth, and is otherwise compared by in-flight count.
 */
const PENALTY = 1e9;

/**
 * Latency-aware selection as Finagle's and Linkerd's peak EWMA balancers do it: each backend's
 * cost is its peak-sensitive moving average of response time (BackendStats.ewma, fed by every
 * response head) times (in-flight + 1), divided by its weight; the cheapest is chosen.
 *
 * A full scan rather than power-of-two choices: P2C exists to avoid scanning many backends and
 * to avoid a herd on stale load figures. Here the in-flight counts are this process's own and
 * change the moment a backend is chosen, so the minimum cannot be stale; with the handful of
 * backends a balancer like this fronts, a scan is a few multiplications; and it is
 * deterministic, so its choices can be tested exactly. In the model of the skewed bench
 * (test/policy/skewed-model.test.ts) P2C over the same cost did no better and no worse.
 *
 * Ties (all unmeasured and idle at the start) are broken by a rotating start, as in
 * least-connections, so they share rather than all going to the first.
 */
export class PeakEwmaPolicy implements SelectionPolicy {
  readonly name = "peak-ewma";
  private offset = 0;

  /** `clock`: the time base of BackendStats.ewma (performance.now); tests pass their own. */
  constructor(private readonly clock: () => number = () => performance.now()) {}

  pick(candidates: readonly Backend[]): Backend {
    const n = candidates.length;
    if (n === 1) return candidates[0]!;
    const now = this.clock();
    const start = this.offset++ % n;
    if (this.offset >= 0x3fffffff) this.offset = 0;
    let best = candidates[start]!;
    let bestCost = cost(best, now);
    for (let i = 1; i < n; i++) {
      const b = candidates[(start + i) % n]!;
      const c = cost(b, now);
      if (c < bestCost) {
        best = b;
        bestCost = c;
      }
    }
    return best;
  }
}

/** The expected wait for one more request on `b`, relative to its weight. */
export function cost(b: Backend, now: number): number {
  const ewma = b.stats.ewma;
  const pending = b.inFlight;
  // Unmeasured backends compare among themselves by in-flight ÷ weight (least-connections),
  // which is also what the policy does where nothing is ever measured (TCP mode).
  if (!ewma.measured) return pending === 0 ? 0 : PENALTY + pending / b.weight;
  return (ewma.estimate(now) * (pending + 1)) / b.weight;
}
