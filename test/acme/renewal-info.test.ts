/**
 * ARI's pure parts (src/acme/renewal-info.ts): Retry-After read as RFC 9110 §10.2.3 says and
 * kept within bounds, and the time chosen in a window. The CertID and the polling itself are
 * tested against pebble with a renewalInfo endpoint beside it (pebble.test.ts, "ARI").
 */
import { expect, test } from "bun:test";
import { DEFAULT_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS, MIN_RETRY_AFTER_MS, pickInWindow, retryAfterMs } from "../../src/acme/renewal-info.ts";

test("Retry-After: delay-seconds or an HTTP-date, within bounds; the default without one or with one that does not parse", () => {
  const now = Date.parse("2026-12-07T00:00:00Z");
  expect(retryAfterMs("21600", now)).toBe(21_600_000);
  expect(retryAfterMs(" 60 ", now)).toBe(60_000);
  expect(retryAfterMs("Mon, 07 Dec 2026 02:00:00 GMT", now)).toBe(7_200_000);
  expect(retryAfterMs(undefined, now)).toBe(DEFAULT_RETRY_AFTER_MS);
  expect(retryAfterMs("", now)).toBe(DEFAULT_RETRY_AFTER_MS);
  expect(retryAfterMs("soon", now)).toBe(DEFAULT_RETRY_AFTER_MS);
  expect(retryAfterMs("-5", now)).toBe(DEFAULT_RETRY_AFTER_MS);
  // A tight loop and a silence of days are both refused.
  expect(retryAfterMs("0", now)).toBe(MIN_RETRY_AFTER_MS);
  expect(retryAfterMs("Sun, 06 Dec 2026 00:00:00 GMT", now)).toBe(MIN_RETRY_AFTER_MS);
  expect(retryAfterMs(String(30 * 86_400), now)).toBe(MAX_RETRY_AFTER_MS);
});

test("the time chosen is uniform in the window, its ends included", () => {
  const w = { start: 1_000, end: 2_000 };
  expect(pickInWindow(w, () => 0)).toBe(1_000);
  expect(pickInWindow(w, () => 0.5)).toBe(1_500);
  expect(pickInWindow(w, () => 0.999999)).toBeLessThan(2_000);
  for (let i = 0; i < 1000; i++) {
    const t = pickInWindow(w);
    expect(t >= 1_000 && t < 2_000).toBe(true);
  }
});
