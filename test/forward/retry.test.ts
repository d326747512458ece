import { describe, expect, test } from "bun:test";
import { RETRY_BUDGET_WINDOW_S, retryBudgetLeft, shouldRetry, type RetryBudgetConfig, type RetryContext, type TryFailure } from "../../src/forward/retry.ts";

const base: Omit<RetryContext, "failure" | "method"> = { tries: 1, maxTries: 3, replayableBody: true, retryNonIdempotent: false, timeLeft: 1000 };
const connect: TryFailure = { kind: "connect" };
const reset: TryFailure = { kind: "reset" };
const refused: TryFailure = { kind: "refused" };
const timeout: TryFailure = { kind: "timeout" };
const s503: TryFailure = { kind: "status", status: 503 };

// [failure, method, overrides, expected]
const table: [TryFailure, string, Partial<RetryContext>, boolean][] = [
  [connect, "GET", {}, true],
  [connect, "POST", {}, true], // nothing was sent: any method
  [connect, "PATCH", {}, true],
  [reset, "GET", {}, true],
  [reset, "PUT", {}, true], // idempotent (RFC 9110 §9.2.2)
  [reset, "DELETE", {}, true],
  [reset, "POST", {}, false],
  [reset, "PATCH", {}, false],
  [timeout, "GET", {}, true],
  [timeout, "POST", {}, false],
  [s503, "GET", {}, true],
  [s503, "HEAD", {}, true],
  [s503, "OPTIONS", {}, true],
  [s503, "POST", {}, false],
  [s503, "POST", { retryNonIdempotent: true }, true],
  [reset, "POST", { retryNonIdempotent: true }, true],
  [connect, "GET", { tries: 3 }, false], // out of tries
  [connect, "GET", { timeLeft: 0 }, false], // out of time
  [connect, "POST", { replayableBody: false }, false], // a streamed body is gone once read
  [reset, "PUT", { replayableBody: false }, false],
  [refused, "POST", {}, true], // HTTP/2 REFUSED_STREAM or past GOAWAY: not processed (RFC 9113 §8.7)
  [refused, "PATCH", {}, true],
  [refused, "POST", { replayableBody: false }, false],
  [refused, "POST", { tries: 3 }, false],
  [s503, "GET", { tries: 2 }, true],
];

test.each(table)("%o %s %o → %p", (failure, method, overrides, expected) => {
  expect(shouldRetry({ ...base, failure, method, ...overrides })).toBe(expected);
});

describe("retryBudgetLeft: retries the budget allows, from the requests and retries of its window", () => {
  const DEFAULT = { percent: 20, minRetriesPerSecond: 3 };
  // [budget, requests, retries, left]
  const table: [RetryBudgetConfig, number, number, number][] = [
    [DEFAULT, 0, 0, 30], // a quiet pool can still retry: 3 a second over the 10 s window
    [DEFAULT, 0, 29, 1],
    [DEFAULT, 0, 30, 0],
    [DEFAULT, 4, 30, 0], // 20% of 4 is 0.8: no whole retry earned yet
    [DEFAULT, 5, 30, 1],
    [DEFAULT, 2560, 0, 542],
    [DEFAULT, 2560, 542, 0],
    [DEFAULT, 1000, 500, -270], // spent beyond (a budget turned on over old retries): none left
    [{ percent: 0, minRetriesPerSecond: 0 }, 1_000_000, 0, 0], // no retries at all
    [{ percent: 100, minRetriesPerSecond: 0 }, 7, 2, 5],
    [{ percent: 12.5, minRetriesPerSecond: 0.5 }, 64, 0, 13],
    [false, 0, 1_000_000, Infinity], // no budget
  ];
  test.each(table)("%o, %d requests, %d retries → %d", (budget, requests, retries, left) => {
    expect(retryBudgetLeft(budget, requests, retries)).toBe(left);
  });

  test("the window is 10 s", () => expect(RETRY_BUDGET_WINDOW_S).toBe(10));

  test("spent to the last retry, a pool's backends get at most 1 + percent/100 tries per request, plus the floor", () => {
    for (let requests = 1; requests <= 5000; requests++) {
      let retries = 0;
      while (retryBudgetLeft(DEFAULT, requests, retries) >= 1) retries++;
      expect(retries).toBeLessThanOrEqual(0.2 * requests + 30);
    }
  });
});
