/**
 * Priority tiers: which backends may take new traffic at all, before any policy chooses.
 *
 * Every backend has a priority (0 unless its config or its SRV record gives one). RFC 2782
 * (the Priority field): "A client MUST attempt to contact the target host with the
 * lowest-numbered priority it can reach; target hosts with the same priority SHOULD be tried
 * in an order defined by the weight field." So the active tier is the lowest priority number
 * among the backends that are available now (Backend.available(): healthy, enabled, not
 * ejected, not full); backends of higher numbers are standbys and get nothing while it has one.
 * When the last available backend of the active tier goes, the next tier takes over at once;
 * when one of a better tier is available again (its health check passed), traffic goes back.
 * Weights then share traffic within the tier, as every policy already does.
 *
 * This is decided here and only here (activeTier): the pool's pick() runs it per request out of
 * panic mode, so every policy sees one tier, and what /stats, the dashboard and /metrics call
 * standby is read from the same rule (the pool's activePriority, isStandby).
 *
 * A retry walks on: a backend already tried for this request is not reachable for it, so when
 * every available backend of a tier has been tried, the retry goes to the next tier (the
 * RFC's "it can reach") before a backend is tried twice.
 *
 * Panic mode, which ignores health, is decided by the pool before this rule and picks a tier of
 * its own: see LocalPool's class comment (pool.ts) for how the two combine.
 */
import type { Backend } from "./backend.ts";

/**
 * The priority of the tier that takes new traffic now out of panic mode: the lowest among
 * available backends. Undefined when none is available.
 */
export function activePriority(backends: readonly Backend[], now: number): number | undefined {
  return activeTier(backends, now, undefined, undefined);
}

/**
 * The rule itself, in one pass (the pool's pick runs it per request): the active priority, and
 * into `out` (emptied first) the available backends not in `exclude` of that priority, in the
 * pool's order. Each backend's availability is asked once, and not at all for those of a tier
 * worse than one already found.
 */
export function activeTier(backends: readonly Backend[], now: number, exclude: ReadonlySet<Backend> | undefined, out: Backend[] | undefined): number | undefined {
  let best = Infinity;
  if (out !== undefined) out.length = 0;
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i]!;
    const p = b.priority;
    if (p > best || (exclude !== undefined && exclude.has(b)) || !b.available(now)) continue;
    if (p < best) {
      best = p;
      if (out !== undefined) out.length = 0;
    }
    if (out !== undefined) out.push(b);
  }
  return best === Infinity ? undefined : best;
}

/** A standby: in a tier worse than the active one, so it gets no new traffic while that has a backend. */
export function isStandby(b: Backend, active: number | undefined): boolean {
  return active !== undefined && b.priority > active;
}
