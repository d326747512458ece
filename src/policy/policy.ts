/**
 * The registry of selection policies by name (the interface is pool/selection.ts, as Hono keeps
 * its Router interface apart from the routers). A new policy is a new file plus one line in
 * POLICIES; the proxy never changes for it.
 */
import type { SelectionPolicy } from "../pool/selection.ts";
import type { PolicyName } from "../config/policy-names.ts";
import { LeastConnections } from "./least-connections.ts";
import { RoundRobin } from "./round-robin.ts";
import { WeightedRoundRobin } from "./weighted-round-robin.ts";
import { RandomPolicy } from "./random.ts";
import { PowerOfTwo } from "./power-of-two.ts";
import { ConsistentHash } from "./consistent-hash.ts";
import { PeakEwmaPolicy } from "./peak-ewma.ts";


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
