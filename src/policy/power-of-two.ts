import type { Backend } from "../pool/backend.ts";
import { load } from "./load.ts";
import type { SelectionPolicy } from "../pool/selection.ts";

/**
 * Power of two random choices (Mitzenmacher): draw two distinct backends at random and take the
 * less loaded. Nearly as good as least-connections without scanning every backend, and without
 * the herd behaviour of always choosing the global minimum.
 */
export class PowerOfTwo implements SelectionPolicy {
  readonly name = "power-of-two";

  pick(candidates: readonly Backend[]): Backend {
    const n = candidates.length;
    if (n === 1) return candidates[0]!;
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const la = load(a);
    const lb = load(b);
    if (la !== lb) return la < lb ? a : b;
    return Math.random() < 0.5 ? a : b;
  }
}
