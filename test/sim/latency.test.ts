import { describe, expect, test } from "bun:test";
import { latencyFrom, MAX_LATENCY_MS, parseLatency, pickLatency } from "../../sim/latency.ts";

describe("parseLatency", () => {
  test.each([
    ["50", { min: 50, max: 50 }],
    ["0", { min: 0, max: 0 }],
    ["10-100", { min: 10, max: 100 }],
    [" 10 - 100 ", { min: 10, max: 100 }],
    ["7-7", { min: 7, max: 7 }],
    [25, { min: 25, max: 25 }],
    [0, { min: 0, max: 0 }],
    [String(MAX_LATENCY_MS), { min: MAX_LATENCY_MS, max: MAX_LATENCY_MS }],
  ] as const)("%p → %j", (input, expected) => {
    expect(parseLatency(input)).toEqual(expected);
  });

  test.each([
    ["", /invalid latency "": expected/],
    ["abc", /invalid latency "abc": expected milliseconds like "50" or a range like "10-100"/],
    ["-5", /invalid latency "-5": latency cannot be negative/],
    ["10-", /invalid latency "10-"/],
    ["-", /invalid latency "-"/],
    ["1.5", /invalid latency "1.5"/],
    ["100-10", /minimum 100 is greater than maximum 10/],
    [String(MAX_LATENCY_MS + 1), /more than the maximum/],
    [-1, /invalid latency -1: -1 is not a whole, non-negative number/],
    [1.5, /not a whole/],
    [Number.NaN, /invalid latency NaN/],
    [Number.POSITIVE_INFINITY, /invalid latency Infinity/],
  ] as const)("rejects %p", (input, message) => {
    expect(() => parseLatency(input)).toThrow(message);
  });
});

describe("latencyFrom", () => {
  test("accepts a string, a number or {min, max}", () => {
    expect(latencyFrom("10-20")).toEqual({ min: 10, max: 20 });
    expect(latencyFrom(5)).toEqual({ min: 5, max: 5 });
    expect(latencyFrom({ min: 1, max: 2 })).toEqual({ min: 1, max: 2 });
  });

  test.each([[null], [true], [{}], [{ min: 1 }], [{ min: "1", max: 2 }], [[1, 2]]])("rejects %j", (input) => {
    expect(() => latencyFrom(input)).toThrow(/invalid latency/);
  });

  test("checks an object's range too", () => {
    expect(() => latencyFrom({ min: 5, max: 1 })).toThrow(/minimum 5 is greater than maximum 1/);
    expect(() => latencyFrom({ min: -1, max: 1 })).toThrow(/not a whole, non-negative/);
  });
});

test("pickLatency gives whole numbers in [min, max], both ends included", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const ms = pickLatency({ min: 3, max: 5 });
    expect(Number.isInteger(ms) && ms >= 3 && ms <= 5).toBe(true);
    seen.add(ms);
  }
  expect([...seen].sort()).toEqual([3, 4, 5]);
  expect(pickLatency({ min: 9, max: 9 })).toBe(9);
});
