/**
 * Recent successful credential checks, so that a client sending the same credentials on every
 * request costs one password hash (milliseconds of CPU for bcrypt or argon2) per `ttlMs`, not one
 * per request.
 *
 * Why it is safe:
 * - Keyed by the SHA-256 of the whole credential (the Authorization value), never the value:
 *   no password is kept in memory, and a hit needs the exact bytes that were verified (a
 *   different password matching a key is a SHA-256 second preimage).
 * - Only successes are kept: a failure is checked again every time (and costs the client a
 *   hash each time, which is what a per-client failure limit is for).
 * - Short-lived (`ttlMs`) and bounded (`max` entries, the oldest dropped first), so a flood of
 *   distinct valid credentials cannot grow it, and a password changed in the users file stops
 *   working within a reload: the cache belongs to the guard, which a reload rebuilds empty.
 */
export class VerdictCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
  ) {}

  get(key: string, now: number): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V, now: number): void {
    this.entries.delete(key);
    // Maps iterate in insertion order: the first key is the oldest.
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, until: now + this.ttlMs });
  }

  get size(): number {
    return this.entries.size;
  }
}
