/**
 * A route's rate limit (config `routes[].rateLimit`): GCRA, the generic cell rate algorithm
 * (ITU-T I.371; the "virtual scheduling" form), per key. For each key only one number is kept:
 * its theoretical arrival time (TAT), the time by which everything it has sent so far would have
 * been let through at the steady rate. A request is let through when, after adding one interval
 * T = period / count, the TAT is at most `burst` intervals ahead of now. So over any time t a
 * key gets at most burst + t / T requests, with no timers and no refill loop.
 *
 * A key whose TAT is in the past has its whole budget back, exactly as a key never seen: it can
 * be dropped without changing any decision. That is what keeps memory bounded: keys idle for a
 * whole generation are dropped in bulk as new keys come in, and past `maxKeys` the older
 * generation goes too (LocalBuckets).
 *
 * Budgets live in RateLimitState (owned by GuardState, kept across reloads) by route name; a
 * reload that changes the route's rate, burst, key or cap starts it afresh.
 *
 * The answer (RFC 6585 §4: 429 Too Many Requests) carries Retry-After (RFC 9110 §10.2.3) and
 * the fields of draft-ietf-httpapi-ratelimit-headers-11: `RateLimit-Policy` (the quota `q` per
 * window `w` seconds) and `RateLimit` (`r` remaining, `t` seconds until there is some again).
 */
import { errorAnswer } from "../errors.ts";
import { cookieValue } from "../http/cookie.ts";
import type { GuardRequest, HeadGuard, Refusal } from "./guard.ts";
import { burstOf, rateOf, specOf, type Rate, type RouteRateLimit } from "./rate-limit-config.ts";
import { budgetFileName, SharedBuckets } from "./rate-limit-shared.ts";
import { join } from "node:path";

/** The key of a request: the parts its config names, joined. */
export type RateKey = (req: GuardRequest) => string;

export function rateKey(parts: readonly string[]): RateKey {
  const one = parts.map(keyPart);
  if (one.length === 1) return one[0]!;
  // NUL cannot appear in an address, a path or a field value (RFC 9110 §5.5), so the join is unambiguous.
  return (req) => {
    let k = one[0]!(req);
    for (let i = 1; i < one.length; i++) k += "\u0000" + one[i]!(req);
    return k;
  };
}

function keyPart(spec: string): RateKey {
  if (spec === "ip") return (req) => req.clientIp;
  // One budget per route: the limiter is the route's already.
  if (spec === "route") return () => "";
  if (spec === "path") {
    return (req) => {
      const q = req.target.indexOf("?");
      return q === -1 ? req.target : req.target.slice(0, q);
    };
  }
  const colon = spec.indexOf(":");
  const name = spec.slice(colon + 1);
  if (spec.startsWith("header:")) {
    const lower = name.toLowerCase();
    return (req) => req.headers.get(lower) ?? "";
  }
  if (spec.startsWith("cookie:")) return (req) => cookieValue(req.headers.get("cookie"), name) ?? "";
  throw new Error(`invalid rate-limit key part ${JSON.stringify(spec)}`);
}

/** A route's budgets, wherever they are kept: in this process (LocalBuckets) or shared by the workers (rate-limit-shared.ts). */
export interface Budgets {
  /** 0 if the request is let through (and counted); else the ms until one would be. `now`: performance.now(). */
  take(key: string, now: number): number;
}

/**
 * GCRA budgets per key, in this process, in two generations (as hashlru does): keys met lately
 * are in `cur`; `old` holds the generation before. A key found in `old` moves to `cur`. When
 * `cur` reaches half of `maxKeys`, or when a generation has lasted longer than a full budget
 * takes to come back, `old` is dropped whole and `cur` becomes `old`. So at most `maxKeys` keys
 * are held, a flood of new keys costs O(1) each, and the time rule drops only idle keys: a key
 * untouched for a whole generation has its TAT in the past.
 *
 * (A Map in last-use order, trimmed from its front, was measured first: with Bun 1.4's Map the
 * deleted entries at the front make each trim walk them, 15 µs per new key at 100,000 keys.)
 */
export class LocalBuckets implements Budgets {
  /** Key → TAT (ms on the monotonic clock). */
  private cur = new Map<string, number>();
  private old = new Map<string, number>();
  private rotatedAt = Number.NEGATIVE_INFINITY;
  /** The emission interval T, in ms. */
  readonly intervalMs: number;
  /** How far ahead of now a TAT may be after a let-through: burst × T. */
  private readonly limitMs: number;
  /** A generation lasting this long holds only idle keys when it is dropped. */
  private readonly idleMs: number;
  private readonly half: number;

  constructor(
    rate: Rate,
    readonly burst: number,
    readonly maxKeys: number,
  ) {
    this.intervalMs = rate.periodMs / rate.count;
    this.limitMs = burst * this.intervalMs;
    this.idleMs = this.limitMs + this.intervalMs;
    this.half = Math.max(1, Math.floor(maxKeys / 2));
  }

  /** 0 if the request is let through (and counted); else the ms until one would be. */
  take(key: string, now: number): number {
    let tat = this.cur.get(key);
    let inCur = true;
    if (tat === undefined) {
      inCur = false;
      tat = this.old.get(key);
    }
    const base = tat === undefined || tat < now ? now : tat;
    const next = base + this.intervalMs;
    const ahead = next - now;
    // The epsilon absorbs float error in a TAT summed from fractional intervals (1000/3 ms).
    if (ahead > this.limitMs + 1e-6) return ahead - this.limitMs;
    if (!inCur) {
      if (tat !== undefined) this.old.delete(key);
      if (this.cur.size >= this.half || now - this.rotatedAt >= this.idleMs) this.rotate(now);
    }
    this.cur.set(key, next);
    return 0;
  }

  /** What take() would say now, without counting anything: 0 if one more would be let through. */
  peek(key: string, now: number): number {
    const tat = this.cur.get(key) ?? this.old.get(key);
    const ahead = (tat === undefined || tat < now ? now : tat) + this.intervalMs - now;
    return ahead > this.limitMs + 1e-6 ? ahead - this.limitMs : 0;
  }

  /** `old` is dropped: lossless when the time rule calls this (its keys were last let through over idleMs ago). */
  private rotate(now: number): void {
    this.old = this.cur;
    this.cur = new Map();
    this.rotatedAt = now;
  }

  /** Keys held now (idle ones included until a generation is dropped). */
  get size(): number {
    return this.cur.size + this.old.size;
  }
}

/** The answer's fields that do not change per request, and the refusals made, by their wait in seconds. */
export interface RateAnswer {
  readonly policy: string;
  readonly name: string;
  /** A flood of refused requests reuses a few answers (the router copies their fields per request). */
  readonly refusals: Map<string, Refusal>;
}

export function rateAnswer(route: string, rate: Rate): RateAnswer {
  // A policy item is an sf-string naming the policy (route names are tokens: no escaping needed).
  return { name: route, policy: `"${route}";q=${rate.count};w=${Math.max(1, Math.round(rate.periodMs / 1000))}`, refusals: new Map() };
}

/** The refusal for a wait of `waitMs`. */
export function rateLimited(a: RateAnswer, waitMs: number): Refusal {
  const s = String(Math.max(1, Math.ceil(waitMs / 1000)));
  let r = a.refusals.get(s);
  if (r !== undefined) return r;
  r = {
    code: "SY_RATE_LIMITED",
    answer: errorAnswer("SY_RATE_LIMITED", "too many requests: try again later", {
      headers: { "retry-after": s, "ratelimit-policy": a.policy, ratelimit: `"${a.name}";r=0;t=${s}` },
    }),
  };
  // Waits of a long period (1/h) could take up to 3,600 values: keep a few.
  if (a.refusals.size >= 64) a.refusals.clear();
  a.refusals.set(s, r);
  return r;
}

/** The local limit as a head guard: decided in the router, before the body is read. */
export class LocalRateLimit implements HeadGuard {
  constructor(
    private readonly buckets: Budgets,
    private readonly key: RateKey,
    private readonly answer: RateAnswer,
  ) {}

  check(req: GuardRequest): Refusal | undefined {
    const wait = this.buckets.take(this.key(req), performance.now());
    return wait === 0 ? undefined : rateLimited(this.answer, wait);
  }
}

/**
 * The routes' local budgets, by route name, across reloads (owned by GuardState). Each entry
 * notes the last config that used it; when a new config is built, the entries the previous
 * config did not use are dropped, so a route removed for a whole reload takes its keys with it.
 *
 * In a worker (`workers`), the budgets are the owner's shared files (sharedIn), so that all the
 * workers spend one budget; in one process, they are LocalBuckets.
 */
export class LocalRateLimits {
  private readonly byRoute = new Map<string, { spec: string; buckets: Budgets; generation: number }>();
  private config: unknown;
  private generation = 0;
  /** The owner's directory of budget files (BudgetFiles), in a worker. */
  private sharedDir: string | undefined;

  /** Keep budgets in the owner's shared files from now on (a worker's start). */
  sharedIn(dir: string): void {
    this.sharedDir = dir;
    this.byRoute.clear();
  }

  bucketsFor(route: string, c: RouteRateLimit, config?: unknown): Budgets {
    if (config !== undefined && config !== this.config) {
      this.config = config;
      this.generation++;
      for (const [name, e] of this.byRoute) if (e.generation < this.generation - 1) this.byRoute.delete(name);
    }
    const spec = specOf(c);
    const held = this.byRoute.get(route);
    if (held !== undefined && held.spec === spec) {
      held.generation = this.generation;
      return held.buckets;
    }
    const buckets = this.sharedDir !== undefined ? new SharedBuckets(join(this.sharedDir, budgetFileName(route, c)), c) : new LocalBuckets(rateOf(c), burstOf(c), c.maxKeys);
    this.byRoute.set(route, { spec, buckets, generation: this.generation });
    return buckets;
  }

  guard(route: string, c: RouteRateLimit, config?: unknown): LocalRateLimit {
    return new LocalRateLimit(this.bucketsFor(route, c, config), rateKey(c.key), rateAnswer(route, rateOf(c)));
  }

  /** The routes whose budgets are held (for tests). */
  get routes(): string[] {
    return [...this.byRoute.keys()];
  }
}
