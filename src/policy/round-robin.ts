import type { Backend } from "../pool/backend.ts";
import type { SelectionPolicy } from "../pool/selection.ts";

/** Each available backend in turn, ignoring weights and load. */
export class RoundRobin implements SelectionPolicy {
  readonly name = "round-robin";
  private next = 0;

  pick(candidates: readonly Backend[]): Backend {
    const b = candidates[this.next % candidates.length]!;
    this.next = (this.next + 1) % 0x3fffffff;
    return b;
  }
}
