/**
 * The one interface every selection policy implements (Caddy's Selector, Hono's Router): the
 * pool decides which backends are candidates (availability, tiers, panic mode) and a policy
 * only chooses among them. It lives with the pool, which calls it; the policies (policy/) and
 * their registry (policy/policy.ts) import it from here, so the pool never imports a policy.
 */
import type { Backend } from "./backend.ts";
import type { PolicyName } from "../config/policy-names.ts";

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
