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
import { ConsistentHash } from "./consistent-hash.ts";
import { PeakEwmaPolicy } from "./peak-ewma.ts";

export interface SelectionPolicy {
  readonly name: PolicyName;
  /**
   * Choose one of `candidates`, all of which are available and none excluded; the array is
   * non-empty and only valid during the call (the pool reuses it). `key` is the request's
   * affinity key (see hash-key.ts), undefined when the request has none; only policies that
   * hash use it.
   */
  pick(candidates: readonly Backend[], key?: string): Backend;
  /**
   * Told the pool's whole membership, available or not, whenever a backend is added or
   * removed (and once at the start). A policy that precomputes something per backend set (the
   * hash ring) does it here, never per request.
   */
  membersChanged?(members: readonly Backend[]): void;
}

export const POLICIES = {
  "least-connections": () => new LeastConnections(),
  "round-robin": () => new RoundRobin(),
  "weighted-round-robin": () => new WeightedRoundRobin(),
  random: () => new RandomPolicy(),
  "power-of-two": () => new PowerOfTwo(),
  "consistent-hash": () => new ConsistentHash(),
  "peak-ewma": () => new PeakEwmaPolicy(),
} satisfies Record<PolicyName, () => SelectionPolicy>;

export function createPolicy(name: PolicyName): SelectionPolicy {
  return POLICIES[name]();
}
