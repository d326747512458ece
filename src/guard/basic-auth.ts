/**
 * A route's `basicAuth` (RFC 7617; nginx auth_basic, Traefik BasicAuth): the client's
 * `Authorization: Basic` credentials checked against a users file of bcrypt or argon2 hashes.
 *
 * A late Guard, not a head one: a bcrypt or argon2 check costs milliseconds of CPU, which
 * `Bun.password.verifySync` would spend on the event loop, stalling every other connection;
 * `Bun.password.verify` runs it on Bun's thread pool and the request waits. Recent successes are
 * remembered (verdict-cache.ts, where why that is safe is said) so a client costs one hash per
 * TTL, not one per request.
 *
 * Timing: a name not in the file costs a hash check too (against a real hash of the file, or a
 * fixed one when the file is empty), and names are compared as SHA-256 digests with
 * timingSafeEqual against every entry, so the answer's time does not tell which names exist.
 */
import { rateLimited, type LocalBuckets, type RateAnswer } from "./rate-limit.ts";
import { createHash, timingSafeEqual } from "node:crypto";
import { errorAnswer, messageFor } from "../errors.ts";
import type { Guard, GuardRequest, Refusal } from "./guard.ts";
import type { UserEntry } from "./users-file.ts";
import { VerdictCache } from "./verdict-cache.ts";

export interface BasicAuthOptions {
  readonly users: readonly UserEntry[];
  readonly realm: string;
  /** How many recent successes are remembered, and for how long. */
  readonly cacheSize?: number;
  readonly cacheTtlMs?: number;
  /** Failed attempts per client address (basicAuth.failures): the budget, kept across reloads, and its 429. */
  readonly failures?: { buckets: LocalBuckets; answer: RateAnswer };
}

/** With `failures`: hash checks one client may have under way at once. */
const MAX_CHECKS_PER_CLIENT = 2;

/** A bcrypt hash (cost 10, the usual) of a random password nobody knows: what an unknown name is checked against when the file has no user. */
const DUMMY_HASH = "$2b$10$D2ORYI0a9JTdSABi/Zbc6eqfZDuQT51HtFW8k5nQi0vSs.zTqz7zK";

const sha256 = (s: string | Uint8Array) => createHash("sha256").update(s).digest();

/** The challenge (RFC 7617 §2, §2.1: the realm, and that credentials are read as UTF-8). */
export function basicChallenge(realm: string): Refusal {
  const answer = errorAnswer("SY_AUTH_REQUIRED", messageFor("SY_AUTH_REQUIRED"));
  return { code: "SY_AUTH_REQUIRED", answer: { ...answer, headers: { ...answer.headers, "www-authenticate": `Basic realm="${realm}", charset="UTF-8"` } } };
}

export class BasicAuthGuard implements Guard {
  private readonly names: Buffer[];
  private readonly hashes: string[];
  private readonly dummy: string;
  private readonly challenge: Refusal;
  private readonly cache: VerdictCache<true>;
  /**
   * Checks under way by credential key: a browser opening six connections at once with the same
   * credentials costs one hash, not six. Bounded by the requests in flight; each entry leaves
   * when its check ends.
   */
  private readonly pending = new Map<string, Promise<boolean>>();

  /** Hash checks under way per client address, with a failure limit (bounded by the requests in flight). */
  private readonly checking = new Map<string, number>();
  /** Failed attempts per client address (basicAuth.failures), and the 429 they lead to. */
  private readonly failures: { buckets: LocalBuckets; answer: RateAnswer } | undefined;

  constructor(o: BasicAuthOptions) {
    this.failures = o.failures;
    this.names = o.users.map((u) => sha256(u.name));
    this.hashes = o.users.map((u) => u.hash);
    // A real hash of the file: an unknown name costs what a known one does.
    this.dummy = o.users[0]?.hash ?? DUMMY_HASH;
    this.challenge = basicChallenge(o.realm);
    this.cache = new VerdictCache(o.cacheSize ?? 1024, o.cacheTtlMs ?? 60_000);
  }

  check(req: GuardRequest): Refusal | undefined | Promise<Refusal | undefined> {
    // A client out of failed attempts (failures) is refused before anything is checked.
    const f = this.failures;
    if (f !== undefined) {
      const wait = f.buckets.peek(req.clientIp, performance.now());
      if (wait > 0) return rateLimited(f.answer, wait);
    }
    const value = req.headers.get("authorization");
    // RFC 7617 §2: the scheme is case-insensitive; one space, then token68.
    if (value === null || value.length < 7 || value.slice(0, 6).toLowerCase() !== "basic ") return this.failed(req);
    const key = sha256(value).toString("base64");
    const now = performance.now();
    if (this.cache.get(key, now) !== undefined) return undefined;
    const decoded = Buffer.from(value.slice(6).trim(), "base64").toString("utf8");
    // RFC 7617 §2: user-id and password are split at the first colon.
    const colon = decoded.indexOf(":");
    if (colon < 0) return this.failed(req);
    const name = sha256(decoded.slice(0, colon));
    const password = decoded.slice(colon + 1);
    // Every entry is compared, whatever matched: no early exit that times the list.
    let found = -1;
    for (let i = 0; i < this.names.length; i++) if (timingSafeEqual(name, this.names[i]!)) found = i;
    const hash = found >= 0 ? this.hashes[found]! : this.dummy;
    let verdict = this.pending.get(key);
    if (verdict === undefined) {
      // With a failure limit, a client's guesses are checked at most MAX_CHECKS_PER_CLIENT at
      // a time: failures are counted as checks end, so without this, guesses sent together
      // would all be hashed before the first failure counted.
      if (f !== undefined) {
        const running = this.checking.get(req.clientIp) ?? 0;
        if (running >= MAX_CHECKS_PER_CLIENT) return rateLimited(f.answer, f.buckets.intervalMs);
        this.checking.set(req.clientIp, running + 1);
      }
      const done = () => {
        if (f === undefined) return;
        const n = this.checking.get(req.clientIp) ?? 1;
        if (n <= 1) this.checking.delete(req.clientIp);
        else this.checking.set(req.clientIp, n - 1);
      };
      verdict = Bun.password.verify(password, hash).then(
        (ok) => {
          done();
          this.pending.delete(key);
          if (ok && found >= 0) this.cache.set(key, true, performance.now());
          return ok && found >= 0;
        },
        // A hash Bun cannot read was refused when the file was read; this is only a safety net.
        () => {
          done();
          this.pending.delete(key);
          return false;
        },
      );
      this.pending.set(key, verdict);
    }
    return verdict.then((ok) => (ok ? undefined : this.failed(req)));
  }

  /** No credentials or wrong ones: the challenge, and one failed attempt of this client counted (failures). */
  private failed(req: GuardRequest): Refusal {
    this.failures?.buckets.take(req.clientIp, performance.now());
    return this.challenge;
  }

  /** Remembered successes (for tests and figures). */
  get cached(): number {
    return this.cache.size;
  }
}
