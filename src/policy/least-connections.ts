import type { Backend } from "../pool/backend.ts";
import { load } from "./load.ts";
import type { SelectionPolicy } from "../pool/selection.ts";

/**
 * The backend with the fewest in-flight requests (connections in TCP mode) per unit of weight.
 *
 * Ties are common (at low load every count is 0), and "first wins" would send all sequential
 * traffic to one backend. The scan starts at a rotating offset, so among equally loaded
 * backends the choice goes round: equal shares without randomness.
 */
export class LeastConnections implements SelectionPolicy {
  readonly name = "least-connections";
  private offset = 0;

  pick(candidates: readonly Backend[]): Backend {
    const n = candidates.length;
    const start = this.offset++ % n;
    if (this.offset >= 0x3fffffff) this.offset = 0;
    let best = candidates[start]!;
    let bestLoad = load(best);
    for (let i = 1; i < n; i++) {
      const b = candidates[(start + i) % n]!;
      const l = load(b);
      if (l < bestLoad) [best, bestLoad] = [b, l];
    }
    return best;
  }
}
