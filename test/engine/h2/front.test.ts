/**
 * HTTP/2 from clients on the socket engine (src/engine/h2/): curl by prior knowledge and by
 * ALPN, node:http2's client for many streams on one connection, a raw client for what a library
 * will not send (test/helpers/h2raw.ts). HTTP/2 is the socket engine's alone: every rig here
 * names it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { createHash } from "node:crypto";
import type { Server } from "bun";
import { startRig, type RigConfig, type TestRig } from "../../helpers/balancer.ts";
import { curl, makePki, type Issued, type Pki } from "../../helpers/pki.ts";
import { waitFor } from "../../helpers/wait.ts";
import { RawH2 } from "../../helpers/h2raw.ts";
import { rawExchange } from "../../helpers/raw.ts";
import { findProgram } from "../../helpers/system.ts";

let pki: Pki;
let a: Issued;
beforeAll(async () => {
  pki = await makePki();
  a = await pki.issue("a", ["localhost", "IP:127.0.0.1"]);
});
afterAll(() => pki.remove());

const rigs: TestRig[] = [];
const servers: Server<unknown>[] = [];
const sessions: http2.ClientHttp2Session[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  for (const r of rigs.splice(0)) await r.stop();
  for (const s of servers.splice(0)) s.stop(true);
});

async function rig(count: number, config: RigConfig = {}): Promise<TestRig> {
  const r = await startRig(count, (c) => ({ engine: "socket", ...(typeof config === "function" ? config(c) : config) }));
  rigs.push(r);
  return r;
}

function connect(url: string, opts: http2.SecureClientSessionOptions = {}): http2.ClientHttp2Session {
  const s = http2.connect(url, opts);
  s.on("error", () => {});
  sessions.push(s);
  return s;
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on `session`; resolves with the whole answer, rejects on a reset. */
function request(session: http2.ClientHttp2Session, path: string, opts: { method?: string; body?: Uint8Array; headers?: Record<string, string> } = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": opts.method ?? "GET", ":path": path, ...opts.headers }, { endStream: opts.body === undefined });
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      headers = h;
      status = Number(h[":status"]);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve({ status, headers, body: Buffer.concat(chunks) }));
    req.on("error", reject);
    req.on("close", () => {
      if (req.rstCode !== undefined && req.rstCode !== 0) reject(Object.assign(new Error(`reset ${req.rstCode}`), { rstCode: req.rstCode }));
    });
    if (opts.body !== undefined) req.end(opts.body);
  });
}

/** A backend whose every answer is a body `pull` makes, a piece a call; `cancelled` once a client gave one up. */
function streamingBackend(pull: (c: ReadableStreamDefaultController<Uint8Array>) => void | Promise<void>, headers: Record<string, string> = {}): { port: number; cancelled: boolean } {
  const state = { port: 0, cancelled: false };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch: () => new Response(new ReadableStream({ pull, cancel: () => void (state.cancelled = true) }, { highWaterMark: 0 }), { headers }),
  });
  servers.push(server);
  state.port = server.port!;
  return state;
}

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out, err };
}

describe("HTTP/2 from clients (socket engine)", () => {
  test("curl --http2-prior-knowledge on a plain listener; HTTP/1.1 on the same port unchanged", async () => {
    const r = await rig(1);
    const h2 = await run(["curl", "-s", "-i", "--http2-prior-knowledge", `${r.balancer.url}/echo`]);
    expect(h2.code).toBe(0);
    expect(h2.out.startsWith("HTTP/2 200")).toBe(true);
    const echoed = JSON.parse(h2.out.slice(h2.out.indexOf("\r\n\r\n") + 4)) as { headers: [string, string][] };
    // :authority became Host; the backend got X-Forwarded-* as from an HTTP/1.1 client.
    expect(echoed.headers).toContainEqual(["host", new URL(r.balancer.url).host]);
    expect(echoed.headers).toContainEqual(["x-forwarded-proto", "http"]);
    expect(echoed.headers).toContainEqual(["x-forwarded-for", "127.0.0.1"]);
    // Via names the version the request came in (RFC 9110 §7.6.3).
    expect(echoed.headers).toContainEqual(["via", "2 switchyard"]);
    const h1 = await run(["curl", "-s", "-i", "--http1.1", `${r.balancer.url}/`]);
    expect(h1.out.startsWith("HTTP/1.1 200 OK")).toBe(true);
    expect(h1.out.endsWith(`${r.cluster.backends[0]!.name}\n`)).toBe(true);
    // Both counted and logged alike.
    await waitFor(() => r.access.length === 2, "two access-log lines");
    expect(r.access[0]).toContain('"GET /echo" 200');
  });

  test("http2.enabled false: the preface is answered 505, as before", async () => {
    const r = await rig(1, { http2: { enabled: false } });
    const res = await rawExchange(r.balancer.port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    expect(res.statuses).toEqual([505]);
  });

  test("a preface that arrives in pieces is still HTTP/2; a request that only starts like it is HTTP/1.1", async () => {
    const r = await rig(1);
    const h2 = await RawH2.connectInPieces(r.balancer.port);
    h2.get(1, "/");
    expect(await h2.outcome(1)).toEqual({ headers: true });
    h2.close();
    const res = await rawExchange(r.balancer.port, ["PR", "OPFIND / HTTP/1.1\r\nHost: x\r\n\r\n"], { until: (t) => t.includes("\r\n\r\n") });
    expect(res.statuses[0]).not.toBe(505);
    expect(res.statuses.length).toBe(1);
  });

  test("many concurrent streams on one connection spread over 3 backends round-robin", async () => {
    const r = await rig(3, { strategy: "round-robin" });
    const s = connect(r.balancer.url);
    const answers = await Promise.all(Array.from({ length: 60 }, () => request(s, "/")));
    const counts = new Map<string, number>();
    for (const a of answers) {
      expect(a.status).toBe(200);
      const name = a.body.toString().trim();
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    expect([...counts.values()]).toEqual([20, 20, 20]);
    await waitFor(() => r.balancer.pool.backends.every((b) => b.inFlight === 0), "no request left in flight");
  });

  test("a POST body of a few MB reaches an HTTP/1.1 backend intact", async () => {
    const r = await rig(1);
    const s = connect(r.balancer.url);
    const body = new Uint8Array(5 * 1024 * 1024 + 123);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) & 0xff;
    const a = await request(s, "/echo", { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
    expect(a.status).toBe(200);
    const seen = JSON.parse(a.body.toString()) as { bodyLength: number; bodySha256: string; method: string };
    expect(seen.method).toBe("POST");
    expect(seen.bodyLength).toBe(body.length);
    expect(seen.bodySha256).toBe(createHash("sha256").update(body).digest("hex"));
    // A small one is read whole (replayable) and goes with a Content-Length.
    const small = await request(s, "/echo", { method: "POST", body: new TextEncoder().encode("hello") });
    expect((JSON.parse(small.body.toString()) as { bodyLength: number }).bodyLength).toBe(5);
  });

  test("routes, a 404 for no route and a rate limit's 429 reach the client as HTTP/2 answers", async () => {
    const r = await rig(1, {
      routes: [
        { name: "limited", match: { path: "/delay" }, pool: "default", rateLimit: { rate: "1/m", burst: 1 } },
        { name: "fixed", match: { pathExact: "/fixed" }, respond: { status: 503, body: "later" } },
        { name: "web", match: { path: "/echo" }, pool: "default" },
      ],
    });
    const s = connect(r.balancer.url);
    expect((await request(s, "/echo")).status).toBe(200);
    const none = await request(s, "/elsewhere");
    expect(none.status).toBe(404);
    expect((JSON.parse(none.body.toString()) as { error: string }).error).toBe("SY_NO_ROUTE");
    const fixed = await request(s, "/fixed");
    expect(fixed.status).toBe(503);
    expect(fixed.body.toString()).toBe("later");
    expect((await request(s, "/delay/0")).status).toBe(200);
    const limited = await request(s, "/delay/0");
    expect(limited.status).toBe(429);
    expect(limited.headers["retry-after"]).toBe("60");
    // A HEAD answer has no body.
    const head = await request(s, "/elsewhere", { method: "HEAD" });
    expect(head.status).toBe(404);
    expect(head.body.length).toBe(0);
    // The session is still good after all of them.
    expect((await request(s, "/echo")).status).toBe(200);
  });

  test("answered before its body is all in: the whole answer, then RST_STREAM NO_ERROR (RFC 9113 §8.1)", async () => {
    const r = await rig(1, { routes: [{ name: "web", match: { path: "/echo" }, pool: "default" }] });
    const h2 = await RawH2.connect(r.balancer.port);
    h2.headers(1, [[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", "/nowhere"]], false);
    h2.data(1, new Uint8Array(100), false);
    expect(await h2.outcome(1)).toEqual({ headers: true });
    await waitFor(() => h2.frames.some((f) => f.type === 3 && f.stream === 1), "the reset");
    const rst = h2.frames.find((f) => f.type === 3 && f.stream === 1)!;
    expect(rst.payload.readUInt32BE(0)).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(JSON.parse(h2.body(1)).error).toBe("SY_NO_ROUTE");
    h2.close();
  });

  test("over TLS: ALPN h2 goes to HTTP/2, http/1.1 stays HTTP/1.1", async () => {
    const r = await rig(1, { listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } } });
    const h2 = await curl(["--cacert", pki.ca, "--http2", "-i", `${r.balancer.url}/echo`]);
    expect(h2.code).toBe(0);
    expect(h2.verbose).toContain("ALPN: server accepted h2");
    expect(h2.body.startsWith("HTTP/2 200")).toBe(true);
    expect(h2.body).toContain('["x-forwarded-proto","https"]');
    const h1 = await curl(["--cacert", pki.ca, "--http1.1", "-i", `${r.balancer.url}/`]);
    expect(h1.verbose).toContain("ALPN: server accepted http/1.1");
    expect(h1.body.startsWith("HTTP/1.1 200 OK")).toBe(true);
    // node:http2's client over TLS too.
    const s = connect(r.balancer.url, { ca: await Bun.file(pki.ca).text() });
    expect((await request(s, "/")).status).toBe(200);
  });

  test("http2.enabled false on TLS: ALPN offers no h2", async () => {
    const r = await rig(1, { listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } }, http2: { enabled: false } });
    const res = await curl(["--cacert", pki.ca, "--http2", "-i", `${r.balancer.url}/`]);
    expect(res.code).toBe(0);
    expect(res.verbose).not.toContain("server accepted h2");
    expect(res.body.startsWith("HTTP/1.1 200")).toBe(true);
  });

  test("maxConcurrentStreams + 1 streams: the extra one is refused with REFUSED_STREAM", async () => {
    const r = await rig(1, { http2: { maxConcurrentStreams: 2 } });
    const h2 = await RawH2.connect(r.balancer.port);
    // Held open by the backend (a slow answer), so all three are open at once.
    h2.get(1, "/delay/1000");
    h2.get(3, "/delay/1000");
    h2.get(5, "/delay/1000");
    expect(await h2.outcome(5)).toEqual({ reset: http2.constants.NGHTTP2_REFUSED_STREAM });
    expect(await h2.outcome(1)).toEqual({ headers: true });
    expect(await h2.outcome(3)).toEqual({ headers: true });
    h2.close();
  });

  test("malformed requests are reset with PROTOCOL_ERROR and never forwarded (RFC 9113 §8.1.1)", async () => {
    const r = await rig(1);
    const h2 = await RawH2.connect(r.balancer.port);
    h2.get(1, "/", [["X-Upper", "1"]]);
    h2.get(3, "/", [["connection", "keep-alive"]]);
    h2.get(5, "/", [["transfer-encoding", "chunked"]]);
    h2.get(7, "/", [["te", "gzip"]]);
    h2.get(9, "/", [["upgrade", "websocket"]]);
    // content-length that the DATA does not match, over and under.
    h2.headers(11, [[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", "/echo"], ["content-length", "3"]], false);
    h2.data(11, new TextEncoder().encode("hello"), true);
    h2.headers(13, [[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", "/echo"], ["content-length", "10"]], false);
    h2.data(13, new TextEncoder().encode("hello"), true);
    for (const id of [1, 3, 5, 7, 9, 11, 13]) expect({ id, ...(await h2.outcome(id)) }).toEqual({ id, reset: http2.constants.NGHTTP2_PROTOCOL_ERROR });
    // te: trailers is allowed; the session goes on.
    h2.get(15, "/", [["te", "trailers"]]);
    expect(await h2.outcome(15)).toEqual({ headers: true });
    h2.close();
    expect(r.cluster.backends[0]!.requests).toBe(1);
  });

  test("a header list over maxHeaderListSize or maxHeaderListPairs: the stream is reset, the session goes on", async () => {
    const r = await rig(1, { http2: { maxHeaderListSize: 1024, maxHeaderListPairs: 8 } });
    const h2 = await RawH2.connect(r.balancer.port);
    h2.get(1, "/", [["x-big", "a".repeat(2000)]]);
    h2.get(3, "/", Array.from({ length: 10 }, (_, i) => [`x-${i}`, "v"] as [string, string]));
    h2.get(5, "/");
    expect(await h2.outcome(1)).toEqual({ reset: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM });
    expect(await h2.outcome(3)).toEqual({ reset: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM });
    expect(await h2.outcome(5)).toEqual({ headers: true });
    h2.close();
    expect(r.cluster.backends[0]!.requests).toBe(1);
  });

  test("behind a PROXY protocol header, the client it names is the one the backend hears of", async () => {
    const r = await rig(1, {
      listen: undefined,
      listeners: [{ name: "web", host: "127.0.0.1", port: 0, proxyProtocol: true }],
      trustedProxies: ["127.0.0.1"],
    });
    const h2 = await RawH2.connect(r.balancer.port, [], Buffer.from("PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n"));
    h2.get(1, "/echo");
    await waitFor(() => h2.frames.some((f) => f.type === 0 && f.stream === 1 && (f.flags & 1) === 1), "the whole answer");
    const seen = JSON.parse(h2.body(1)) as { headers: [string, string][] };
    expect(seen.headers).toContainEqual(["x-forwarded-for", "203.0.113.7"]);
    h2.close();
  });

  test("CONNECT is refused with 405", async () => {
    const r = await rig(1);
    const s = connect(r.balancer.url);
    const a = await new Promise<number>((resolve, reject) => {
      const req = s.request({ ":method": "CONNECT", ":authority": "example.com:443" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
    });
    expect(a).toBe(405);
  });

  test("a large response to a slow reader: flow control holds the backend, memory stays bounded", async () => {
    const total = 256 * 1024 * 1024;
    let pulled = 0;
    const piece = new Uint8Array(64 * 1024).fill(97);
    const backend = streamingBackend((c) => {
      if (pulled >= total) return c.close();
      pulled += piece.length;
      c.enqueue(piece);
    }, { "content-length": String(total) });
    const r = await rig(0, { backends: [{ name: "big", url: `http://127.0.0.1:${backend.port}` }] });
    const s = connect(r.balancer.url);
    const req = s.request({ ":path": "/big" });
    let got = 0;
    let first: () => void;
    const started = new Promise<void>((res) => (first = res));
    req.on("data", (c: Buffer) => {
      got += c.length;
      first();
    });
    await started;
    req.pause();
    // The client reads nothing more: what the backend was asked for settles well short of
    // the whole body (windows and socket buffers), however long we wait.
    let last = -1;
    await waitFor(async () => {
      const now = pulled;
      const still = now === last;
      last = now;
      await Bun.sleep(200);
      return still;
    }, "the backend to stop being read", 20_000, 1);
    console.log(`slow reader: the backend was read ${(pulled / 2 ** 20).toFixed(1)} MiB of ${total / 2 ** 20} MiB, the client had ${(got / 2 ** 20).toFixed(1)} MiB`);
    expect(pulled).toBeLessThan(64 * 1024 * 1024);
    // Reading again, the whole body arrives.
    req.resume();
    await new Promise<void>((resolve, reject) => {
      req.on("end", resolve);
      req.on("error", reject);
    });
    expect(got).toBe(total);
    expect(backend.cancelled).toBe(false);
  }, 60_000);

  test("an upload to a backend that stops reading: flow control holds the client back", async () => {
    // A backend that takes the first bytes of a request and then reads nothing more.
    let backendGot = 0;
    const backend = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(sock, d) {
          backendGot += d.length;
          (sock as unknown as { pause(): void }).pause();
        },
      },
    });
    const r = await rig(0, { backends: [{ name: "stuck", url: `http://127.0.0.1:${backend.port}` }], timeouts: { send: 0 } });
    try {
      const s = connect(r.balancer.url);
      const req = s.request({ ":method": "POST", ":path": "/up" }, { endStream: false });
      req.on("error", () => {});
      const piece = Buffer.alloc(256 * 1024, 120);
      const total = 256 * 1024 * 1024;
      let flushed = 0;
      let written = 0;
      const pump = () => {
        while (written < total) {
          written += piece.length;
          if (!req.write(piece, () => (flushed += piece.length))) return void req.once("drain", pump);
        }
      };
      pump();
      let last = -1;
      await waitFor(async () => {
        const now = flushed;
        const still = now === last && now > 0;
        last = now;
        await Bun.sleep(200);
        return still;
      }, "the upload to stop moving", 20_000, 1);
      console.log(`stuck backend: the client got ${(flushed / 2 ** 20).toFixed(1)} MiB of ${total / 2 ** 20} MiB out, the backend read ${(backendGot / 2 ** 20).toFixed(1)} MiB`);
      expect(flushed).toBeLessThan(64 * 1024 * 1024);
      req.close(http2.constants.NGHTTP2_CANCEL);
      await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 0, "the in-flight slot to be released");
    } finally {
      backend.stop(true);
    }
  }, 60_000);

  test("a client's RST_STREAM mid-response frees the backend: its connection closed, nothing left in flight", async () => {
    const backend = streamingBackend(async (c) => {
      c.enqueue(new Uint8Array(16 * 1024).fill(98));
      await Bun.sleep(5);
    });
    const r = await rig(0, { backends: [{ name: "endless", url: `http://127.0.0.1:${backend.port}` }] });
    const s = connect(r.balancer.url);
    const req = s.request({ ":path": "/endless" });
    let got = 0;
    await new Promise<void>((resolve) => req.on("data", (c: Buffer) => {
      got += c.length;
      if (got > 100_000) resolve();
    }));
    expect(r.balancer.pool.backends[0]!.inFlight).toBe(1);
    req.close(http2.constants.NGHTTP2_CANCEL);
    await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 0, "the in-flight slot to be released");
    await waitFor(() => backend.cancelled, "the backend's response to be abandoned (its connection closed)");
    await waitFor(() => r.access.length === 1, "the access-log line");
    expect(r.access[0]).toContain("SY_CLIENT_ABORTED");
    // The session is still good for the next stream.
    const again = connect(r.balancer.url);
    void again;
  });

  test("a backend that dies mid-body: the client's stream is reset with INTERNAL_ERROR, never ended as if whole", async () => {
    // An HTTP/1.1 backend that promises 1 MB, sends 1 KiB, and closes a moment later (once that
    // much has reached the client: the case Bun's close(code) got wrong).
    const cut = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(sock) {
          sock.write(`HTTP/1.1 200 OK\r\ncontent-length: ${1 << 20}\r\n\r\n`);
          sock.write(new Uint8Array(1024).fill(99));
          setTimeout(() => sock.end(), 50);
        },
      },
    });
    try {
      const r = await rig(0, { backends: [{ name: "cut", url: `http://127.0.0.1:${cut.port}` }] });
      const s = connect(r.balancer.url);
      const req = s.request({ ":path": "/" });
      let got = 0;
      let ended = false;
      req.on("data", (c: Buffer) => (got += c.length));
      req.on("end", () => (ended = true));
      req.on("error", () => {});
      await new Promise<void>((resolve) => req.on("close", () => resolve()));
      expect(ended).toBe(false);
      expect(req.rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
      expect(got).toBeLessThan(1 << 20);
      await waitFor(() => r.access.length === 1, "the access-log line");
      expect(r.access[0]).toContain("SY_UPSTREAM_TRUNCATED");
    } finally {
      cut.stop(true);
    }
  });

  test("h2load smoke: 2000 requests over 4 connections, all succeed", async () => {
    const h2load = findProgram("h2load");
    if (h2load === undefined) return void console.warn("h2load not installed (Debian nghttp2-client): skipped");
    const r = await rig(2);
    const res = await run([h2load, "-n", "2000", "-c", "4", "-m", "10", `${r.balancer.url}/`]);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/);
    expect(res.out).toMatch(/status codes: 2000 2xx/);
  }, 30_000);
});
