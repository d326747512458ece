/**
 * What the rate limits keep across reloads (owned by GuardState, so by the balancer or a
 * worker, which stops it): the routes' local budgets by route name, and the connection to the
 * shared store when the config names one (`rateLimit.store`).
 */
import { errorAnswer } from "../errors.ts";
import type { GuardContext } from "./build.ts";
import type { Guard, GuardRequest, HeadGuard, Refusal } from "./guard.ts";
import { burstOf, rateOf, type RateLimitSettings, type RouteRateLimit } from "./rate-limit-config.ts";
import { LocalRateLimits, rateAnswer, rateKey, rateLimited, type RateAnswer, type RateKey } from "./rate-limit.ts";
import { RedisStore, UNAVAILABLE } from "./rate-limit-redis.ts";

/** 503 while the store cannot decide and failOpen is false. */
const STORE_UNAVAILABLE: Refusal = {
  code: "SY_AUTH_UNAVAILABLE",
  answer: errorAnswer("SY_AUTH_UNAVAILABLE", "the rate-limit store cannot be reached", { retryAfter: 1 }),
};

/** The limit as a late guard: one round trip to the shared store before the first try. */
export class SharedRateLimit implements Guard {
  constructor(
    private readonly store: RedisStore,
    /** prefix, route, rate and burst: a changed limit starts afresh, as the local one does. */
    private readonly keyPrefix: string,
    private readonly key: RateKey,
    private readonly intervalMs: string,
    private readonly limitMs: string,
    private readonly answer: RateAnswer,
    private readonly failOpen: boolean,
  ) {}

  check(req: GuardRequest): Refusal | undefined | Promise<Refusal | undefined> {
    const r = this.store.take(this.keyPrefix + this.key(req), this.intervalMs, this.limitMs);
    return typeof r === "number" ? this.decide(r) : r.then((x) => this.decide(x));
  }

  private decide(r: number): Refusal | undefined {
    if (r === 0) return undefined;
    if (r === UNAVAILABLE) return this.failOpen ? undefined : STORE_UNAVAILABLE;
    return rateLimited(this.answer, r);
  }
}

export class RateLimitState {
  readonly local = new LocalRateLimits();
  private shared: RedisStore | undefined;
  /**
   * Stores a config being built no longer names, still in use by the config in force until the
   * new one is (committed): a reload that changes or removes the store must not cut the old
   * config's requests off from theirs, and a reload that fails keeps them.
   */
  private retired: RedisStore[] = [];

  /** The route's limit as a guard: local budgets decide in the router; a shared store's in the loop. */
  add(route: string, c: RouteRateLimit, ctx: GuardContext, head: HeadGuard[], late: Guard[]): void {
    const settings = ctx.config.rateLimit;
    const store = this.storeFor(settings, ctx);
    if (store === undefined || settings?.store === undefined) {
      head.push(this.local.guard(route, c, ctx.config));
      return;
    }
    const rate = rateOf(c);
    const interval = rate.periodMs / rate.count;
    const prefix = `${settings.store.prefix}${route}:${c.rate}:${burstOf(c)}:${c.key.join(",")}:`;
    late.push(new SharedRateLimit(store, prefix, rateKey(c.key), String(interval), String(interval * burstOf(c)), rateAnswer(route, rate), settings.failOpen));
  }

  /** The store the config names, connected once and kept while the config names the same one. */
  private storeFor(settings: RateLimitSettings | undefined, ctx: GuardContext): RedisStore | undefined {
    const want = settings?.store;
    const have = this.shared;
    if (have !== undefined && (want === undefined || have.url !== want.redis || have.timeoutMs !== want.timeout)) {
      this.retired.push(have);
      this.shared = undefined;
    }
    if (want !== undefined && this.shared === undefined) this.shared = new RedisStore(want.redis, want.timeout, ctx.logger);
    return this.shared;
  }

  /** The shared store, while the config names one (for tests and figures). */
  get store(): RedisStore | undefined {
    return this.shared;
  }

  /** The config built last is in force: the stores it replaced are stopped. */
  committed(): void {
    for (const s of this.retired.splice(0)) if (s !== this.shared) s.stop();
  }

  async stop(): Promise<void> {
    this.committed();
    this.shared?.stop();
    this.shared = undefined;
  }
}
