import { expect, test } from "bun:test";
import { cookieValue } from "../../src/http/cookie.ts";

test.each([
  ["sid=abc", "sid", "abc"],
  ["a=1; sid=abc; b=2", "sid", "abc"],
  ["a=1;sid=abc", "sid", "abc"],
  ['sid="quoted"', "sid", "quoted"],
  ["sid=", "sid", ""],
  ["xsid=1; sidx=2", "sid", undefined],
  ["a=1; b=2", "sid", undefined],
  ["sid", "sid", undefined],
  ["a=sid=1", "sid", undefined],
  ["sid=first; sid=second", "sid", "first"],
  ["  sid=spaced  ; a=1", "sid", "spaced"],
] as const)("cookieValue(%p, %p) = %p", (header, name, expected) => {
  expect(cookieValue(header, name)).toBe(expected);
});

test("no Cookie header, no value", () => {
  expect(cookieValue(null, "sid")).toBeUndefined();
});
