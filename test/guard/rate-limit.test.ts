/** The local GCRA limiter and its config: decisions on an injected clock, keys, memory, reloads. */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { RouteRateLimitSchema, parseRate, type RouteRateLimit } from "../../src/guard/rate-limit-config.ts";
import { LocalBuckets, LocalRateLimits, rateKey } from "../../src/guard/rate-limit.ts";
import type { GuardRequest } from "../../src/guard/guard.ts";
import { issuesOf } from "../route/helpers.ts";

const conf = (x: unknown): RouteRateLimit => v.parse(RouteRateLimitSchema, x);
const req = (headers: Record<string, string> = {}, clientIp = "192.0.2.1", target = "/a?q=1"): GuardRequest => {
  const h = new Map(Object.entries(headers).map(([k, val]) => [k.toLowerCase(), val]));
  return { method: "GET", target, headers: { get: (n: string) => h.get(n) ?? null } as GuardRequest["headers"], clientIp };
};

describe("config", () => {
  test("rates, defaults and the key as a list", () => {
    expect(parseRate("100/s")).toEqual({ count: 100, periodMs: 1000 });
    expect(parseRate("6000/m")).toEqual({ count: 6000, periodMs: 60_000 });
    expect(parseRate("10/h")).toEqual({ count: 10, periodMs: 3_600_000 });
    expect(conf({ rate: "100/s" })).toEqual({ rate: "100/s", key: ["ip"], maxKeys: 100_000 });
    expect(conf({ rate: "5/m", burst: 2, key: ["ip", "header:X-Key"] }).key).toEqual(["ip", "header:X-Key"]);
  });

  test("wrong values are refused naming the field, the value's fault and what was expected", () => {
    const route = (rateLimit: unknown) => issuesOf({ name: "r", pool: "p", rateLimit });
    expect(route({ rate: "100/d" })).toEqual(['rateLimit.rate: expected a rate: "N/s", "N/m" or "N/h" with N a whole number from 1 (e.g. "100/s", "6000/m")']);
    expect(route({ rate: "0/s" })[0]).toStartWith("rateLimit.rate: expected a rate");
    expect(route({ rate: 100 })[0]).toStartWith("rateLimit.rate: expected a rate");
    expect(route({ rate: "1/s", burst: 0 })).toEqual(["rateLimit.burst: expected a whole number of requests, at least 1"]);
    expect(route({ rate: "1/s", burst: 1.5 })).toEqual(["rateLimit.burst: expected a whole number of requests, at least 1"]);
    expect(route({ rate: "1/s", key: "query" })).toEqual(['rateLimit.key: expected "ip", "route", "path", "header:NAME" or "cookie:NAME"']);
    expect(route({ rate: "1/s", key: ["ip", "ip"] })).toEqual(["rateLimit.key: expected each key part once"]);
    expect(route({ rate: "1/s", maxKeys: 0 })).toEqual(["rateLimit.maxKeys: expected a whole number of keys, at least 1"]);
    expect(issuesOf({ name: "r", redirect: { to: "/x" }, rateLimit: { rate: "1/s" } })).toEqual(["rateLimit: expected rateLimit only on a route that forwards (pool or split); route \"r\" has redirect"]);
  });
});

describe("GCRA", () => {
  test("burst at once, then one per interval: allowed over t is burst + rate × t", () => {
    const b = new LocalBuckets({ count: 100, periodMs: 1000 }, 50, 1000);
    let allowed = 0;
    // 300/s offered for 10 s against 100/s with burst 50.
    for (let i = 0; i < 3000; i++) if (b.take("k", 1000 + (i * 10) / 3) === 0) allowed++;
    expect(allowed).toBeGreaterThanOrEqual(50 + 1000 - 1);
    expect(allowed).toBeLessThanOrEqual(50 + 1000 + 1);
  });

  test("a refusal says how long to wait, and after that wait one more goes through", () => {
    const b = new LocalBuckets({ count: 2, periodMs: 1000 }, 3, 10);
    for (let i = 0; i < 3; i++) expect(b.take("k", 0)).toBe(0);
    const wait = b.take("k", 0);
    expect(wait).toBe(500);
    expect(b.take("k", 499)).toBeGreaterThan(0);
    expect(b.take("k", 500)).toBe(0);
    // A refusal costs no budget.
    expect(b.take("k", 500)).toBe(500);
  });

  test("a fractional interval (1000/3 ms) lets the whole burst through", () => {
    const b = new LocalBuckets({ count: 3, periodMs: 1000 }, 7, 10);
    for (let i = 0; i < 7; i++) expect(b.take("k", 0)).toBe(0);
    expect(b.take("k", 0)).toBeGreaterThan(0);
  });

  test("memory: 200,000 distinct keys never hold more than maxKeys; idle keys are dropped as new ones come", () => {
    const b = new LocalBuckets({ count: 1, periodMs: 60_000 }, 1, 100_000);
    for (let i = 0; i < 200_000; i++) b.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, 1000);
    expect(b.size).toBeLessThanOrEqual(100_000);
    expect(b.size).toBeGreaterThanOrEqual(50_000);
    // The most recent keys are the ones kept: the last is still refused.
    expect(b.take("10.3.13.63", 1000)).toBeGreaterThan(0);
    // Long after, every key is idle: the next new keys drop them.
    for (let i = 0; i < 10_000; i++) b.take(`new-${i}`, 1_000_000);
    b.take("later", 2_000_000);
    expect(b.size).toBe(10_001);
  });

  test("an idle key dropped decides as if kept: its budget was full again", () => {
    const b = new LocalBuckets({ count: 1, periodMs: 1000 }, 1, 2);
    expect(b.take("a", 0)).toBe(0);
    expect(b.take("b", 5000)).toBe(0);
    expect(b.take("c", 10_000)).toBe(0);
    expect(b.size).toBe(2);
    expect(b.take("a", 5000)).toBe(0);
  });
});

describe("keys", () => {
  test("ip, header, cookie, path, route and their combination", () => {
    expect(rateKey(["ip"])(req({}, "10.0.0.1"))).toBe("10.0.0.1");
    expect(rateKey(["header:X-Key"])(req({ "x-key": "abc" }))).toBe("abc");
    expect(rateKey(["header:X-Key"])(req({}))).toBe("");
    expect(rateKey(["cookie:sid"])(req({ cookie: "a=1; sid=s9" }))).toBe("s9");
    expect(rateKey(["path"])(req({}, "1", "/p/q?x=1"))).toBe("/p/q");
    expect(rateKey(["route"])(req({}))).toBe("");
    expect(rateKey(["ip", "header:x-key"])(req({ "x-key": "k" }, "10.0.0.2"))).toBe("10.0.0.2\u0000k");
  });

  test("a guard keeps one budget per key", () => {
    const g = new LocalRateLimits().guard("api", conf({ rate: "1/m", burst: 2, key: "header:x-key" }));
    expect(g.check(req({ "x-key": "a" }))).toBeUndefined();
    expect(g.check(req({ "x-key": "a" }))).toBeUndefined();
    const r = g.check(req({ "x-key": "a" }))!;
    expect(r.code).toBe("SY_RATE_LIMITED");
    expect(r.answer.status).toBe(429);
    expect(r.answer.headers["retry-after"]).toBe("60");
    expect(r.answer.headers["ratelimit-policy"]).toBe('"api";q=1;w=60');
    expect(r.answer.headers["ratelimit"]).toBe('"api";r=0;t=60');
    expect(JSON.parse(r.answer.body).error).toBe("SY_RATE_LIMITED");
    expect(g.check(req({ "x-key": "b" }))).toBeUndefined();
  });
});

describe("across reloads", () => {
  test("the same route and limit keep their budgets; a changed rate, burst or key starts afresh", () => {
    const state = new LocalRateLimits();
    const c = conf({ rate: "1/m", burst: 1 });
    expect(state.guard("api", c).check(req())).toBeUndefined();
    expect(state.guard("api", conf({ rate: "1/m", burst: 1 })).check(req())?.code).toBe("SY_RATE_LIMITED");
    expect(state.guard("other", c).check(req())).toBeUndefined();
    expect(state.guard("api", conf({ rate: "1/m", burst: 2 })).check(req())).toBeUndefined();
    expect(state.guard("api", conf({ rate: "2/m", burst: 2 })).check(req())).toBeUndefined();
  });

  test("a route the configs stop using has its budgets dropped one config later", () => {
    const state = new LocalRateLimits();
    const c = conf({ rate: "1/m", burst: 1 });
    const [one, two, three] = [{}, {}, {}];
    state.guard("a", c, one);
    state.guard("b", c, one);
    expect(state.guard("a", c, two).check(req())).toBeUndefined();
    expect(state.routes.sort()).toEqual(["a", "b"]);
    // Config three: "b" was not in config two, so it goes; "a" keeps its spent budget.
    expect(state.guard("a", c, three).check(req())?.code).toBe("SY_RATE_LIMITED");
    expect(state.routes).toEqual(["a"]);
  });
});
