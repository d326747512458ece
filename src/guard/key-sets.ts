/**
 * JWKS key sets by URL, kept across reloads (in GuardState): a reload rebuilds the jwt guards
 * but finds the keys it had, so a reload neither refetches every key set nor resets the bound
 * on refetches that an unknown `kid` may cause.
 *
 * jose's createRemoteJWKSet does the caching: keys are fetched on first use, refetched when
 * older than `cacheMaxAge`, and a token naming a kid the set lacks triggers a refetch only when
 * `cooldownDuration` has passed since the last successful one (one fetch in flight at a time),
 * so a flood of tokens with made-up kids costs at most one fetch per cooldown.
 *
 * A set is kept for as long as the process runs, one per URL ever configured: a handful.
 */
import { createRemoteJWKSet, type RemoteJWKSet } from "jose";

export interface KeySetOptions {
  /** Fetch timeout. */
  readonly timeoutMs: number;
  /** Least time between refetches for an unknown kid. */
  readonly cooldownMs: number;
  /** Keys older than this are fetched again before use. */
  readonly maxAgeMs: number;
}

export const KEY_SET_DEFAULTS: KeySetOptions = { timeoutMs: 5000, cooldownMs: 30_000, maxAgeMs: 600_000 };

export class KeySets {
  private readonly sets = new Map<string, RemoteJWKSet>();

  /** The key set at `url`, made on first ask; the same one for the same URL and options. */
  get(url: string, o: KeySetOptions = KEY_SET_DEFAULTS): RemoteJWKSet {
    const key = `${o.timeoutMs} ${o.cooldownMs} ${o.maxAgeMs} ${url}`;
    let set = this.sets.get(key);
    if (set === undefined) {
      set = createRemoteJWKSet(new URL(url), { timeoutDuration: o.timeoutMs, cooldownDuration: o.cooldownMs, cacheMaxAge: o.maxAgeMs });
      this.sets.set(key, set);
    }
    return set;
  }

  get size(): number {
    return this.sets.size;
  }
}
