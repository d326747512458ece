/**
 * Message boundaries on the socket engine: nothing of one message (its trailer section, its
 * target, its fields) reaches the next one parsed on the same connection, in either direction.
 * Every case runs two ways: all in one write, and dribbled a few bytes at a time, since the
 * engine's scanner takes whole plain heads and llhttp the rest, and the leak lived on the
 * second path (RFC 9112 §7.1.2: a trailer section belongs to the chunked message it ends).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/wait.ts";
import { requirePrograms } from "../helpers/system.ts";
import { countResponses, rawExchange } from "../helpers/raw.ts";
import { recordingRig } from "../helpers/balancer.ts";
import type { RecordedRequest } from "../helpers/recording-backend.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const { start, rig } = recordingRig("socket");

/** Fields the proxy adds or rewrites on the way to the backend (http/headers.ts), and framing. */
const PROXY_FIELDS = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "via", "x-request-id", "content-length", "transfer-encoding"]);

/** What the client framed: a request's method, target, its own fields (in order) and body. */
interface Framed {
  method: string;
  url: string;
  fields: [string, string][];
  body: string;
}

function own(r: RecordedRequest): Framed {
  return { method: r.method, url: r.url, fields: r.headers.filter(([k]) => !PROXY_FIELDS.has(k)), body: r.body };
}

const host: [string, string] = ["host", "a"];
/** What only a trailer section carries in these cases: none of it may reach a backend. */
const TRAILER_MARKS = ["x-trail", "x-secret", "token-of-client-one", "x-t0", "host: evil", "smuggled"];

function chunked(path: string, chunks: string[], trailer: string): string {
  let s = `POST ${path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n`;
  for (const c of chunks) s += `${c.length.toString(16)}\r\n${c}\r\n`;
  return `${s}0\r\n${trailer}\r\n`;
}

const many = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}: v${i}\r\n`).join("");
const manyFields = (prefix: string, n: number): [string, string][] => Array.from({ length: n }, (_, i) => [`${prefix}${i}`.toLowerCase(), `v${i}`]);

interface RequestCase {
  name: string;
  /** The pieces the client writes (joined for the one-write variant). */
  input: string[];
  /** Exactly what the backend must receive, in order. */
  expected: Framed[];
  config?: Record<string, unknown>;
  /** Bytes per write when dribbled (default 3). */
  dribble?: number;
}

const big = "b".repeat(40_000);
const requestCases: RequestCase[] = [
  {
    name: "a chunked request with a trailer, then a GET",
    input: [chunked("/a/P", ["hello"], "X-Trail: 1\r\n"), "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "hello" },
      { method: "GET", url: "/a/G", fields: [host], body: "" },
    ],
  },
  {
    name: "a trailer carrying a secret, then a later chunked request",
    input: [chunked("/a/P", ["x"], "X-Secret: token-of-client-one\r\n"), chunked("/a/Q", ["y"], "")],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "x" },
      { method: "POST", url: "/a/Q", fields: [host], body: "y" },
    ],
  },
  {
    name: "a trailer, then a GET whose head is split over two reads",
    input: [chunked("/a/P", ["x"], "X-Trail: 1\r\n"), "GET /a/G HTTP/1.1\r\nHo", "st: a\r\nX-Next: 2\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "x" },
      { method: "GET", url: "/a/G", fields: [host, ["x-next", "2"]], body: "" },
    ],
  },
  {
    name: "a large streamed body (past retry.bufferBody) with a trailer, then a GET",
    input: [chunked("/a/P", [big, big], "X-Trail: 1\r\n"), "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: big + big },
      { method: "GET", url: "/a/G", fields: [host], body: "" },
    ],
    config: { retry: { bufferBody: 1000 } },
    // 80 KB three bytes at a time would take half a minute: odd-sized pieces instead.
    dribble: 997,
  },
  {
    name: "a trailer of more than 32 lines, then a GET",
    input: [chunked("/a/P", ["x"], many("X-T", 40)), "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "x" },
      { method: "GET", url: "/a/G", fields: [host], body: "" },
    ],
  },
  {
    name: "a head of more than 32 lines with a trailer, then another such head",
    input: [
      `POST /a/P HTTP/1.1\r\nHost: a\r\n${many("X-A", 40)}Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Trail: 1\r\n\r\n`,
      `POST /a/Q HTTP/1.1\r\nHost: a\r\n${many("X-B", 40)}Transfer-Encoding: chunked\r\n\r\n1\r\ny\r\n0\r\n\r\n`,
    ],
    expected: [
      { method: "POST", url: "/a/P", fields: [host, ...manyFields("X-A", 40)], body: "x" },
      { method: "POST", url: "/a/Q", fields: [host, ...manyFields("X-B", 40)], body: "y" },
    ],
  },
  {
    name: "a trailer naming Host and holding a request line, then a GET",
    input: [chunked("/a/P", ["x"], "Host: evil\r\nX-Trail: GET /smuggled HTTP/1.1\r\n"), "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "x" },
      { method: "GET", url: "/a/G", fields: [host], body: "" },
    ],
  },
  {
    name: "an empty trailer section and chunk extensions, then a HEAD",
    input: [chunked("/a/P", ["x"], "").replace("1\r\nx", "1;ext=1\r\nx"), "HEAD /a/H HTTP/1.1\r\nHost: a\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "x" },
      { method: "HEAD", url: "/a/H", fields: [host], body: "" },
    ],
  },
  {
    name: "a trailer, then a Content-Length request, then a GET",
    input: [chunked("/a/P", ["x"], "X-Trail: 1\r\n"), "PUT /a/L HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n"],
    expected: [
      { method: "POST", url: "/a/P", fields: [host], body: "x" },
      { method: "PUT", url: "/a/L", fields: [host], body: "abc" },
      { method: "GET", url: "/a/G", fields: [host], body: "" },
    ],
  },
];

const WAYS = [
  ["in one write", { whole: true }],
  ["dribbled 3 bytes at a time", { dribble: 3 }],
] as const;

/** Requests also go as their pieces, 20 ms apart: each later head arrives in a read of its own. */
const REQUEST_WAYS = [...WAYS, ["in pieces 20 ms apart", { pieces: true }]] as const;

describe("requests: nothing of one message reaches the next", () => {
  for (const c of requestCases) {
    for (const [way, how] of REQUEST_WAYS) {
      test(`${c.name}, ${way}`, async () => {
        const { port, backend } = await start(c.config);
        const input = "pieces" in how ? c.input : c.input.join("");
        const res = await rawExchange(port, input, {
          ...("dribble" in how ? { dribble: c.dribble ?? how.dribble } : {}),
          until: (t) => countResponses(t) === c.expected.length,
          timeoutMs: 10_000,
        });
        expect(res.statuses).toEqual(c.expected.map(() => 200));
        expect(res.closed).toBe(false);
        expect(backend.requests.map(own)).toEqual(c.expected);
        const wire = backend.raw.join("").toLowerCase();
        for (const mark of TRAILER_MARKS) expect(wire).not.toContain(mark);
        for (const r of backend.requests) expect(r.trailers).toEqual([]);
      }, 20_000);
    }
  }
});

/** Trailer fields llhttp refuses: the request is answered 400 and nothing reaches a backend. */
const refusedTrailers: [string, string][] = [
  ["Content-Length in a trailer", "Content-Length: 5\r\n"],
  ["Transfer-Encoding in a trailer", "Transfer-Encoding: chunked\r\n"],
  ["obs-fold in a trailer", "X-Trail: a\r\n b\r\n"],
  ["a bare LF in a trailer", "X-Trail: a\n"],
];

describe("requests: a trailer llhttp refuses", () => {
  for (const [name, trailer] of refusedTrailers) {
    for (const [way, how] of WAYS) {
      test(`${name}, ${way}: 400, closed, nothing reaches a backend`, async () => {
        const { port, backend } = await start();
        const res = await rawExchange(port, chunked("/a/P", ["x"], trailer) + "GET /a/G HTTP/1.1\r\nHost: a\r\n\r\n", {
          ...("dribble" in how ? { dribble: how.dribble } : {}),
          timeoutMs: 5000,
        });
        expect(res.statuses).toEqual([400]);
        expect(res.closed).toBe(true);
        expect(backend.requests).toEqual([]);
      });
    }
  }
});

/** A request refused at its head, followed in the same read by more: none of it is a request. */
const refusedThenMore: [string, string][] = [
  ["no Host", "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"],
  ["two Host fields", "GET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"],
  ["a target that is not a path", "GET bad HTTP/1.1\r\nHost: a\r\n\r\n"],
  ["TRACE", "TRACE /bad HTTP/1.1\r\nHost: a\r\n\r\n"],
];

describe("requests: after a refused head, the rest of the read is not parsed into requests", () => {
  for (const [name, bad] of refusedThenMore) {
    for (const [way, how] of WAYS) {
      test(`${name}, then a valid request, ${way}`, async () => {
        const { port, backend } = await start();
        const res = await rawExchange(port, bad + "GET /after HTTP/1.1\r\nHost: a\r\n\r\n", {
          ...("dribble" in how ? { dribble: how.dribble } : {}),
          timeoutMs: 5000,
        });
        expect(res.statuses.length).toBe(1);
        expect(res.statuses[0]).toBeGreaterThanOrEqual(400);
        expect(res.statuses[0]).toBeLessThan(500);
        expect(res.closed).toBe(true);
        // A try starts at once when its request is parsed, so by the close none may have begun.
        expect(rig().balancer.pool.backends[0]!.acquired).toBe(0);
        expect(backend.requests).toEqual([]);
      });
    }
  }
});

interface ResponseCase {
  name: string;
  /** Requested first, on one client connection: its answer ends with a trailer section. */
  first: string;
  /** Requested next, by another client, on the same pooled upstream connection. */
  second: string;
  /** What the second client must see. */
  check(text: string): void;
}

const responseCases: ResponseCase[] = [
  {
    name: "a chunked answer with a trailer, then an answer whose head comes in two reads",
    first: "/chunked-trailer",
    second: "/split-head",
    check: (t) => {
      expect(t).toContain("X-Split: 1\r\n");
      expect(t.endsWith("\r\n\r\nsplit")).toBe(true);
    },
  },
  {
    name: "a chunked answer with a trailer, then a chunked answer",
    first: "/chunked-trailer",
    second: "/chunked",
    check: (t) => expect(dechunk(t)).toBe("hello world"),
  },
  {
    name: "a chunked answer with a trailer, then an interim 103 and its final answer",
    first: "/chunked-trailer",
    second: "/103",
    check: (t) => {
      expect(t).toContain("HTTP/1.1 103 Early Hints\r\n");
      expect(t).toContain("Link: </style.css>; rel=preload\r\n");
    },
  },
];

describe("responses: a trailer never reaches another client", () => {
  for (const c of responseCases) {
    for (const [way, how] of WAYS) {
      test(`${c.name}, ${way}`, async () => {
        const { port, backend } = await start();
        const q = "dribble" in how ? "?dribble" : "";
        const first = await rawExchange(port, `GET ${c.first}${q} HTTP/1.1\r\nHost: a\r\n\r\n`, { until: (t) => t.endsWith("0\r\n\r\n"), timeoutMs: 5000 });
        expect(first.statuses).toEqual([200]);
        // The body passes, re-chunked; the trailer section does not (RFC 9110 §6.5.1).
        expect(dechunk(first.text)).toBe("hello");
        expect(first.text.endsWith("\r\n0\r\n\r\n")).toBe(true);
        expect(first.text).not.toContain("X-Secret-Trailer");
        // A second client: the proxy reuses the idle upstream connection.
        const second = await rawExchange(port, `GET ${c.second}${c.second === "/split-head" ? "" : q} HTTP/1.1\r\nHost: a\r\n\r\n`, {
          until: (t) => countResponses(t) >= 1 && (t.endsWith("split") || t.endsWith("0\r\n\r\n") || t.endsWith("ok")),
          timeoutMs: 5000,
        });
        expect(second.statuses.at(-1)).toBe(200);
        expect(backend.connections()).toBe(1);
        expect(second.text).not.toContain("X-Secret-Trailer");
        expect(second.text).not.toContain("s3cret");
        expect(second.text).not.toContain("X-Two");
        c.check(second.text);
      });
    }
  }
});

describe("behind a front proxy that pools its connections (HAProxy, http-reuse always)", () => {
  const programs = requirePrograms("the pooled front proxy test", { haproxy: "haproxy" });
  test.skipIf(programs.skip)("one client's trailer never reaches another client's request", async () => {
    programs.assertPresent();
    const { port, backend } = await start();
    const front = await freePort();
    const dir = `${require("node:os").tmpdir()}/switchyard-haproxy-${process.pid}-${front}`;
    require("node:fs").mkdirSync(dir, { recursive: true });
    const cfg = `${dir}/haproxy.cfg`;
    await Bun.write(cfg, `
global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${front}
  default_backend sy
backend sy
  server s1 127.0.0.1:${port} maxconn 1
`);
    const proc = Bun.spawn([programs.path("haproxy"), "-db", "-f", cfg], { stdout: "ignore", stderr: "pipe" });
    cleanups.push(async () => {
      proc.kill();
      await proc.exited;
    });
    await waitFor(async () => {
      try {
        return (await rawExchange(front, "GET /ready HTTP/1.1\r\nHost: a\r\n\r\n", { until: (t) => countResponses(t) === 1, timeoutMs: 500 })).statuses[0] === 200;
      } catch {
        return false; // not listening yet
      }
    }, "HAProxy to listen");
    const before = backend.requests.length;
    // Client one: a chunked upload whose trailer carries a secret.
    const one = await rawExchange(front, chunked("/one", ["data"], "X-Secret: token-of-client-one\r\n"), { until: (t) => countResponses(t) === 1, timeoutMs: 5000 });
    expect(one.statuses).toEqual([200]);
    // Client two, on its own connection: HAProxy sends it over the same connection to us (one
    // server connection: maxconn 1). A chunked upload, so that llhttp (not the scanner) reads it.
    const two = await rawExchange(front, chunked("/two", ["mine"], ""), { until: (t) => countResponses(t) === 1, timeoutMs: 5000 });
    expect(two.statuses).toEqual([200]);
    const seen = backend.requests.slice(before);
    expect(seen.map((r) => r.url)).toEqual(["/one", "/two"]);
    expect(seen[1]!.headers.map(([k]) => k)).not.toContain("x-secret");
    expect(seen[1]!.body).toBe("mine");
    expect(backend.raw.join("")).not.toContain("token-of-client-one");
    expect(two.text).not.toContain("token-of-client-one");
  }, 20_000);
});

/** The body of the one chunked response in `text`, its chunks joined. */
function dechunk(text: string): string {
  let rest = text.slice(text.indexOf("\r\n\r\n") + 4);
  let out = "";
  for (;;) {
    const eol = rest.indexOf("\r\n");
    const size = parseInt(rest.slice(0, eol), 16);
    if (!(size > 0)) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 4 + size);
  }
}

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}
