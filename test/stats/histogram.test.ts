/**
 * The latency histogram: its buckets, where a value lands, how percentiles are estimated and
 * how far off they may be, and the window arithmetic (merge, minus, clone) the stats use.
 */
import { describe, expect, test } from "bun:test";
import { Histogram, LATENCY_BOUNDS_MS } from "../../src/stats/histogram.ts";

/** A fixed pseudo-random sequence (an LCG), so a failure reproduces. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe("bounds", () => {
  test("ten per decade from 0.1 ms to 100 s, strictly increasing, each step at most x1.28", () => {
    expect(LATENCY_BOUNDS_MS.length).toBe(61);
    expect(LATENCY_BOUNDS_MS[0]).toBe(0.1);
    expect(LATENCY_BOUNDS_MS.at(-1)).toBe(100_000);
    expect(LATENCY_BOUNDS_MS.slice(0, 10)).toEqual([0.1, 0.125, 0.16, 0.2, 0.25, 0.32, 0.4, 0.5, 0.64, 0.8]);
    for (let i = 1; i < LATENCY_BOUNDS_MS.length; i++) {
      const ratio = LATENCY_BOUNDS_MS[i]! / LATENCY_BOUNDS_MS[i - 1]!;
      expect(ratio).toBeGreaterThan(1);
      expect(ratio).toBeLessThanOrEqual(1.28 + 1e-9);
    }
  });
});

describe("record", () => {
  test("a value on a bound counts in that bucket (le), just above it in the next; count and sum follow", () => {
    const h = new Histogram();
    h.record(1);
    h.record(1.0001);
    h.record(0);
    h.record(0.1);
    const i1 = LATENCY_BOUNDS_MS.indexOf(1);
    expect(h.counts[i1]).toBe(1);
    expect(h.counts[i1 + 1]).toBe(1);
    expect(h.counts[0]).toBe(2);
    expect(h.count).toBe(4);
    expect(h.sum).toBeCloseTo(2.1001, 6);
  });

  test("beyond the last bound goes to the +Inf slot", () => {
    const h = new Histogram();
    h.record(100_000);
    h.record(250_000);
    expect(h.counts[LATENCY_BOUNDS_MS.length - 1]).toBe(1);
    expect(h.counts[LATENCY_BOUNDS_MS.length]).toBe(1);
    expect(h.counts.length).toBe(LATENCY_BOUNDS_MS.length + 1);
  });

  test("custom bounds work the same", () => {
    const h = new Histogram([10, 20]);
    for (const v of [5, 10, 15, 20, 25]) h.record(v);
    expect([...h.counts]).toEqual([2, 2, 1]);
  });
});

describe("quantile", () => {
  test("0 when empty", () => {
    expect(new Histogram().quantile(0.99)).toBe(0);
  });

  test("interpolated linearly inside the bucket", () => {
    const h = new Histogram([10, 20]);
    for (let i = 0; i < 10; i++) h.record(15);
    // All ten in (10, 20]: the median is halfway through it.
    expect(h.quantile(0.5)).toBe(15);
    expect(h.quantile(1)).toBe(20);
    expect(h.quantile(0.1)).toBe(11);
  });

  test("in the +Inf slot, the last bound is the answer (no upper edge to interpolate to)", () => {
    const h = new Histogram([10, 20]);
    h.record(500);
    expect(h.quantile(0.5)).toBe(20);
  });

  test("within the bucket ratio of the exact percentile, for latencies spread over four decades", () => {
    const random = lcg(42);
    const values = Array.from({ length: 20_000 }, () => 10 ** (random() * 4 - 1)); // 0.1 ms .. 1 s, log-uniform
    const h = new Histogram();
    for (const v of values) h.record(v);
    values.sort((a, b) => a - b);
    for (const q of [0.5, 0.9, 0.95, 0.99, 0.999]) {
      const exact = values[Math.ceil(q * values.length) - 1]!;
      const estimate = h.quantile(q);
      expect(estimate / exact).toBeGreaterThan(1 / 1.28);
      expect(estimate / exact).toBeLessThan(1.28);
    }
  });
});

describe("windows", () => {
  test("minus gives the distribution since an earlier copy; clone is independent; merge adds", () => {
    const h = new Histogram();
    for (const v of [1, 2, 3]) h.record(v);
    const earlier = h.clone();
    for (const v of [50, 60]) h.record(v);
    expect(earlier.count).toBe(3);
    const window = h.minus(earlier);
    expect(window.count).toBe(2);
    expect(window.sum).toBe(110);
    // Only the new values: the window's median is in (40, 50], not among 1..3.
    expect(window.quantile(0.5)).toBe(50);
    const total = new Histogram();
    total.merge(earlier);
    total.merge(window);
    expect([...total.counts]).toEqual([...h.counts]);
    expect([total.count, total.sum]).toEqual([h.count, h.sum]);
  });
});
