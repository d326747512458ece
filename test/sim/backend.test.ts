import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { startSimBackend, type ControlState, type EchoResponse, type SimBackend } from "../../sim/backend.ts";
import { NO_LATENCY } from "../../sim/latency.ts";
import { fetchErrorCode, patternSha256, REFUSED } from "./helpers.ts";
import { rawRequest } from "../helpers/raw.ts";
import { waitFor } from "../helpers/wait.ts";

// One backend for the endpoint tests, reset after each test.
let b: SimBackend;
// Backends a test starts for itself, stopped after it.
const extra: SimBackend[] = [];

async function own(opts: Parameters<typeof startSimBackend>[0]): Promise<SimBackend> {
  const backend = await startSimBackend(opts);
  extra.push(backend);
  return backend;
}

beforeAll(async () => {
  b = await startSimBackend({ name: "backend-1" });
});

afterEach(async () => {
  b.setLatency(NO_LATENCY);
  b.setFailRate(0);
  b.setFailStatus(500);
  b.setHealth("up");
  b.resetCount();
  await Promise.all(extra.splice(0).map((x) => x.stop()));
});

afterAll(async () => {
  await b.stop();
});

describe("startSimBackend", () => {
  test("listens on an ephemeral port of 127.0.0.1", () => {
    expect(b.name).toBe("backend-1");
    expect(b.port).toBeGreaterThan(0);
    expect(b.url).toBe(`http://127.0.0.1:${b.port}`);
    expect(b.running).toBe(true);
  });

  test("rejects bad options", async () => {
    await expect(startSimBackend({ name: "" })).rejects.toThrow(/needs a name/);
    await expect(startSimBackend({ name: "x", failRate: 2 })).rejects.toThrow(/invalid failRate 2: expected a number from 0 to 1/);
    await expect(startSimBackend({ name: "x", failStatus: 404 })).rejects.toThrow(/invalid failStatus 404: expected a status from 500 to 599/);
    await expect(startSimBackend({ name: "x", latency: { min: 5, max: 1 } })).rejects.toThrow(/minimum 5 is greater/);
    await expect(startSimBackend({ name: "x", health: "sideways" as never })).rejects.toThrow(/invalid health "sideways"/);
    await expect(startSimBackend({ name: "x", idleTimeout: 300 })).rejects.toThrow(/invalid idleTimeout 300/);
  });

  test("setters validate", () => {
    expect(() => b.setFailRate(-0.1)).toThrow(/invalid failRate -0.1/);
    expect(() => b.setFailRate(Number.NaN)).toThrow(/invalid failRate NaN/);
    expect(() => b.setFailStatus(503.5)).toThrow(/invalid failStatus 503.5/);
    expect(() => b.setLatency({ min: 1.5, max: 2 })).toThrow(/not a whole/);
    expect(() => b.setHealth("nope" as never)).toThrow(/expected "up", "down" or "hang"/);
  });
});

describe("/", () => {
  test("answers the name as text", async () => {
    const res = await fetch(b.url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain");
    expect(await res.text()).toBe("backend-1\n");
  });

  test("answers JSON for Accept: application/json or ?format=json", async () => {
    const viaAccept = await fetch(`${b.url}/?x=1`, { headers: { Accept: "text/html, application/json" } });
    expect(await viaAccept.json()).toEqual({ name: "backend-1", port: b.port, path: "/?x=1", method: "GET" });
    const viaQuery = await fetch(`${b.url}/?format=json`, { method: "DELETE" });
    expect(await viaQuery.json()).toEqual({ name: "backend-1", port: b.port, path: "/?format=json", method: "DELETE" });
  });

  test("anything unknown is 404", async () => {
    for (const path of ["/nope", "/delay", "/delay/1/2", "/stats/x", "/echofoo"]) {
      const res = await fetch(b.url + path);
      expect(res.status).toBe(404);
      expect(await res.text()).toBe("not found");
    }
    expect((await rawRequest(b.port, "GET //echo HTTP/1.1\r\nHost: x")).status).toBe(404);
  });
});

describe("/health", () => {
  test("up: 200 ok, down: 503 unhealthy", async () => {
    let res = await fetch(`${b.url}/health`);
    expect([res.status, await res.text()]).toEqual([200, "ok"]);
    b.setHealth("down");
    res = await fetch(`${b.url}/health`);
    expect([res.status, await res.text()]).toEqual([503, "unhealthy"]);
  });

  test("hang: never answers; the client's timeout ends it and the backend lets go", async () => {
    b.setHealth("hang");
    const err = await fetch(`${b.url}/health`, { signal: AbortSignal.timeout(150) }).catch((e: Error) => e);
    expect((err as Error).name).toBe("TimeoutError");
    await waitFor(() => b.active === 0, "the hanging request to end");
  });

  test("hang: stop() still completes and the client sees the connection fail", async () => {
    const h = await own({ name: "hangs", health: "hang" });
    const pending = fetchErrorCode(`${h.url}/health`);
    await waitFor(() => h.active === 1, "the request to reach the backend");
    await h.stop();
    expect(["ECONNRESET", ...REFUSED]).toContain(await pending);
    expect(h.active).toBe(0);
  });

  test("is neither delayed, failed nor counted", async () => {
    b.setLatency({ min: 5000, max: 5000 });
    b.setFailRate(1);
    const res = await fetch(`${b.url}/health`, { signal: AbortSignal.timeout(2000) });
    expect(res.status).toBe(200);
    expect(b.requests).toBe(0);
  });
});

describe("/stats", () => {
  test("reports name, uptime, memory and requests", async () => {
    await fetch(`${b.url}/echo`);
    await fetch(`${b.url}/nope`);
    const stats = (await (await fetch(`${b.url}/stats`)).json()) as Record<string, unknown>;
    expect(stats).toEqual({
      name: "backend-1",
      uptime: expect.stringMatching(/^\d{2,}h:\d{2}m:\d{2}s$/),
      uptimeSeconds: expect.any(Number),
      memory_usage: expect.stringMatching(/^\d+\.\d MB$/),
      memoryUsage: expect.any(Number),
      requests: 2,
    });
    expect(stats.memoryUsage as number).toBeGreaterThan(0);
  });
});

describe("/echo", () => {
  test("describes the request: method, path, query, headers, body", async () => {
    const res = await fetch(`${b.url}/echo/a/b?x=1&y=2&x=3&empty=`, {
      method: "POST",
      headers: { "X-Test": "yes", "Content-Type": "text/plain" },
      body: "hello",
    });
    const echo = (await res.json()) as EchoResponse;
    expect(echo.method).toBe("POST");
    expect(echo.path).toBe("/echo/a/b?x=1&y=2&x=3&empty=");
    expect(echo.query).toEqual({ x: ["1", "3"], y: "2", empty: "" });
    expect(echo.headers).toContainEqual(["x-test", "yes"]);
    expect(echo.headers).toContainEqual(["host", `127.0.0.1:${b.port}`]);
    expect(echo.bodyLength).toBe(5);
    expect(echo.bodySha256).toBe(new Bun.CryptoHasher("sha256").update("hello").digest("hex"));
  });

  test("hashes a large streamed body", async () => {
    const chunk = new Uint8Array(256 * 1024).fill(7);
    const chunks = 16; // 4 MiB, sent chunked
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(chunk);
        if (++sent === chunks) controller.close();
      },
    });
    const res = await fetch(`${b.url}/echo`, { method: "PUT", body, duplex: "half" } as RequestInit);
    const echo = (await res.json()) as EchoResponse;
    const expected = new Bun.CryptoHasher("sha256");
    for (let i = 0; i < chunks; i++) expected.update(chunk);
    expect(echo.bodyLength).toBe(chunk.length * chunks);
    expect(echo.bodySha256).toBe(expected.digest("hex"));
  });

  test("keeps %2F, its case, and repeated slashes in the path as sent", async () => {
    const res = await rawRequest(b.port, "GET /echo/a%2Fb%2f//c?q=%2F&r=a+b HTTP/1.1\r\nHost: x");
    expect((JSON.parse(res.body) as EchoResponse).path).toBe("/echo/a%2Fb%2f//c?q=%2F&r=a+b");
  });

  // These pin what Bun 1.4.5 normalizes before a handler sees the URL (see requestTarget()).
  test.each([
    ["/echo/x/../y", "/echo/y"],
    ["/echo/x/%2e%2e/y", "/echo/y"],
    ["/echo/./z", "/echo/z"],
    ["http://elsewhere/echo/abs?q=1", "/echo/abs?q=1"],
  ])("Bun normalizes %p to %p", async (target, seen) => {
    const res = await rawRequest(b.port, `GET ${target} HTTP/1.1\r\nHost: x`);
    expect((JSON.parse(res.body) as EchoResponse).path).toBe(seen);
  });

  test("a request without Host (HTTP/1.0) still gets its path", async () => {
    const res = await rawRequest(b.port, "GET /echo/old?x=1 HTTP/1.0");
    expect((JSON.parse(res.body) as EchoResponse).path).toBe("/echo/old?x=1");
  });

  test("repeated request headers arrive joined (Bun exposes no raw header list)", async () => {
    const res = await rawRequest(b.port, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Rep: 1\r\nX-Rep: 2\r\nCookie: a=1\r\nCookie: b=2");
    const { headers } = JSON.parse(res.body) as EchoResponse;
    expect(headers).toContainEqual(["x-rep", "1, 2"]);
    expect(headers).toContainEqual(["cookie", "a=1; b=2"]);
  });
});

describe("/delay/:ms", () => {
  test("answers after the delay", async () => {
    const started = performance.now();
    const res = await fetch(`${b.url}/delay/60`);
    expect(await res.text()).toBe("delayed 60ms");
    // A lower bound only: timers may run late, never (more than a tick) early.
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
  });

  test("stops waiting when the client goes away", async () => {
    const abort = new AbortController();
    const pending = fetch(`${b.url}/delay/60000`, { signal: abort.signal }).catch((e: Error) => e.name);
    await waitFor(() => b.active === 1, "the request to reach the backend");
    abort.abort();
    expect(await pending).toBe("AbortError");
    await waitFor(() => b.active === 0, "the backend to stop waiting");
  });

  test.each(["abc", "-1", "1.5", "3600001"])("rejects %p with 400", async (ms) => {
    const res = await fetch(`${b.url}/delay/${ms}`);
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/^invalid delay ".*": expected a whole number from 0 to 3600000$/);
  });
});

describe("/status/:code", () => {
  test.each([200, 201, 302, 404, 418, 500, 503, 599])("%p with body", async (code) => {
    const res = await fetch(`${b.url}/status/${code}`, { redirect: "manual" });
    expect(res.status).toBe(code);
    expect(await res.text()).toBe(`status ${code}`);
  });

  test.each([204, 205, 304])("%p without body", async (code) => {
    const res = await rawRequest(b.port, `GET /status/${code} HTTP/1.1\r\nHost: x`);
    expect(res.status).toBe(code);
    expect(res.body).toBe("");
  });

  test.each(["99", "600", "abc", "100", "101", "199"])("%p is 400", async (code) => {
    const res = await fetch(`${b.url}/status/${code}`);
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/expected (a whole number from 100 to 599|200 to 599)/);
  });
});

describe("/bytes/:n", () => {
  test.each([0, 1, 1000, 70_000])("%p bytes with Content-Length", async (n) => {
    const res = await fetch(`${b.url}/bytes/${n}`);
    expect(res.headers.get("content-length")).toBe(String(n));
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const body = new Uint8Array(await res.arrayBuffer());
    expect(body.length).toBe(n);
    expect(new Bun.CryptoHasher("sha256").update(body).digest("hex")).toBe(patternSha256(n));
  });

  test("a large body is streamed (chunked: Bun drops Content-Length on streams)", async () => {
    const n = 20 * 1024 * 1024 + 123;
    const res = await fetch(`${b.url}/bytes/${n}`);
    expect(res.headers.get("content-length")).toBeNull();
    const hasher = new Bun.CryptoHasher("sha256");
    let length = 0;
    for await (const chunk of res.body!) {
      hasher.update(chunk);
      length += chunk.length;
    }
    expect(length).toBe(n);
    expect(hasher.digest("hex")).toBe(patternSha256(n));
  });

  test("more than 1 GiB is 400", async () => {
    expect((await fetch(`${b.url}/bytes/${1024 ** 3 + 1}`)).status).toBe(400);
  });
});

describe("/stream and /sse", () => {
  test("/stream sends chunk i every interval, without Content-Length", async () => {
    const res = await fetch(`${b.url}/stream?chunks=3&interval=10`);
    expect(res.headers.get("content-length")).toBeNull();
    expect(await res.text()).toBe("chunk 1\nchunk 2\nchunk 3\n");
  });

  test("/stream delivers the first chunk before the next is due", async () => {
    const res = await fetch(`${b.url}/stream?chunks=2&interval=60000`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe("chunk 1\n");
    await reader.cancel();
  });

  test("/stream with defaults and with zero chunks", async () => {
    const res = await fetch(`${b.url}/stream?interval=0`);
    expect((await res.text()).split("\n")).toHaveLength(6);
    expect(await (await fetch(`${b.url}/stream?chunks=0`)).text()).toBe("");
  });

  test("/sse sends count events then ends", async () => {
    const res = await fetch(`${b.url}/sse?count=3&interval=5`);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    const events = (await res.text()).split("\n\n").filter(Boolean);
    expect(events).toEqual([1, 2, 3].map((i) => `id: ${i}\ndata: {"i":${i},"name":"backend-1"}`));
  });

  test.each(["chunks=x", "chunks=10001", "interval=-1", "interval=60001"])("/stream?%s is 400", async (query) => {
    expect((await fetch(`${b.url}/stream?${query}`)).status).toBe(400);
  });
});

describe("/gzip, /redirect, /cookies", () => {
  test("/gzip arrives compressed when the client does not decompress", async () => {
    const res = await fetch(`${b.url}/gzip`, { decompress: false } as RequestInit);
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(res.headers.get("content-type")).toStartWith("text/plain");
    const raw = new Uint8Array(await res.arrayBuffer());
    expect(res.headers.get("content-length")).toBe(String(raw.length));
    const text = new TextDecoder().decode(Bun.gunzipSync(raw));
    expect(text).toStartWith("line 1 of a gzip-compressed body from backend-1\n");
    expect(text.length).toBeGreaterThan(raw.length);
  });

  test("/redirect answers 302 with Location", async () => {
    let res = await fetch(`${b.url}/redirect?to=/somewhere?a=1`, { redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("/somewhere?a=1");
    res = await fetch(`${b.url}/redirect`, { redirect: "manual" });
    expect(res.headers.get("location")).toBe("/");
    res = await fetch(`${b.url}/redirect?to=${encodeURIComponent("/x\r\nX-Injected: 1")}`, { redirect: "manual" });
    expect(res.status).toBe(400);
  });

  test("/cookies sets n separate Set-Cookie headers", async () => {
    const res = await fetch(`${b.url}/cookies?n=3`);
    expect(res.headers.getSetCookie()).toEqual(["c1=1; Path=/", "c2=2; Path=/", "c3=3; Path=/"]);
    expect((await fetch(`${b.url}/cookies`)).headers.getSetCookie()).toHaveLength(3);
    expect((await fetch(`${b.url}/cookies?n=101`)).status).toBe(400);
  });
});

describe("/response-headers", () => {
  test("sends each pair; hop-by-hop headers go out as given (checked on the wire)", async () => {
    const query = "Connection=x-secret&X-Secret=1&Keep-Alive=timeout%3D5&X-Dup=a&X-Dup=b&Set-Cookie=a%3D1&Set-Cookie=b%3D2";
    const res = await rawRequest(b.port, `GET /response-headers?${query} HTTP/1.1\r\nHost: x`);
    expect(res.status).toBe(200);
    const lines = res.headers.map(([name, value]) => `${name.toLowerCase()}: ${value}`);
    expect(lines).toContain("connection: x-secret");
    expect(lines).toContain("x-secret: 1");
    expect(lines).toContain("keep-alive: timeout=5");
    // Headers joins a repeated name into one line, except Set-Cookie.
    expect(lines).toContain("x-dup: a, b");
    expect(lines.filter((l) => l.startsWith("set-cookie:"))).toEqual(["set-cookie: a=1", "set-cookie: b=2"]);
    expect(JSON.parse(res.body)).toContainEqual(["X-Secret", "1"]);
  });

  test("Bun frames the body itself: Transfer-Encoding dropped, Content-Length corrected", async () => {
    const res = await rawRequest(b.port, "GET /response-headers?Transfer-Encoding=chunked&Content-Length=999 HTTP/1.1\r\nHost: x");
    const names = res.headers.map(([name]) => name.toLowerCase());
    expect(names).not.toContain("transfer-encoding");
    const contentLength = res.headers.filter(([name]) => name.toLowerCase() === "content-length");
    expect(contentLength).toEqual([[expect.any(String), String(Buffer.byteLength(res.body))]]);
  });

  test("an invalid header is 400", async () => {
    expect((await fetch(`${b.url}/response-headers?${encodeURIComponent("Bad Name")}=1`)).status).toBe(400);
    expect((await fetch(`${b.url}/response-headers?X=${encodeURIComponent("a\nb")}`)).status).toBe(400);
  });
});

describe("failRate and latency", () => {
  test("failRate 1 fails everything but /health, /stats and /_control", async () => {
    b.setFailRate(1);
    for (const path of ["/", "/echo", "/nope"]) {
      const res = await fetch(b.url + path);
      expect([res.status, await res.text()]).toEqual([500, "simulated failure"]);
    }
    for (const path of ["/health", "/stats", "/_control"]) expect((await fetch(b.url + path)).status).toBe(200);
    expect(b.requests).toBe(3);
  });

  test("failStatus sets the status of those failures: 503 to everything, /health still 200", async () => {
    const own503 = await own({ name: "overloaded", failRate: 1, failStatus: 503 });
    for (const path of ["/", "/echo", "/status/200"]) {
      const res = await fetch(own503.url + path);
      expect([res.status, await res.text()]).toEqual([503, "simulated failure"]);
    }
    expect((await fetch(`${own503.url}/health`)).status).toBe(200);
    b.setFailRate(1);
    b.setFailStatus(502);
    expect((await fetch(b.url)).status).toBe(502);
  });

  test("failRate 0.5 gives both answers", async () => {
    b.setFailRate(0.5);
    const statuses = new Set<number>();
    for (let i = 0; i < 100 && statuses.size < 2; i++) statuses.add((await fetch(b.url)).status);
    expect([...statuses].sort()).toEqual([200, 500]);
  });

  test("latency delays the answer", async () => {
    b.setLatency({ min: 60, max: 80 });
    const started = performance.now();
    expect(await (await fetch(b.url)).text()).toBe("backend-1\n");
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
  });

  test("requests counts everything but /health, /stats, /_control; resetCount clears it", async () => {
    await Promise.all(["/", "/echo/x", "/status/500", "/nope", "/health", "/stats", "/_control"].map((p) => fetch(b.url + p)));
    expect(b.requests).toBe(4);
    b.resetCount();
    expect(b.requests).toBe(0);
  });
});

describe("/_control", () => {
  const post = (body: string, method = "POST") => fetch(`${b.url}/_control`, { method, body });

  test("GET returns the state", async () => {
    await fetch(b.url);
    const state = (await (await fetch(`${b.url}/_control`)).json()) as ControlState;
    expect(state).toEqual({
      name: "backend-1",
      port: b.port,
      latency: { min: 0, max: 0 },
      failRate: 0,
      failStatus: 500,
      health: "up",
      requests: 1,
      active: 0,
    });
  });

  test("POST and PUT change latency, failRate and health", async () => {
    let res = await post(JSON.stringify({ latency: "1-3", failRate: 0.25, health: "down" }));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ latency: { min: 1, max: 3 }, failRate: 0.25, health: "down" });
    expect((await fetch(`${b.url}/health`)).status).toBe(503);

    res = await post(JSON.stringify({ failStatus: 503 }));
    expect(await res.json()).toMatchObject({ failRate: 0.25, failStatus: 503 });
    res = await post(JSON.stringify({ latency: 2 }), "PUT");
    expect(await res.json()).toMatchObject({ latency: { min: 2, max: 2 }, failRate: 0.25, health: "down" });
    res = await post(JSON.stringify({ latency: { min: 0, max: 0 }, failRate: 0, health: "up" }));
    expect(await res.json()).toMatchObject({ latency: { min: 0, max: 0 }, failRate: 0, health: "up" });
  });

  test.each([
    ["not json", /control body must be JSON/],
    ["[1]", /must be a JSON object/],
    ["null", /must be a JSON object/],
    ['{"latency": "5-1"}', /invalid latency "5-1": minimum 5 is greater than maximum 1/],
    ['{"latency": -3}', /invalid latency -3/],
    ['{"failRate": 1.5}', /invalid failRate 1.5: expected a number from 0 to 1/],
    ['{"failRate": "0.5"}', /invalid failRate "0.5"/],
    ['{"failStatus": 200}', /invalid failStatus 200: expected a status from 500 to 599/],
    ['{"health": "sideways"}', /invalid health "sideways": expected "up", "down" or "hang"/],
    ['{"weight": 3}', /unknown control field "weight": expected latency, failRate, failStatus or health/],
  ])("%s is 400", async (body, message) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(message);
  });

  test("a bad request changes nothing", async () => {
    expect((await post('{"failRate": 0.5, "health": "nope"}')).status).toBe(400);
    expect(await (await fetch(`${b.url}/_control`)).json()).toMatchObject({ failRate: 0, health: "up" });
  });

  test("other methods are 405", async () => {
    const res = await fetch(`${b.url}/_control`, { method: "DELETE" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD, POST, PUT");
  });
});

describe("stop() and start()", () => {
  test("stop() refuses connections; start() listens on the same port again", async () => {
    const s = await own({ name: "phoenix" });
    const { port, url } = s;
    await s.stop();
    expect(s.running).toBe(false);
    expect(REFUSED).toContain(await fetchErrorCode(url));
    await s.stop(); // stopping twice is harmless

    await s.start();
    expect(s.running).toBe(true);
    expect(s.port).toBe(port);
    expect(await (await fetch(url)).text()).toBe("phoenix\n");
  });

  test("stop() resets requests in flight", async () => {
    const s = await own({ name: "busy" });
    const pending = fetchErrorCode(`${s.url}/delay/60000`);
    await waitFor(() => s.active === 1, "the request to reach the backend");
    await s.stop();
    expect(["ECONNRESET", ...REFUSED]).toContain(await pending);
    expect(s.active).toBe(0);
  });

  test("start() rejects if the port was taken meanwhile", async () => {
    const s = await own({ name: "evicted" });
    await s.stop();
    const squatter = Bun.serve({ hostname: "127.0.0.1", port: s.port, fetch: () => new Response("squatter") });
    try {
      await expect(s.start()).rejects.toThrow(/in use/);
    } finally {
      await squatter.stop(true);
    }
  });
});

// Bun counts the time a handler waits as idle and closes the connection after idleTimeout
// (checked in 4 s steps). Waiting on purpose must not be cut: run the waits past a 1 s
// idleTimeout. The only test here that waits out a fixed time, because the time is the point.
test("deliberate waits outlive a short idleTimeout", async () => {
  const ms = 6500;
  const waits = await own({ name: "waits", idleTimeout: 1 });
  const slow = await own({ name: "slow", idleTimeout: 1, latency: { min: ms, max: ms } });
  const hangs = await own({ name: "hangs", idleTimeout: 1, health: "hang" });
  const abortHang = new AbortController();
  const hanging = fetch(`${hangs.url}/health`, { signal: abortHang.signal }).catch((e: Error) => e.name);

  const [delayed, streamed, sse, latency] = await Promise.all([
    fetch(`${waits.url}/delay/${ms}`).then((r) => r.text()),
    fetch(`${waits.url}/stream?chunks=2&interval=${ms}`).then((r) => r.text()),
    fetch(`${waits.url}/sse?count=2&interval=${ms}`).then((r) => r.text()),
    fetch(slow.url).then((r) => r.text()),
  ]);
  expect(delayed).toBe(`delayed ${ms}ms`);
  expect(streamed).toBe("chunk 1\nchunk 2\n");
  expect(sse.split("\n\n").filter(Boolean)).toHaveLength(2);
  expect(latency).toBe("slow\n");
  // Each was served once: a connection cut and silently retried by fetch would show here.
  expect(waits.requests).toBe(3);
  expect(slow.requests).toBe(1);

  // The hanging health check is still held after the same time.
  expect(hangs.active).toBe(1);
  abortHang.abort();
  expect(await hanging).toBe("AbortError");
  await waitFor(() => hangs.active === 0, "the hanging request to end");
}, 15_000);
