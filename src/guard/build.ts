/**
 * A route's guards, built once per config from its options, in a fixed order: who may ask
 * (address lists) before how often (rate limits) before who they are (authentication), so that
 * a refused address costs no rate-limit budget and no password check.
 */
import type { Config } from "../config/schema.ts";
import type { RouteConfig } from "../route/schema.ts";
import type { Logger } from "../log/logger.ts";
import { RateLimitState } from "./rate-limit-state.ts";
import { NO_GUARDS, type Guard, type Guards, type HeadGuard } from "./guard.ts";

/**
 * What lives across reloads for the guards of one process: state kept by route name (rate-limit
 * budgets), connections (a shared store), caches (key sets). Owned by the balancer (or a
 * worker), which stops it.
 */
export class GuardState {
  /** Rate-limit budgets by route name, and the shared store's connection (src/guard/rate-limit-state.ts). */
  readonly rateLimits = new RateLimitState();

  async stop(): Promise<void> {
    await this.rateLimits.stop();
  }
}

export interface GuardContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly state: GuardState;
}

export function buildGuards(route: RouteConfig, ctx: GuardContext): Guards {
  const head: HeadGuard[] = [];
  const late: Guard[] = [];
  if (route.rateLimit !== undefined) ctx.state.rateLimits.add(route.name, route.rateLimit, ctx, head, late);
  return head.length === 0 && late.length === 0 ? NO_GUARDS : { head, late };
}
