import { describe, expect, test } from "bun:test";
import { normalizePath } from "../../src/route/normalize.ts";

describe("normalizePath (RFC 3986 §6.2.2)", () => {
  const same = ["/", "/a", "/a/b/c", "/a/", "/a//b", "//", "/a.b/c..d/.e/..f", "/.well-known/x", "/a/b.", "/%C3%A9", "/a%20b", "/~user", "/a/.../b"];
  for (const path of same) {
    test(`${path} is already normal: the same string comes back`, () => {
      expect(normalizePath(path)).toBe(path);
    });
  }

  const table: [string, string][] = [
    ["/%61%62c", "/abc"],
    ["/%7Euser", "/~user"],
    ["/%2D%2E%5F%7E", "/-._~"],
    ["/%c3%a9", "/%C3%A9"],
    ["/a%2bb", "/a%2Bb"],
    ["/a%20b", "/a%20b"],
    ["/a/./b", "/a/b"],
    ["/a/../b", "/b"],
    ["/a/b/..", "/a/"],
    ["/a/b/.", "/a/b/"],
    ["/a/.", "/a/"],
    ["/.", "/"],
    ["/a/..", "/"],
    ["/a/b/../../c", "/c"],
    ["/a/%2e/b", "/a/b"],
    ["/a/%2E%2E/b", "/b"],
    ["/a/.%2e/b", "/b"],
    ["/a//../b", "/a/b"],
    ["/a/b/./../c/", "/a/c/"],
    ["/a%2a", "/a%2A"],
    ["/%7e%C3%a9/%41", "/~%C3%A9/A"],
    ["/x/%2e%2E/y%20z/./", "/y%20z/"],
  ];
  for (const [input, want] of table) {
    test(`${input} → ${want}`, () => {
      expect(normalizePath(input)).toBe(want);
    });
  }

  const refused: [string, RegExp][] = [
    ["/a%2Fb", /%2F/],
    ["/a%2fb", /%2F/],
    ["/a%5Cb", /backslash/],
    ["/a\\b", /backslash/],
    ["/a%00", /NUL/],
    ["/a%", /two hex digits/],
    ["/a%4", /two hex digits/],
    ["/a%g0", /two hex digits/],
    ["/..", /above the root/],
    ["/../a", /above the root/],
    ["/a/../..", /above the root/],
    ["/%2e%2e/a", /above the root/],
    ["a/b", /starting with "\/"/],
    ["", /starting with "\/"/],
  ];
  for (const [input, why] of refused) {
    test(`${JSON.stringify(input)} is refused`, () => {
      const r = normalizePath(input);
      expect(typeof r).toBe("object");
      expect((r as { refused: string }).refused).toMatch(why);
    });
  }

  test("normalizing is idempotent", () => {
    for (const [input] of table) {
      const once = normalizePath(input) as string;
      expect(normalizePath(once)).toBe(once);
    }
  });
});
