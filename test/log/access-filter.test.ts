/**
 * log.only: which requests are logged, decided from status, duration and error code.
 */
import { describe, expect, test } from "bun:test";
import { parseOnly } from "../../src/log/access-filter.ts";
import { validateConfig } from "../../src/config/load.ts";

describe("log.only", () => {
  test("errors: status 500 or above, or any SY_ code; nothing else", () => {
    const f = parseOnly("errors")!;
    expect(f(200, 1, undefined)).toBe(false);
    expect(f(404, 1, undefined)).toBe(false);
    expect(f(499, 1, "SY_CLIENT_ABORTED")).toBe(true);
    expect(f(429, 1, "SY_RATE_LIMITED")).toBe(true);
    expect(f(500, 1, undefined)).toBe(true);
    expect(f(503, 1, "SY_NO_BACKEND")).toBe(true);
    expect(f(200, 1, "SY_UPSTREAM_TRUNCATED")).toBe(true);
  });

  test("slower:DURATION: at least that long", () => {
    const f = parseOnly("slower:500ms")!;
    expect(f(200, 499.9, undefined)).toBe(false);
    expect(f(200, 500, undefined)).toBe(true);
    expect(parseOnly("slower:2s")!(200, 1999, undefined)).toBe(false);
    expect(parseOnly("slower:2s")!(200, 2000, undefined)).toBe(true);
  });

  test("sample:RATIO: each request with that probability (within 4 standard deviations over 100000)", () => {
    const f = parseOnly("sample:0.1")!;
    const n = 100_000;
    let kept = 0;
    for (let i = 0; i < n; i++) if (f(200, 1, undefined)) kept++;
    const sd = Math.sqrt(n * 0.1 * 0.9);
    expect(Math.abs(kept - n * 0.1)).toBeLessThan(4 * sd);
    expect(parseOnly("sample:1")!(200, 1, undefined)).toBe(true);
  });

  test.each(["", "error", "slower:", "slower:fast", "sample:0", "sample:1.5", "sample:-0.1", "sample:x", "sometimes"])("%p is refused, naming the field and what was expected", (only) => {
    expect(parseOnly(only)).toBeUndefined();
    expect(() => validateConfig({ backends: [{ url: "http://127.0.0.1:9" }], log: { only } })).toThrow(/log\.only.*expected "errors", "slower:DURATION"/s);
  });
});

describe("the log options", () => {
  const base = { backends: [{ url: "http://127.0.0.1:9" }] };
  test("fields are only for text and json, each one a known name", () => {
    expect(() => validateConfig({ ...base, log: { format: "combined", fields: ["status"] } })).toThrow(/fields only with format "text" or "json"/);
    expect(() => validateConfig({ ...base, log: { fields: ["status", "colour"] } })).toThrow(/log\.fields.*expected a field name: client_ip, method/s);
    expect(validateConfig({ ...base, log: { format: "json", fields: ["status", "upstream_time"], only: "slower:1s", file: "/tmp/x.log" } }).log).toEqual({
      access: true, format: "json", fields: ["status", "upstream_time"], only: "slower:1s", file: "/tmp/x.log",
    });
  });
  test("maxBuffer is a size of at least 4KB", () => {
    expect(validateConfig({ ...base, log: { maxBuffer: "64KB" } }).log.maxBuffer).toBe(65536);
    expect(() => validateConfig({ ...base, log: { maxBuffer: 100 } })).toThrow(/log\.maxBuffer.*at least 4KB/s);
  });
});
