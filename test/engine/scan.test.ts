/**
 * The scanner is a fast path in front of llhttp and must never be the more lenient of the two:
 * whatever it accepts, llhttp accepts with the same reading; whatever llhttp refuses, it defers.
 * Also pins the llhttp behaviour the socket engine relies on (an internal Bun interface).
 */
import { describe, expect, test } from "bun:test";
import { scanRequest, scanResponse } from "../../src/engine/socket/scan.ts";
import { HTTPParser, METHODS, SKIP_BODY, isParseError } from "../../src/engine/socket/llhttp.ts";

interface Reading {
  ok: boolean;
  method?: string;
  url?: string;
  status?: number;
  headers: string[];
  body: string;
  keepAlive?: boolean;
  complete: boolean;
}

function llhttp(type: "request" | "response", input: string, head = false): Reading {
  const p = new HTTPParser();
  p.initialize(type === "request" ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, 64 * 1024);
  const r: Reading = { ok: true, headers: [], body: "", complete: false };
  p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, fields: string[], method: number, url: string, status: number, _t: string, _u: boolean, keepAlive: boolean) => {
    r.headers = fields;
    r.method = METHODS[method];
    r.url = url;
    r.status = status;
    r.keepAlive = keepAlive;
    return head ? SKIP_BODY : 0;
  };
  p[HTTPParser.kOnBody] = (b: Uint8Array) => void (r.body += Buffer.from(b).toString("latin1"));
  p[HTTPParser.kOnMessageComplete] = () => void (r.complete = true);
  const out = p.execute(Buffer.from(input, "latin1"));
  if (isParseError(out)) r.ok = false;
  return r;
}

/** [name, value, ...] from the scanner's [name, lower, value, start, end] lines. */
const pairs = (lines: (string | number)[]) => lines.filter((_, i) => i % 5 === 0 || i % 5 === 2);
/** Each line's span in the scanned bytes is the line as read: the name, the colon, OWS, the value. */
function expectSpans(bytes: Buffer, lines: (string | number)[]): void {
  for (let i = 0; i < lines.length; i += 5) {
    const [name, lower, value, start, end] = lines.slice(i, i + 5) as [string, string, string, number, number];
    expect(lower).toBe(name.toLowerCase());
    const line = bytes.toString("latin1", start, end);
    expect(line.startsWith(`${name}:`)).toBe(true);
    expect(line.endsWith(value)).toBe(true);
    expect(line.slice(name.length + 1, line.length - value.length).replace(/[ \t]/g, "")).toBe("");
  }
}

const REQUESTS: string[] = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /p?q=1&r=%20 HTTP/1.1\r\nHost: a\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
  "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
  "GET / HTTP/1.0\r\n\r\n",
  "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xe9\r\n\r\n",
  "DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
  // Refused by llhttp: the scanner must defer (undefined), never accept.
  "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n",
  "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
  "GET / HTTP/1.1\nHost: a\n\n",
  "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
  "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
  "GET / HTTP/1.1\r\nHost: a\r\nX\x7f: 1\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n",
  "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
  "G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
  "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
  // Deferred by design (llhttp decides): chunked, upgrades, other forms and methods.
  "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
  "PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
  "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello",
  // Known names in every spelling: each keeps its bytes and is lower-cased right.
  "GET / HTTP/1.1\r\nhost: a\r\nACCEPT: x\r\nuser-Agent: y\r\nContent-length: 0\r\nX-Request-ID: r\r\nx-rEAL-ip: 1\r\n\r\n",
];

const RESPONSES: [string, boolean][] = [
  ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false],
  ["HTTP/1.1 204 No Content\r\n\r\n", false],
  ["HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false],
  ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true],
  ["HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false],
  ["HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false],
  ["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false],
  ["HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n", false],
  // Deferred.
  ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false],
  ["HTTP/1.1 200 OK\r\n\r\nuntil close", false],
  ["HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false],
  ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false],
  ["HTTP/1.1 200 OK\r\nX: a\x01\r\nContent-Length: 0\r\n\r\n", false],
  ["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false],
  ["HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", false],
];

describe("the scanner never reads more leniently than llhttp", () => {
  test.each(REQUESTS.map((r) => [JSON.stringify(r), r]))("request %s", (_name, input) => {
    const bytes = Buffer.from(input, "latin1");
    const scanned = scanRequest(bytes, 0, 64 * 1024);
    const ref = llhttp("request", input);
    if (scanned === undefined) return;
    expect(ref.ok).toBe(true);
    expect(ref.complete).toBe(true);
    expect(scanned.end).toBe(bytes.length);
    expect(scanned.method).toBe(ref.method!);
    expect(scanned.target).toBe(ref.url!);
    expect(pairs(scanned.fields)).toEqual(ref.headers);
    expectSpans(bytes, scanned.fields);
    expect(bytes.subarray(scanned.headEnd, scanned.end).toString("latin1")).toBe(ref.body);
    expect(scanned.keepAlive).toBe(ref.keepAlive!);
  });

  test.each(RESPONSES.map(([r, head]) => [JSON.stringify(r), r, head] as const))("response %s", (_name, input, head) => {
    const bytes = Buffer.from(input, "latin1");
    const scanned = scanResponse(bytes, 0, 64 * 1024, head);
    const ref = llhttp("response", input, head);
    if (scanned === undefined) return;
    expect(ref.ok).toBe(true);
    expect(ref.complete).toBe(true);
    expect(scanned.status).toBe(ref.status!);
    expect(pairs(scanned.fields)).toEqual(ref.headers);
    expectSpans(bytes, scanned.fields);
    expect(bytes.subarray(scanned.headEnd, scanned.end).toString("latin1")).toBe(ref.body);
    expect(scanned.keepAlive).toBe(ref.keepAlive!);
  });

  test("the plain cases do take the fast path", () => {
    for (const input of REQUESTS.slice(0, 11)) expect(scanRequest(Buffer.from(input, "latin1"), 0, 65536)).toBeDefined();
    for (const [input, head] of RESPONSES.slice(0, 8)) expect(scanResponse(Buffer.from(input, "latin1"), 0, 65536, head)).toBeDefined();
  });

  test("pipelined requests are scanned one after another from an offset", () => {
    const two = Buffer.from("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    const first = scanRequest(two, 0, 65536)!;
    const second = scanRequest(two, first.end, 65536)!;
    expect([first.target, second.target, second.end]).toEqual(["/1", "/2", two.length]);
  });

  test("a head over the size limit is left to llhttp (which answers 431)", () => {
    const big = Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"x".repeat(200)}\r\n\r\n`);
    expect(scanRequest(big, 0, 100)).toBeUndefined();
  });
});

describe("llhttp as Bun 1.4.5 ships it (the behaviour the engine relies on)", () => {
  test("strict by default: Content-Length with Transfer-Encoding is an error", () => {
    expect(llhttp("request", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").ok).toBe(false);
  });
  test("execute returns an Error with an HPE_ code rather than throwing", () => {
    const p = new HTTPParser();
    p.initialize(HTTPParser.REQUEST, {}, 100);
    const r = p.execute(Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"x".repeat(200)}\r\n\r\n`));
    expect(isParseError(r)).toBe(true);
    expect((r as { code: string }).code).toBe("HPE_HEADER_OVERFLOW");
  });
  test("SKIP_BODY from the head callback ends a HEAD response at its head", () => {
    const r = llhttp("response", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
    expect([r.ok, r.complete, r.body]).toEqual([true, true, ""]);
  });
  test("chunked bodies are decoded, extensions and trailers accepted", () => {
    const r = llhttp("request", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n");
    expect([r.ok, r.complete, r.body]).toEqual([true, true, "hello"]);
  });
});

test("a known name in any spelling is lower-cased to the code's own string, and keeps its spelling", () => {
  const input = "GET / HTTP/1.1\r\nhost: a\r\nACCEPT: x\r\nuser-Agent: y\r\nContent-Length: 0\r\nAcceptX: z\r\n\r\n";
  const r = scanRequest(Buffer.from(input, "latin1"), 0, 65536)!;
  const names = r.fields.filter((_, i) => i % 5 === 0);
  const lowers = r.fields.filter((_, i) => i % 5 === 1);
  expect(names).toEqual(["host", "ACCEPT", "user-Agent", "Content-Length", "AcceptX"]);
  expect(lowers).toEqual(["host", "accept", "user-agent", "content-length", "acceptx"]);
});
