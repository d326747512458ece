/**
 * A bounded differential fuzz of the socket engine's request parsing (its scanner and llhttp):
 * connections made of requests whose framing the generator knows, written in random pieces,
 * with mutations that keep them valid (split points, chunk sizes and extensions, trailers,
 * optional whitespace, duplicate fields, letter case, pipelining) and, on some connections, one
 * that makes a request invalid (RFC 9112: a field line with whitespace before its colon,
 * obs-fold, a bare LF, conflicting framing, a bad chunk...). Each connection must end one of two
 * ways, request by request:
 * - the backend receives exactly the requests the client framed, their fields and bodies byte
 *   for byte (beside the fields the proxy adds), and the client gets an answer for each;
 * - or, from an invalid request on, the client gets a 4xx and the connection closes, and nothing
 *   of that request or any after it reaches a backend.
 *
 * Three opinions are compared on every connection: the generator's model of what it framed,
 * llhttp alone reading the same bytes in one piece, and what the proxy passed on.
 *
 * The seed is printed; FUZZ_SEED=<n> replays a run and FUZZ_CASES=<n> sets its length.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { seeded } from "../helpers/random.ts";
import { rawExchange, statusesOf, type RawExchange } from "../helpers/raw.ts";
import { startRecordingBackend, type RecordedRequest, type RecordingBackend } from "../helpers/recording-backend.ts";
import { HTTPParser, METHODS as LLHTTP_METHODS } from "../../src/engine/socket/llhttp.ts";

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CASES = Number(process.env.FUZZ_CASES ?? 400);

let rand = seeded(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const chance = (p: number) => rand() < p;

/** A request as its client frames it. */
interface Msg {
  method: string;
  target: string;
  fields: [string, string][];
  body: string;
  framing: "none" | "length" | "chunked";
}

const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const TARGETS = ["/", "/a", "/a/b/c", "/q?x=1&y=2", "/%2F%20x", "//double//slash", "/a;p=1", "/~user/./x/../y", "/e?q=%E2%82%AC"];
// Not hop-by-hop, not framing, not a field the proxy sets (http/headers.ts).
const NAMES = ["Accept", "User-Agent", "X-A", "X-Custom-Field", "Cookie", "Authorization", "Content-Type", "X-Dup", "Cache-Control", "If-None-Match", "Referer"];
const VALUE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!#$%&'*+^`|=/;:,?@()[]{}<>\"\\";

function value(): string {
  const n = 1 + int(24);
  let s = "";
  for (let i = 0; i < n; i++) {
    // Inner spaces and tabs are part of a value; obs-text (0x80-0xFF) is allowed in it (RFC 9110 §5.5).
    const r = rand();
    s += r < 0.08 && i > 0 && i < n - 1 ? pick([" ", "\t"]) : r < 0.11 ? String.fromCharCode(0x80 + int(128)) : pick([...VALUE_CHARS]);
  }
  return s;
}

function body(): string {
  const n = pick([1, 2, 5, 17, 100, 1000, 3000]);
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(int(256));
  return s;
}

function message(): Msg {
  const method = pick(METHODS);
  const fields: [string, string][] = [["Host", pick(["a.test", "b.example:8080", "[::1]:9", "c"])]];
  const n = int(6);
  for (let i = 0; i < n; i++) fields.push([pick(NAMES), value()]);
  // A repeated field: both lines pass, in order.
  if (chance(0.3)) fields.push(["X-Dup", "1"], ["X-Dup", "2"]);
  const framing = method === "GET" || method === "OPTIONS" || method === "DELETE" ? (chance(0.15) ? "length" : "none") : pick(["length", "chunked"] as const);
  const b = framing === "none" ? "" : body();
  // Field order: shuffle all but Host into place.
  for (let i = fields.length - 1; i > 1; i--) {
    const j = 1 + int(i);
    [fields[i], fields[j]] = [fields[j]!, fields[i]!];
  }
  return { method, target: pick(TARGETS), fields, body: b, framing };
}

const flipCase = (s: string) => [...s].map((c) => (chance(0.3) ? (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) : c)).join("");

/** The bytes of `m`, with the mutations that keep it valid. */
function render(m: Msg): string {
  let s = `${m.method} ${m.target} HTTP/1.1\r\n`;
  const lines = m.fields.map(([k, v]) => `${chance(0.3) ? flipCase(k) : k}:${pick(["", " ", " ", "\t", "  \t"])}${v}${pick(["", "", " ", "\t "])}\r\n`);
  if (m.framing === "length") lines.splice(int(lines.length + 1), 0, `${chance(0.2) ? "content-LENGTH" : "Content-Length"}: ${m.body.length}\r\n`);
  if (m.framing === "chunked") lines.splice(int(lines.length + 1), 0, `Transfer-Encoding: ${pick(["chunked", "Chunked", "CHUNKED"])}\r\n`);
  s += lines.join("") + "\r\n";
  if (m.framing === "length") s += m.body;
  if (m.framing === "chunked") s += chunks(m.body);
  return s;
}

function chunks(b: string): string {
  let s = "";
  let off = 0;
  while (off < b.length) {
    const n = Math.min(b.length - off, 1 + int(pick([3, 40, 700, 4000])));
    const size = n.toString(16);
    s += `${chance(0.2) ? "00" : ""}${chance(0.3) ? size.toUpperCase() : size}`;
    if (chance(0.2)) s += pick([";a", ";a=b", ";name=\"quoted value\"", ";x=1;y"]);
    s += `\r\n${b.slice(off, off + n)}\r\n`;
    off += n;
  }
  s += "0\r\n";
  // A trailer section: dropped by the proxy, never part of the request the backend sees.
  if (chance(0.4)) for (let i = 1 + int(3); i > 0; i--) s += `${pick(["X-Trail", "Server-Timing", "X-Checksum"])}: ${value()}\r\n`;
  return `${s}\r\n`;
}

/** Mutations that make a request invalid; each returns its bytes. Every one is a 4xx. */
const BREAKERS: [string, (m: Msg) => string][] = [
  ["whitespace before a colon", (m) => render(m).replace(/\r\nHost:/i, "\r\nHost :")],
  ["obs-fold", (m) => render(m).replace(/\r\n\r\n/, "\r\nX-Fold: a\r\n b\r\n\r\n")],
  ["a bare LF ending a field line", (m) => render(m).replace(/\r\n(?=[^\r\n]*\r\n\r\n)/, "\n")],
  ["Content-Length and Transfer-Encoding", (m) => render({ ...m, framing: "chunked", body: m.body || "x" }).replace("\r\n\r\n", "\r\nContent-Length: 3\r\n\r\n")],
  ["two differing Content-Length", (m) => render({ ...m, framing: "length", body: m.body || "xy" }).replace("\r\n\r\n", "\r\nContent-Length: 1\r\n\r\n")],
  ["a Content-Length list", (m) => { const b = m.body || "xy"; return render({ ...m, framing: "none", body: "" }).replace("\r\n\r\n", `\r\nContent-Length: ${b.length}, ${b.length}\r\n\r\n`) + b; }],
  ["a bad chunk size", (m) => render({ ...m, method: "POST", framing: "chunked", body: m.body || "xyz" }).replace(/\r\n\r\n[0-9A-Fa-f]+/, "\r\n\r\nzz")],
  ["chunk data longer than its size", (m) => render({ ...m, method: "POST", framing: "chunked", body: "" }).replace(/\r\n\r\n0\r\n/, "\r\n\r\n2\r\nabcd\r\n0\r\n")],
  ["a control character in a value", (m) => render(m).replace(/\r\n\r\n/, "\r\nX-Ctl: a\x01b\r\n\r\n")],
  ["no Host", (m) => render({ ...m, fields: m.fields.filter(([k]) => k !== "Host") })],
  ["two Host fields", (m) => render({ ...m, fields: [...m.fields, ["Host", "other"]] })],
  ["a space in the target", (m) => render({ ...m, target: "/a b" })],
  ["a method with a control character", (m) => render({ ...m, method: "G\x01T" })],
  ["a target that is neither a path nor a URL", (m) => render({ ...m, target: "a.test/x" })],
  ["a NUL in a field name", (m) => render(m).replace(/\r\n\r\n/, "\r\nX-N\x00ul: 1\r\n\r\n")],
];

/** What the backend saw of a request, beside the fields the proxy adds and the framing it chose. */
const PROXY_FIELDS = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "via", "x-request-id", "content-length", "transfer-encoding"]);
function seen(r: RecordedRequest): Omit<Msg, "framing"> {
  return { method: r.method, target: r.url, fields: r.headers.filter(([k]) => !PROXY_FIELDS.has(k)), body: r.body };
}
function framed(m: Msg): Omit<Msg, "framing"> {
  // Names are case-insensitive (the backend's record lowercases them); OWS around a value is not part of it (RFC 9110 §5.5).
  return { method: m.method, target: m.target, fields: m.fields.map(([k, v]) => [k.toLowerCase(), v.replace(/^[ \t]+|[ \t]+$/g, "")]), body: m.body };
}

/**
 * The same bytes through llhttp alone, strict, in one piece: the messages it frames before it
 * stops, and whether it stopped on an error. The third opinion beside the generator's model and
 * the proxy (whose scanner and llhttp share the work by where the reads happen to be cut).
 */
function reference(bytes: Buffer): { msgs: Omit<Msg, "framing">[]; error: boolean } {
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {});
  const msgs: Omit<Msg, "framing">[] = [];
  let inHead = false;
  let early: string[] = [];
  let earlyUrl = "";
  let cur: Omit<Msg, "framing"> | undefined;
  p[HTTPParser.kOnMessageBegin] = () => {
    inHead = true;
    early = [];
    earlyUrl = "";
  };
  p[HTTPParser.kOnHeaders] = (f: string[], u: string) => {
    if (!inHead) return; // a trailer section
    early.push(...f);
    earlyUrl += u;
  };
  p[HTTPParser.kOnHeadersComplete] = (_a: number, _b: number, f: string[] | undefined, m: number, u: string | undefined) => {
    inHead = false;
    const all = [...early, ...(f ?? [])];
    const fields: [string, string][] = [];
    // Framing fields are the generator's choice of framing, not fields of the request it models.
    for (let i = 0; i < all.length; i += 2) if (!/^(content-length|transfer-encoding)$/i.test(all[i]!)) fields.push([all[i]!.toLowerCase(), all[i + 1]!]);
    cur = { method: LLHTTP_METHODS[m] ?? "?", target: earlyUrl + (u ?? ""), fields, body: "" };
    return 0;
  };
  p[HTTPParser.kOnBody] = (b: Uint8Array) => void (cur!.body += Buffer.from(b).toString("latin1"));
  p[HTTPParser.kOnMessageComplete] = () => void msgs.push(cur!);
  const r = p.execute(bytes);
  return { msgs, error: typeof r !== "number" };
}

/** Write `bytes` in 1 to 6 pieces cut at random points, a millisecond apart; read until `done` or a close. */
async function send(port: number, bytes: Buffer, done: (text: string) => boolean): Promise<RawExchange> {
  const cuts = [...new Set(Array.from({ length: int(6) }, () => int(bytes.length)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let off = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut <= off) continue;
    pieces.push(bytes.subarray(off, cut));
    off = cut;
  }
  return rawExchange(port, pieces, { pauseMs: 1, until: done, timeoutMs: 5000, pollMs: 50 });
}

const statuses = statusesOf;

let rig: TestRig;
let backend: RecordingBackend;
beforeAll(async () => {
  backend = startRecordingBackend();
  rig = await startRig(0, { engine: "socket", backends: [{ name: "rec", url: backend.url }], passive: { consecutiveFailures: 0 } });
});
afterAll(async () => {
  await rig?.stop();
  backend?.stop();
});

test(`${CASES} mutated connections: each request arrives exactly, or is refused with a 4xx and a close`, async () => {
  console.log(`fuzz: seed ${SEED} (replay with FUZZ_SEED=${SEED}), ${CASES} connections`);
  rand = seeded(SEED);
  let forwarded = 0;
  let refused = 0;
  for (let i = 0; i < CASES; i++) {
    const msgs = Array.from({ length: 1 + int(chance(0.5) ? 1 : 4) }, message);
    const breakAt = chance(0.3) ? int(msgs.length) : -1;
    const [breaker, breakFn] = breakAt >= 0 ? pick(BREAKERS) : ["", undefined];
    const bytes = Buffer.from(msgs.map((m, j) => (j === breakAt ? breakFn!(m) : render(m))).join(""), "latin1");
    const valid = breakAt >= 0 ? msgs.slice(0, breakAt) : msgs;
    // The model agrees with llhttp on every valid request, and llhttp never frames a broken one
    // as the model's (it may accept what only the proxy's own rules refuse, like a missing Host).
    const ref = reference(bytes);
    const refContext = `reference parser, case ${i} (seed ${SEED}): ${JSON.stringify(bytes.toString("latin1"))}`;
    expect({ refContext, msgs: ref.msgs.slice(0, valid.length) }).toEqual({ refContext, msgs: valid.map(framed) });
    if (breakAt < 0) expect({ refContext, error: ref.error, n: ref.msgs.length }).toEqual({ refContext, error: false, n: msgs.length });
    const before = backend.requests.length;
    const triesBefore = rig.balancer.pool.backends[0]!.acquired;
    // A broken request's connection is read until the proxy closes it (the close is checked).
    const out = await send(rig.balancer.port, bytes, (t) => breakAt < 0 && statuses(t).length >= msgs.length);
    const got = backend.requests.slice(before);
    const context = `case ${i} (seed ${SEED})${breaker ? `, request ${breakAt + 1} of ${msgs.length} broken by ${breaker}` : `, ${msgs.length} valid requests`}:\n${JSON.stringify(bytes.toString("latin1"))}`;
    const st = statuses(out.text);
    // Tries start as soon as a request is parsed: by the answers (and the close) every try this
    // connection caused has begun, including any the backend has not received yet.
    expect({ context, tries: rig.balancer.pool.backends[0]!.acquired - triesBefore }).toEqual({ context, tries: valid.length });
    if (breakAt < 0) {
      expect({ context, got: got.map(seen), st }).toEqual({ context, got: valid.map(framed), st: valid.map(() => 200) });
      forwarded++;
    } else {
      // The valid requests before the broken one arrive exactly; the broken one gets a 4xx and
      // the close, and nothing of it or after it reaches the backend.
      expect({ context, got: got.map(seen), ok: st.slice(0, breakAt), closed: out.closed }).toEqual({ context, got: valid.map(framed), ok: valid.map(() => 200), closed: true });
      expect({ context, status: st[breakAt] ?? 0 }).toEqual({ context, status: expect.any(Number) });
      expect(st[breakAt]! >= 400 && st[breakAt]! < 500 ? "4xx" : `${st[breakAt]} in ${context}`).toBe("4xx");
      expect(st.length).toBe(breakAt + 1);
      refused++;
    }
  }
  // Not a degenerate run: both outcomes were exercised.
  expect(forwarded).toBeGreaterThan(CASES / 3);
  expect(refused).toBeGreaterThan(CASES / 10);
}, 120_000);
