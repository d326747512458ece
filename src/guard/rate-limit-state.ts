/**
 * What the rate limits keep across reloads (owned by GuardState, so by the balancer or a
 * worker): the routes' local budgets by route name.
 */
import type { GuardContext } from "./build.ts";
import type { Guard, HeadGuard } from "./guard.ts";
import type { RouteRateLimit } from "./rate-limit-config.ts";
import { LocalRateLimits } from "./rate-limit.ts";

export class RateLimitState {
  readonly local = new LocalRateLimits();

  /** The route's limit as a guard: a head guard (local budgets, decided before the body is read). */
  add(route: string, c: RouteRateLimit, ctx: GuardContext, head: HeadGuard[], late: Guard[]): void {
    void ctx;
    void late;
    head.push(this.local.guard(route, c));
  }

  async stop(): Promise<void> {}
}
