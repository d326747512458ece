/**
 * The socket engine's wire, byte for byte: what a client sends, what it gets back, and what a
 * backend that records every byte actually received (RFC 9112 throughout).
 */
import { describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/wait.ts";
import { countResponses, rawClient, rawExchange } from "../helpers/raw.ts";
import { recordingRig } from "../helpers/balancer.ts";

const { start, rig } = recordingRig("socket");

const GET = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

describe("requests refused before any byte reaches a backend", () => {
  const cases: [string, string, number][] = [
    ["Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
    ["two differing Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400],
    ["a list in Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400],
    ["a malformed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400],
    ["a Transfer-Encoding not ending in chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400],
    ["chunked applied twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400],
    ["a transfer coding other than chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501],
    ["obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400],
    ["whitespace before a colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400],
    ["a control character in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", 400],
    ["a bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400],
    ["HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400],
    ["two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["a space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["a bare LF line end", "GET / HTTP/1.1\nHost: a\n\n", 400],
    ["a method with a control character", "G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["a target that is neither a path nor a URL", "GET a.test/x HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["HTTP/2.0 on an HTTP/1 connection", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
    ["CONNECT (not a forward proxy)", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", 405],
    ["TRACE (it would reflect the client's credentials)", "TRACE / HTTP/1.1\r\nHost: a\r\nCookie: secret=1\r\n\r\n", 405],
    ["an expectation other than 100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417],
    ["Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
  ];
  test.each(cases)("%s: %d and close", async (_name, input, status) => {
    const { port, backend } = await start();
    const res = await rawExchange(port, input);
    expect(res.statuses).toEqual([status]);
    expect(res.closed).toBe(true);
    expect(res.text).toContain("connection: close");
    if (status === 405) expect(res.text).toContain("allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
    expect(backend.requests).toEqual([]);
  });

  test("a head over limits.maxHeaderSize: 431", async () => {
    const { port, backend } = await start({ limits: { maxHeaderSize: "4KB" } });
    const res = await rawExchange(port, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"x".repeat(5000)}\r\n\r\n`);
    expect(res.statuses).toEqual([431]);
    expect(backend.requests).toEqual([]);
  });

  test("a target over limits.maxUriLength: 414", async () => {
    const { port, backend } = await start({ limits: { maxUriLength: 100 } });
    const res = await rawExchange(port, `GET /${"a".repeat(200)} HTTP/1.1\r\nHost: a\r\n\r\n`);
    expect(res.statuses).toEqual([414]);
    expect(backend.requests).toEqual([]);
  });

  test("a declared body over limits.maxBodySize: 413 without reading it", async () => {
    const { port, backend } = await start({ limits: { maxBodySize: 1000 } });
    const res = await rawExchange(port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n");
    expect(res.statuses).toEqual([413]);
    expect(backend.requests).toEqual([]);
  });

  test("a chunked body that grows over limits.maxBodySize: 413, and the backend is not blamed", async () => {
    const { port } = await start({ limits: { maxBodySize: 100_000 }, retry: { bufferBody: 1000 }, passive: { consecutiveFailures: 1 } });
    const chunk = "x".repeat(10_000);
    let input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (let i = 0; i < 12; i++) input += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    const res = await rawExchange(port, input);
    expect(res.statuses).toEqual([413]);
    expect(res.closed).toBe(true);
    const b = rig().balancer.pool.backends[0]!;
    expect(b.state()).toBe("up");
    expect(b.stats.proxyErrors).toBe(0);
  });
});

describe("what the backend receives", () => {
  test("hop-by-hop fields are gone, forwarded fields set, the target unchanged", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(port, "GET /a%2Fb//c?x=1 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nTE: trailers\r\nKeep-Alive: 5\r\nX-Kept: 1\r\n\r\n", { until: (t) => countResponses(t) === 1 });
    expect(res.statuses).toEqual([200]);
    const r = backend.requests[0]!;
    expect(r.url).toBe("/a%2Fb//c?x=1");
    const names = r.headers.map(([k]) => k);
    for (const gone of ["connection", "x-secret", "te", "keep-alive"]) expect(names).not.toContain(gone);
    expect(r.headers).toContainEqual(["x-kept", "1"]);
    expect(r.headers).toContainEqual(["host", "a.test"]);
    expect(r.headers).toContainEqual(["x-forwarded-for", "127.0.0.1"]);
    expect(r.headers).toContainEqual(["via", "1.1 switchyard"]);
    // Nothing the client did not send: no User-Agent, no Accept (the fetch engine adds both).
    expect(names).not.toContain("user-agent");
    expect(names).not.toContain("accept");
  });

  test("a chunked body with extensions and a trailer: the body arrives, the trailer does not", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(
      port,
      "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: GET /smuggled HTTP/1.1\r\n\r\n",
      { until: (t) => countResponses(t) === 1 },
    );
    expect(res.statuses).toEqual([200]);
    expect(backend.requests.map((r) => r.body)).toEqual(["hello world"]);
    expect(backend.raw.join("")).not.toContain("X-Trailer");
    expect(backend.raw.join("")).not.toContain("smuggled");
  });

  test("more than 32 field lines (llhttp hands them over early) all arrive, in order", async () => {
    const { port, backend } = await start();
    const many = Array.from({ length: 40 }, (_, i) => `X-H${i}: v${i}\r\n`).join("");
    // Chunked, so llhttp (not the scanner) reads this head.
    const res = await rawExchange(port, `POST /many HTTP/1.1\r\nHost: a\r\n${many}Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n`, {
      until: (t) => countResponses(t) === 1,
    });
    expect(res.statuses).toEqual([200]);
    const names = backend.requests[0]!.headers.map(([k]) => k).filter((k) => k.startsWith("x-h"));
    expect(names).toEqual(Array.from({ length: 40 }, (_, i) => `x-h${i}`));
  });

  test("Expect: 100-continue is answered by the proxy; the backend never sees it", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(port, ["POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "hello"], {
      until: (t) => countResponses(t) === 1,
    });
    expect(res.statuses).toEqual([100, 200]);
    expect(backend.requests[0]!.body).toBe("hello");
    expect(backend.requests[0]!.headers.map(([k]) => k)).not.toContain("expect");
  });

  test("absolute-form: origin-form upstream, Host from the authority (RFC 9112 §3.2.2)", async () => {
    const { port, backend } = await start();
    await rawExchange(port, "GET http://shop.test:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", { until: (t) => countResponses(t) === 1 });
    expect(backend.requests[0]!.url).toBe("/p?q=1");
    expect(backend.requests[0]!.headers).toContainEqual(["host", "shop.test:8080"]);
  });

  test("bytes after a response are never read as the next one: that connection is not reused", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(port, ["GET /leftover HTTP/1.1\r\nHost: a\r\n\r\n", GET], { until: (t) => countResponses(t) === 2 });
    expect(res.statuses).toEqual([200, 200]);
    expect(res.text).not.toContain("forged");
    expect(backend.connections()).toBe(2);
  });
});

test("bytes a backend sends on an idle connection close it: the next request gets a fresh one", async () => {
  const { port, backend } = await start();
  expect((await rawExchange(port, "GET /late-bytes HTTP/1.1\r\nHost: a\r\n\r\n", { until: (t) => countResponses(t) === 1 })).statuses).toEqual([200]);
  // The stray bytes arrive 30 ms after the answer, and the proxy closes that connection.
  await waitFor(() => backend.closed() === 1, "the proxy to close the connection the stray bytes came on");
  const next = await rawExchange(port, GET, { until: (t) => countResponses(t) === 1 });
  expect(next.statuses).toEqual([200]);
  expect(next.text).not.toContain("forged");
  expect(backend.connections()).toBe(2);
});

describe("connections", () => {
  test("keep-alive both ways: three requests, one client connection, one backend connection", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(port, [GET, GET, GET], { until: (t) => countResponses(t) === 3 });
    expect(res.statuses).toEqual([200, 200, 200]);
    expect(res.closed).toBe(false);
    expect(backend.connections()).toBe(1);
  });

  test("pipelined requests in one write are answered in order", async () => {
    const { port } = await start();
    const res = await rawExchange(port, GET.replace("/", "/1") + GET.replace("/", "/2") + GET.replace("/", "/chunked") + GET.replace("/", "/3"), {
      until: (t) => countResponses(t) === 4,
    });
    expect(res.statuses).toEqual([200, 200, 200, 200]);
    const bodies = res.text.split(/HTTP\/1\.1 200 OK\r\n/).slice(1).map((r) => r.slice(r.indexOf("\r\n\r\n") + 4));
    expect(bodies[0]).toBe("ok 1");
    expect(bodies[1]).toBe("ok 2");
    expect(bodies[2]).toBe("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    expect(bodies[3]).toBe("ok 4");
  });

  test("dribbled three bytes at a time, a request still gets through", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(port, "POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", { dribble: 3, until: (t) => countResponses(t) === 1 });
    expect(res.statuses).toEqual([200]);
    expect(backend.requests[0]!.body).toBe("hello world");
  });

  test("a head split across reads, and a body in a later read", async () => {
    const { port, backend } = await start();
    const res = await rawExchange(port, ["POST /s HTTP/1.1\r\nHo", "st: a\r\nContent-Le", "ngth: 4\r\n\r\n", "da", "ta"], { until: (t) => countResponses(t) === 1 });
    expect(res.statuses).toEqual([200]);
    expect(backend.requests[0]!.body).toBe("data");
  });

  test("Connection: close is honoured: the answer says so and the connection closes", async () => {
    const { port } = await start();
    const res = await rawExchange(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    expect(res.statuses).toEqual([200]);
    expect(res.text).toContain("Connection: close");
    expect(res.closed).toBe(true);
  });

  test("HTTP/1.0: a chunked backend answer is de-chunked and the connection closed", async () => {
    const { port } = await start();
    const res = await rawExchange(port, "GET /chunked HTTP/1.0\r\n\r\n");
    expect(res.statuses).toEqual([200]);
    expect(res.text.endsWith("\r\n\r\nhello world")).toBe(true);
    expect(res.text.toLowerCase()).not.toContain("transfer-encoding");
    expect(res.closed).toBe(true);
  });

  test("a close-delimited backend answer reaches an HTTP/1.1 client chunked, and the connection stays", async () => {
    const { port } = await start();
    const res = await rawExchange(port, ["GET /close HTTP/1.1\r\nHost: a\r\n\r\n"], { until: (t) => t.endsWith("0\r\n\r\n") });
    expect(res.text).toContain("Transfer-Encoding: chunked");
    expect(res.text).toContain("until the end");
    expect(res.closed).toBe(false);
  });

  test("a client half-close after its request still gets the answer", async () => {
    const { port } = await start();
    const client = await rawClient(port, { halfOpen: true });
    client.send(GET);
    client.shutdown();
    await client.waitFor((text) => text.includes("ok 1"), "the answer after the client's FIN");
    client.end();
  });

  test("interim 103 is passed on before the final answer; several Set-Cookie stay apart", async () => {
    const { port } = await start();
    const early = await rawExchange(port, "GET /103 HTTP/1.1\r\nHost: a\r\n\r\n", { until: (t) => countResponses(t) === 1 });
    expect(early.statuses).toEqual([103, 200]);
    expect(early.text).toContain("Link: </style.css>; rel=preload");
    const cookies = await rawExchange(port, "GET /cookies HTTP/1.1\r\nHost: a\r\n\r\n", { until: (t) => countResponses(t) === 1 });
    expect(cookies.text.match(/Set-Cookie: /g)?.length).toBe(3);
    expect(cookies.text).toContain("Set-Cookie: b=2, c=3\r\n");
  });

  test("HEAD, 204 and 304 carry no body", async () => {
    const { port } = await start();
    const res = await rawExchange(port, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + GET, { until: (t) => countResponses(t) === 2 });
    expect(res.statuses).toEqual([200, 200]);
    // The HEAD answer keeps the length the GET would have, and no body follows it.
    expect(res.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*?Content-Length: 4\r\n[^]*?\r\n\r\nHTTP\/1\.1 200/);
  });

  test("a head that does not arrive in timeouts.header: 408 and close (slow-loris)", async () => {
    const { port, backend } = await start({ timeouts: { header: "300ms" } });
    const started = performance.now();
    const res = await rawExchange(port, "GET / HTTP/1.1\r\nHost: a\r\n", { timeoutMs: 3000 });
    expect(res.statuses).toEqual([408]);
    expect(res.closed).toBe(true);
    expect(performance.now() - started).toBeLessThan(2500);
    expect(backend.requests).toEqual([]);
  });

  test("an idle kept-alive connection is closed after timeouts.idle", async () => {
    const { port } = await start({ timeouts: { idle: "300ms" } });
    const res = await rawExchange(port, GET, { timeoutMs: 3000 });
    expect(res.statuses).toEqual([200]);
    expect(res.closed).toBe(true);
  });

  test("limits.maxConnections: the connection over the limit gets 503 and is closed", async () => {
    const { port } = await start({ limits: { maxConnections: 2 } });
    const held = await Promise.all([0, 1].map(() => rawClient(port)));
    await waitFor(() => (rig().balancer as unknown as { port: number }).port > 0, "listener");
    const res = await rawExchange(port, GET);
    expect(res.statuses).toEqual([503]);
    expect(res.closed).toBe(true);
    for (const s of held) s.end();
  });
});

describe("the upstream pool", () => {
  test("idle upstream connections are reused, and closed after timeouts.upstreamIdle", async () => {
    const { port, backend } = await start({ timeouts: { upstreamIdle: "200ms" } });
    for (let i = 0; i < 3; i++) await rawExchange(port, GET, { until: (t) => countResponses(t) === 1 });
    expect(backend.connections()).toBe(1);
    await Bun.sleep(600);
    await rawExchange(port, GET, { until: (t) => countResponses(t) === 1 });
    expect(backend.connections()).toBe(2);
  });

  test("a reused connection the backend drops before answering: an idempotent request goes again on a fresh one, a POST does not", async () => {
    const { port, backend } = await start({ passive: { consecutiveFailures: 1 } });
    const get = "GET /one-per-connection HTTP/1.1\r\nHost: a\r\n\r\n";
    expect((await rawExchange(port, get, { until: (t) => countResponses(t) === 1 })).statuses).toEqual([200]);
    // The pooled connection is reused, the backend resets it, the GET is replayed fresh.
    expect((await rawExchange(port, get, { until: (t) => countResponses(t) === 1 })).statuses).toEqual([200]);
    expect(backend.connections()).toBe(2);
    expect(rig().balancer.pool.backends[0]!.state()).toBe("up");
    // A POST is not sent twice (RFC 9110 §9.2.2): the reset reaches the client as a 502.
    const post = "POST /one-per-connection HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx";
    expect((await rawExchange(port, post, { until: (t) => countResponses(t) === 1 })).statuses).toEqual([502]);
  });

  test("a client that leaves mid-request destroys its upstream connection; nothing leaks", async () => {
    const { port, backend } = await start();
    const client = await rawClient(port);
    client.send("GET /hang HTTP/1.1\r\nHost: a\r\n\r\n");
    await waitFor(() => backend.requests.length === 1, "the request to reach the backend");
    client.terminate();
    await waitFor(() => rig().balancer.pool.backends[0]!.inFlight === 0, "the in-flight slot to be released");
    // The next request does not get the abandoned connection (it would wait on /hang's answer).
    const res = await rawExchange(port, GET, { until: (t) => countResponses(t) === 1 });
    expect(res.statuses).toEqual([200]);
    expect(backend.connections()).toBe(2);
  });
});
