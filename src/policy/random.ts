import type { Backend } from "../pool/backend.ts";
import type { SelectionPolicy } from "../pool/selection.ts";

/** A random backend, each with probability proportional to its weight. */
export class RandomPolicy implements SelectionPolicy {
  readonly name = "random";

  pick(candidates: readonly Backend[]): Backend {
    let total = 0;
    for (const b of candidates) total += b.weight;
    let r = Math.random() * total;
    for (const b of candidates) {
      r -= b.weight;
      if (r < 0) return b;
    }
    return candidates[candidates.length - 1]!;
  }
}
