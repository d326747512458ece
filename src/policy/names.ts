/** The names of the selection policies; the registry in policy.ts maps each to its factory. */
export const POLICY_NAMES = [
  "least-connections",
  "round-robin",
  "weighted-round-robin",
  "random",
  "power-of-two",
  "consistent-hash",
  "peak-ewma",
] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];
