/** W3C traceparent parsing and the ratio sampler (src/tracing/context.ts, sampler.ts). */
import { expect, test } from "bun:test";
import { newSpanId, newTraceId, sampledFlag, validTraceparent } from "../../src/tracing/context.ts";
import { ratioThreshold, sampledAt } from "../../src/tracing/sampler.ts";

test("traceparent: version 00, lowercase hex, ids not all zeros, exactly 55 characters", () => {
  const ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  expect(validTraceparent(ok)).toBe(true);
  expect(sampledFlag(ok)).toBe(true);
  expect(sampledFlag(ok.replace(/01$/, "00"))).toBe(false);
  expect(sampledFlag(ok.replace(/01$/, "03"))).toBe(true);
  for (const bad of [null, "", ok + "-", ok.replace("00-", "01-"), ok.replace("00-", "ff-"), ok.toUpperCase(), ok.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0".repeat(32)), ok.replace("00f067aa0ba902b7", "0".repeat(16)), ok.replace("-01", "-0g"), ok.replace(/-/g, "_")]) {
    expect(validTraceparent(bad)).toBe(false);
  }
});

test("ids are lowercase hex of the right length, and make valid traceparents", () => {
  for (let i = 0; i < 1000; i++) expect(validTraceparent(`00-${newTraceId()}-${newSpanId()}-01`)).toBe(true);
});

test("the sampler decides from the trace id alone, and a lower ratio's traces are a subset of a higher one's", () => {
  const ids = Array.from({ length: 20_000 }, newTraceId);
  const at = (r: number) => new Set(ids.filter((id) => sampledAt(id, ratioThreshold(r))));
  const low = at(0.1);
  const high = at(0.5);
  for (const id of low) expect(high.has(id)).toBe(true);
  // p = 0.1, n = 20,000: mean 2,000, sd 42; ±5 sd.
  expect(Math.abs(low.size - 2000)).toBeLessThan(212);
  expect(at(0).size).toBe(0);
  expect(at(1).size).toBe(ids.length);
});
