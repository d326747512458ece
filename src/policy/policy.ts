/**
 * The selection-policy interface and the registry of policies by name.
 * A new policy is a new file plus one line in POLICIES; the proxy never changes for it.
 */
import type { Backend } from "../pool/backend.ts";
import type { PolicyName } from "./names.ts";
import { LeastConnections } from "./least-connections.ts";
import { RoundRobin } from "./round-robin.ts";
import { WeightedRoundRobin } from "./weighted-round-robin.ts";
import { RandomPolicy } from "./random.ts";
import { PowerOfTwo } from "./power-of-two.ts";

export interface SelectionPolicy {
  readonly name: PolicyName;
  /**
   * Choose one of `candidates`, all of which are available and none excluded; the array is
   * non-empty and only valid during the call (the pool reuses it).
   */
  pick(candidates: readonly Backend[]): Backend;
}

export const POLICIES = {
  "least-connections": () => new LeastConnections(),
  "round-robin": () => new RoundRobin(),
  "weighted-round-robin": () => new WeightedRoundRobin(),
  random: () => new RandomPolicy(),
  "power-of-two": () => new PowerOfTwo(),
} satisfies Record<PolicyName, () => SelectionPolicy>;

export function createPolicy(name: PolicyName): SelectionPolicy {
  return POLICIES[name]();
}
