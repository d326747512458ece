import { describe, expect, test } from "bun:test";
import { PeakEwma } from "../../src/stats/latency-ewma.ts";

describe("PeakEwma", () => {
  test("no sample: unmeasured, estimate 0", () => {
    const e = new PeakEwma(1000);
    expect(e.measured).toBe(false);
    expect(e.estimate(5)).toBe(0);
  });

  test("a sample above the average replaces it at once (a backend answering less often than the window)", () => {
    const e = new PeakEwma(1000, 100);
    e.observe(2, 100);
    e.observe(2, 300);
    e.observe(40, 500);
    expect(e.estimate(500)).toBe(40);
  });

  test("answers within one window are averaged before the peak rule: one late answer among many quick ones is no peak", () => {
    const e = new PeakEwma(1000, 100);
    e.observe(2, 1);
    for (let t = 2; t < 100; t++) e.observe(t === 50 ? 40 : 2, t);
    // The window is still open: nothing changed yet.
    expect(e.estimate(100)).toBeCloseTo(2, 0);
    e.observe(2, 101);
    expect(e.estimate(101)).toBeLessThan(3);
  });

  test("a busy backend that turns slow is caught within one window", () => {
    const e = new PeakEwma(1000, 100);
    for (let t = 1; t <= 300; t++) e.observe(2, t);
    for (let t = 301; t <= 420; t++) e.observe(40, t);
    expect(e.estimate(420)).toBeGreaterThan(39);
  });

  test("samples below it pull it down by time elapsed, not by their number", () => {
    const many = new PeakEwma(1000);
    const few = new PeakEwma(1000);
    many.observe(40, 1);
    few.observe(40, 1);
    for (let t = 2; t <= 1001; t++) many.observe(2, t);
    few.observe(2, 1001);
    // One τ later both are about 2 + 38/e, however many samples came in between.
    expect(many.estimate(1001)).toBeCloseTo(2 + 38 / Math.E, 0);
    expect(few.estimate(1001)).toBeCloseTo(2 + 38 / Math.E, 0);
  });

  test("read between samples, it decays towards 0, so an avoided backend looks cheaper as time passes", () => {
    const e = new PeakEwma(1000);
    e.observe(100, 1);
    expect(e.estimate(1)).toBe(100);
    expect(e.estimate(1001)).toBeCloseTo(100 / Math.E, 5);
    expect(e.estimate(5001)).toBeLessThan(1);
    expect(e.measured).toBe(true);
  });
});
