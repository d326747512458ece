/**
 * Node's llhttp as Bun ships it is an internal interface: what the socket engine relies on is
 * pinned here, so a Bun upgrade that changes it fails a test rather than a request.
 */
import { describe, expect, test } from "bun:test";
import { HTTPParser, createParser, type ParserHost } from "../../src/engine/socket/llhttp.ts";

/** The raw binding's callbacks, in the order they fire. */
function rawEvents(input: string): unknown[] {
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {});
  const log: unknown[] = [];
  p[HTTPParser.kOnMessageBegin] = () => log.push("begin");
  p[HTTPParser.kOnHeaders] = (f: string[], u: string) => log.push(["lines", f, u]);
  p[HTTPParser.kOnHeadersComplete] = (_a: number, _b: number, f: string[] | undefined, _m: number, u: string | undefined) => {
    log.push(["head", f ?? null, u ?? null]);
    return 0;
  };
  p[HTTPParser.kOnBody] = (b: Uint8Array) => log.push(["body", Buffer.from(b).toString()]);
  p[HTTPParser.kOnMessageComplete] = () => log.push("end");
  expect(p.execute(Buffer.from(input))).toBe(input.length);
  return log;
}

const TRAILED = "POST /a/P HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Trail: 1\r\n\r\n";
const NEXT = "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n";

describe("the binding (what createParser has to undo)", () => {
  test("a trailer section comes through kOnHeaders, with the message's target once more", () => {
    expect(rawEvents(TRAILED)).toEqual([
      "begin", ["head", ["Host", "a", "Transfer-Encoding", "chunked"], "/a/P"], ["body", "x"], ["lines", ["X-Trail", "1"], "/a/P"], "end",
    ]);
  });

  test("after a flush, the next head comes through kOnHeaders too, and kOnHeadersComplete gets neither lines nor target", () => {
    expect(rawEvents(TRAILED + NEXT).slice(5)).toEqual(["begin", ["lines", ["Host", "a"], "/a/G"], ["head", null, null], "end"]);
  });
});

describe("createParser: no state outlives its message", () => {
  function parse(input: string, pieces = 1): { heads: [string, string[]][]; bodies: string[] } {
    const heads: [string, string[]][] = [];
    const bodies: string[] = [];
    const host: ParserHost = {
      atStart: true,
      onHeadersComplete: (_a, _b, fields, _m, url) => void heads.push([url ?? "", fields ?? []]),
      onBody: (c) => void bodies.push(Buffer.from(c).toString()),
      onMessageComplete: () => {},
    };
    const p = createParser(HTTPParser.REQUEST, 16384, host);
    const buf = Buffer.from(input);
    const step = Math.ceil(buf.length / pieces);
    for (let i = 0; i < buf.length; i += step) expect(p.execute(buf.subarray(i, i + step))).toBe(Math.min(step, buf.length - i));
    expect(host.atStart).toBe(true);
    return { heads, bodies };
  }

  for (const pieces of [1, 7, TRAILED.length + NEXT.length]) {
    test(`a trailer is dropped and the next head is its own (in ${pieces} piece${pieces === 1 ? "" : "s"})`, () => {
      const { heads } = parse(TRAILED + NEXT, pieces);
      expect(heads).toEqual([["/a/P", ["Host", "a", "Transfer-Encoding", "chunked"]], ["/a/G", ["Host", "a"]]]);
    });
  }

  test("a head of more than 32 lines arrives whole, and the one after it is its own", () => {
    const lines = (p: string) => Array.from({ length: 40 }, (_, i) => `${p}${i}: ${i}\r\n`).join("");
    const { heads } = parse(`GET /one HTTP/1.1\r\nHost: a\r\n${lines("X-A")}\r\n` + `GET /two HTTP/1.1\r\nHost: a\r\n${lines("X-B")}\r\n` + NEXT);
    expect(heads.map(([u, f]) => [u, f.length / 2])).toEqual([["/one", 41], ["/two", 41], ["/a/G", 1]]);
    expect(heads[1]![1].filter((_, i) => i % 2 === 0).every((n) => n === "Host" || n.startsWith("X-B"))).toBe(true);
  });
});
