import { expect, test } from "bun:test";
import { shouldRetry, type RetryContext, type TryFailure } from "../../src/proxy/retry.ts";

const base: Omit<RetryContext, "failure" | "method"> = { tries: 1, maxTries: 3, replayableBody: true, retryNonIdempotent: false, timeLeft: 1000 };
const connect: TryFailure = { kind: "connect" };
const reset: TryFailure = { kind: "reset" };
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
  [s503, "GET", { tries: 2 }, true],
];

test.each(table)("%o %s %o → %p", (failure, method, overrides, expected) => {
  expect(shouldRetry({ ...base, failure, method, ...overrides })).toBe(expected);
});
