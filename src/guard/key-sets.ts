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
 * jose's cooldown runs from a *successful* fetch only: while the URL fails (the issuer down,
 * refusing, timing out), every token would start a fetch of its own. So each set is wrapped:
 * for `cooldownMs` after a failed fetch, its keys are unavailable at once (the guard answers
 * 503) without asking the issuer again. A token's own fault (an unknown kid, a bad signature)
 * is no failed fetch.
 *
 * A set is kept for as long as the process runs, one per URL ever configured: a handful.
 */
import { createRemoteJWKSet, type JWTVerifyGetKey } from "jose";

export interface KeySetOptions {
  /** Fetch timeout. */
  readonly timeoutMs: number;
  /** Least time between refetches for an unknown kid. */
  readonly cooldownMs: number;
  /** Keys older than this are fetched again before use. */
  readonly maxAgeMs: number;
}

export const KEY_SET_DEFAULTS: KeySetOptions = { timeoutMs: 5000, cooldownMs: 30_000, maxAgeMs: 600_000 };

/** Faults of the token, not of the fetch: they start no cooldown. */
function tokenFault(code: string | undefined): boolean {
  return code !== undefined && (code === "ERR_JWKS_NO_MATCHING_KEY" || code === "ERR_JWKS_MULTIPLE_MATCHING_KEYS" || code === "ERR_JOSE_ALG_NOT_ALLOWED" || code === "ERR_JOSE_NOT_SUPPORTED" || code.startsWith("ERR_JWS") || code.startsWith("ERR_JWT"));
}

/** Thrown while a key set cools down after a failed fetch: no code, so the guard answers 503. */
class KeySetCoolingDown extends Error {}

export class KeySets {
  private readonly sets = new Map<string, JWTVerifyGetKey>();

  /** The key set at `url`, made on first ask; the same one for the same URL and options. */
  get(url: string, o: KeySetOptions = KEY_SET_DEFAULTS): JWTVerifyGetKey {
    const key = `${o.timeoutMs} ${o.cooldownMs} ${o.maxAgeMs} ${url}`;
    let set = this.sets.get(key);
    if (set === undefined) {
      const remote = createRemoteJWKSet(new URL(url), { timeoutDuration: o.timeoutMs, cooldownDuration: o.cooldownMs, cacheMaxAge: o.maxAgeMs });
      let failedAt = Number.NEGATIVE_INFINITY;
      set = async (header, token) => {
        if (performance.now() - failedAt < o.cooldownMs) throw new KeySetCoolingDown(`the key set at ${url} failed less than ${o.cooldownMs}ms ago`);
        try {
          return await remote(header, token);
        } catch (e) {
          if (!tokenFault((e as { code?: string }).code)) failedAt = performance.now();
          throw e;
        }
      };
      this.sets.set(key, set);
    }
    return set;
  }

  get size(): number {
    return this.sets.size;
  }
}
