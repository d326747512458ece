import { expect, test } from "bun:test";
import { hashKeyExtractor } from "../../src/policy/hash-key.ts";

const headers = new Headers({ "X-User": "alice", cookie: "theme=dark; session=s-42", "x-empty": "" });

test.each([
  ["header:X-User", "alice"],
  ["header:x-user", "alice"],
  ["header:X-Missing", undefined],
  ["header:X-Empty", undefined],
  ["cookie:session", "s-42"],
  ["cookie:absent", undefined],
  ["ip", "192.0.2.7"],
  ["path", "/cart/items"],
] as const)("%s reads %p", (spec, expected) => {
  expect(hashKeyExtractor(spec)(headers, "/cart/items?page=2", "192.0.2.7")).toBe(expected);
});

test("path without a query is the whole target", () => {
  expect(hashKeyExtractor("path")(headers, "/a/b", "")).toBe("/a/b");
});

test.each(["header:", "cookie:", "header:bad name", "query:x", "ip:1", ""])("%p is refused with what was expected", (spec) => {
  expect(() => hashKeyExtractor(spec)).toThrow(/expected "header:NAME", "cookie:NAME", "ip" or "path"/);
});
