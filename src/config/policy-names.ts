/**
 * The names of the selection policies, as the `strategy` option takes them: config (and every
 * layer above it) may name a policy without importing the policies. The registry in
 * policy/policy.ts maps each name to its factory.
 */
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
