/**
 * The config of rate limits: a route's `rateLimit` (how often, per what key) and the top-level
 * `rateLimit` (where budgets are kept: this process, or a Redis shared by replicas). The
 * limiter itself is src/guard/rate-limit.ts; the shared store src/guard/rate-limit-redis.ts.
 */
import * as v from "valibot";
import { doc, positiveDuration } from "../config/option-schemas.ts";


const PERIODS = { s: 1000, m: 60_000, h: 3_600_000 } as const;
const RATE = /^([1-9][0-9]{0,8})\/(s|m|h)$/;
export const RATE_HINT = '"N/s", "N/m" or "N/h" with N a whole number from 1 (e.g. "100/s", "6000/m")';

/** A rate as configured: `count` requests per `periodMs`. */
export interface Rate {
  readonly count: number;
  readonly periodMs: number;
}

export function parseRate(text: string): Rate | undefined {
  const m = RATE.exec(text);
  if (m === null) return undefined;
  return { count: Number(m[1]), periodMs: PERIODS[m[2] as keyof typeof PERIODS] };
}

/** The parts a rate-limit key is made of. */
const KEY_PART = /^(ip|route|path|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/;
export const KEY_HINT = '"ip", "route", "path", "header:NAME" or "cookie:NAME"';
const keyPart = v.pipe(v.string(`expected ${KEY_HINT}`), v.regex(KEY_PART, `expected ${KEY_HINT}`));

export const DEFAULT_MAX_KEYS = 100_000;

export const RouteRateLimitSchema = v.pipe(
  v.strictObject({
    rate: v.pipe(
      v.string(`expected a rate: ${RATE_HINT}`),
      v.check((r) => parseRate(r) !== undefined, `expected a rate: ${RATE_HINT}`),
      v.description('The steady rate each key may send at: `"100/s"`, `"6000/m"`, `"10000/h"`.'),
      doc({ type: '`"N/s"`, `"N/m"` or `"N/h"`' }),
    ),
    burst: v.optional(
      v.pipe(
        v.number("expected a whole number of requests, at least 1"),
        v.integer("expected a whole number of requests, at least 1"),
        v.minValue(1, "expected a whole number of requests, at least 1"),
        v.maxValue(1_000_000_000, "expected at most 1000000000 requests"),
        v.description("The most requests a key may send at once, after a quiet spell; over a time t a key gets at most `burst` + rate × t. GCRA: a full budget comes back after burst / rate."),
        doc({ defaultText: "the rate's N (100 for \"100/s\")" }),
      ),
    ),
    key: v.optional(
      v.pipe(
        v.union(
          [keyPart, v.pipe(v.array(keyPart, `expected ${KEY_HINT} or a list of them`), v.minLength(1, "expected at least one key part"), v.check((l) => new Set(l).size === l.length, "expected each key part once"))],
          `expected ${KEY_HINT} or a list of them`,
        ),
        v.transform((k) => (typeof k === "string" ? [k] : k)),
        v.description('What a budget is kept per: `"ip"` (the client address), `"header:NAME"`, `"cookie:NAME"`, `"route"` (one budget for the whole route), `"path"` (without the query), or a list combining them (`["ip", "header:x-api-key"]`). A request without the header or cookie shares the budget of all such requests.'),
        doc({ type: "key part or a list of them", defaultValue: "ip" }),
      ),
      ["ip"],
    ),
    maxKeys: v.optional(
      v.pipe(
        v.number("expected a whole number of keys, at least 1"),
        v.integer("expected a whole number of keys, at least 1"),
        v.minValue(1, "expected a whole number of keys, at least 1"),
        v.description("The most keys kept in memory for this route (local store), so that a flood of distinct addresses cannot grow memory. Keys are kept in two generations: keys idle for longer than a full budget takes to come back are dropped in bulk (losing nothing), and past the cap the older generation (keys not let through in the last maxKeys / 2 new keys) is dropped, its clients starting again with a full budget. With `workers`, it sizes the table the workers share (two 8-byte slots per key)."),
        doc({ defaultValue: DEFAULT_MAX_KEYS }),
      ),
      DEFAULT_MAX_KEYS,
    ),
  }),
  v.description("Limit how often each client (or key) may send requests on this route: GCRA, refused with 429 `SY_RATE_LIMITED`, `Retry-After` and the IETF `RateLimit` and `RateLimit-Policy` fields, before the body is read. Budgets are kept in this process, or in Redis with the top-level `rateLimit.store`."),
);

export type RouteRateLimit = v.InferOutput<typeof RouteRateLimitSchema>;

const redisUrl = v.pipe(
  v.string('expected a Redis URL like "redis://127.0.0.1:6379"'),
  v.check((u) => {
    try {
      const p = new URL(u).protocol;
      return p === "redis:" || p === "rediss:";
    } catch {
      return false;
    }
  }, 'expected a Redis URL like "redis://127.0.0.1:6379" (redis: or rediss:)'),
);

export const RateLimitSettingsSchema = v.pipe(
  v.strictObject({
    store: v.optional(
      v.pipe(
        v.strictObject({
          redis: v.pipe(redisUrl, v.description("The Redis every replica uses: one atomic script per decision, over one reused connection."), doc({ type: "URL" })),
          prefix: v.optional(v.pipe(v.string("expected a key prefix string"), v.description("Put before every key written to Redis."), doc({ defaultValue: "sy:rl:" })), "sy:rl:"),
          timeout: v.optional(
            v.pipe(
              positiveDuration,
              v.description("How long a decision may wait for Redis before it counts as unreachable (then `failOpen` decides)."),
              doc({ unit: "duration", defaultValue: 250 }),
            ),
            250,
          ),
        }),
        v.description("Where budgets are kept, shared by every replica (and every worker) that names the same store. Absent: in this process's memory, or with `workers` in memory every worker shares (one budget for all of them)."),
        doc({ defaultText: "local (in memory, per process)" }),
      ),
    ),
    failOpen: v.optional(
      v.pipe(v.boolean("expected true or false"), v.description("While the store cannot be reached: `true` lets requests through (and counts them), `false` refuses them with 503 `SY_AUTH_UNAVAILABLE`.")),
      true,
    ),
  }),
  v.description("Where rate-limit budgets are kept (routes' `rateLimit` say how often)."),
);

export type RateLimitSettings = v.InferOutput<typeof RateLimitSettingsSchema>;

/** What a route's budgets are kept under: a change of any of these starts them afresh. */
export function specOf(c: RouteRateLimit): string {
  return `${c.rate} ${c.burst ?? ""} ${c.key.join(",")} ${c.maxKeys}`;
}

export function rateOf(c: RouteRateLimit): Rate {
  return parseRate(c.rate)!;
}

/** The burst: as configured, or the rate's count. */
export function burstOf(c: RouteRateLimit): number {
  return c.burst ?? rateOf(c).count;
}
