import type { Backend } from "../pool/backend.ts";
import type { SelectionPolicy } from "../pool/selection.ts";

/**
 * Smooth weighted round-robin, as nginx does it (ngx_http_upstream_get_peer): every pick adds
 * each candidate's weight to its running score, takes the highest score and subtracts the total
 * from it. Weights 5,1,1 give a,a,b,a,c,a,a: the heavy backend's turns are spread out instead of
 * coming in a burst of five.
 */
export class WeightedRoundRobin implements SelectionPolicy {
  readonly name = "weighted-round-robin";
  private readonly score = new WeakMap<Backend, number>();

  pick(candidates: readonly Backend[]): Backend {
    let total = 0;
    let best: Backend | undefined;
    let bestScore = -Infinity;
    for (const b of candidates) {
      const s = (this.score.get(b) ?? 0) + b.weight;
      this.score.set(b, s);
      total += b.weight;
      if (s > bestScore) [best, bestScore] = [b, s];
    }
    this.score.set(best!, bestScore - total);
    return best!;
  }
}
