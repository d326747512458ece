/**
 * HTTP/2 to backends on the socket engine (src/engine/h2/): h2c and h2 over TLS through the
 * rig, with real node:http2 servers as backends. These run on the socket engine whatever
 * SWITCHYARD_TEST_ENGINE says: the fetch engine refuses h2/h2c (config.test below).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../../helpers/balancer.ts";
import { rawClient } from "../../helpers/raw.ts";
import { validateConfig } from "../../../src/config/load.ts";
import { makePki, type Pki } from "../../helpers/pki.ts";
import { waitFor } from "../../helpers/wait.ts";
import { echo, startH2c, startH2Tls, startRefusing, type H2Backend } from "./backends.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(backends: { name: string; url: string; protocol?: string }[], config: Record<string, unknown> = {}): Promise<TestRig> {
  const r = await startRig(0, { engine: "socket", protocol: "h2c", backends, ...config });
  cleanups.push(() => r.stop());
  return r;
}

async function h2c(name: string, ...rest: Parameters<typeof startH2c> extends [string, ...infer R] ? R : never): Promise<H2Backend & { kill(): void }> {
  const b = await startH2c(name, ...rest);
  cleanups.push(() => b.stop());
  return b;
}

describe("h2c backends", () => {
  test("GET and a POST of a few MB both ways arrive intact", async () => {
    const big = crypto.getRandomValues(new Uint8Array(3 * 1024 * 1024 + 17));
    const sha = new Bun.CryptoHasher("sha256").update(big).digest("hex");
    const b = await h2c("a", (stream, headers) => {
      if (headers[":path"] === "/download") {
        stream.respond({ ":status": 200 });
        stream.end(Buffer.from(big));
        return;
      }
      echo(stream, headers, "a");
    });
    const r = await rig([{ name: "a", url: b.url }]);
    const get = await fetch(`${r.balancer.url}/hello?x=1`, { headers: { host: "front.example" } });
    expect(get.status).toBe(200);
    const got = await get.json();
    expect(got).toMatchObject({ backend: "a", method: "GET", path: "/hello?x=1", authority: "front.example", te: "trailers", length: 0 });
    expect(got.host).toBeUndefined();
    // The response came over HTTP/2: Via says so (RFC 9110 §7.6.3).
    expect(get.headers.get("via")).toBe("2 switchyard");

    const post = await fetch(`${r.balancer.url}/upload`, { method: "POST", body: big });
    expect(post.status).toBe(200);
    expect(await post.json()).toMatchObject({ method: "POST", length: big.length, sha });

    const down = await fetch(`${r.balancer.url}/download`);
    expect(down.status).toBe(200);
    const bytes = new Uint8Array(await down.arrayBuffer());
    expect(bytes.length).toBe(big.length);
    expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(sha);
  });
});

describe("request bodies under flow control", () => {
  test("a backend that stops taking the body fails the try after timeouts.send", async () => {
    // Never reads: the stream's flow-control window closes, and the proxy's buffer fills.
    const b = await h2c("a", () => {});
    const r = await rig([{ name: "a", url: b.url }], { timeouts: { send: "300ms" } });
    const res = await fetch(`${r.balancer.url}/up`, { method: "POST", body: new Uint8Array(8 * 1024 * 1024) });
    expect(res.status).toBe(504);
    // The send timer's words, not the per-try timeout's.
    expect(await res.text()).toContain("took no request body for 300ms");
  });
});

describe("timeouts", () => {
  test("timeouts.connect bounds a backend that accepts and never sends its SETTINGS", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => silent.stop(true));
    const r = await rig([{ name: "silent", url: `http://127.0.0.1:${silent.port}` }], { timeouts: { connect: "300ms" } });
    const res = await fetch(`${r.balancer.url}/`);
    expect(res.status).toBe(502);
    expect(await res.text()).toContain("ETIMEDOUT_CONNECT");
  });

  test("retry.perTryTimeout gives up a stream with no answer, and the backend sees it cancelled", async () => {
    let closed = 0;
    const b = await h2c("a", (stream) => stream.on("close", () => closed++));
    const r = await rig([{ name: "a", url: b.url }], { retry: { perTryTimeout: "300ms", attempts: 1 } });
    const res = await fetch(`${r.balancer.url}/slow`);
    expect(res.status).toBe(504);
    await waitFor(() => closed === 1, "the backend's stream closed");
    // The session stays for the next request.
    expect(b.open()).toBe(1);
  });
});

describe("h2c backends, balancing", () => {
  test("30 requests on one client keep-alive connection spread round-robin over 3 backends", async () => {
    const bs = await Promise.all(["a", "b", "c"].map((n) => h2c(n)));
    const r = await rig(bs.map((b, i) => ({ name: "abc"[i]!, url: b.url })), { strategy: "round-robin" });
    const c = await rawClient(r.balancer.port);
    cleanups.push(() => c.terminate());
    for (let i = 1; i <= 30; i++) {
      c.send(`GET /n${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
      // Chunked: the echo gives no length.
      await c.waitFor((t) => t.split("HTTP/1.1 200").length - 1 === i && t.endsWith("}\r\n0\r\n\r\n"), `response ${i}`);
    }
    expect(c.closed).toBe(false);
    expect(bs.map((b) => b.paths.length)).toEqual([10, 10, 10]);
    // Each backend's requests went over its own few HTTP/2 connections, not one per request.
    for (const b of bs) expect(b.accepted()).toBeLessThanOrEqual(4);
  });

  test("sessions stay within limits.h2SessionsPerBackend, streams within min(peer, h2StreamsPerSession), under 200 concurrent requests", async () => {
    let open = 0;
    let peak = 0;
    const b = await h2c(
      "a",
      (stream) => {
        peak = Math.max(peak, ++open);
        stream.on("close", () => open--);
        setTimeout(() => {
          if (stream.destroyed) return;
          stream.respond({ ":status": 200 });
          stream.end("ok");
        }, 5);
      },
      // The peer's own bound is below ours: it wins.
      { maxConcurrentStreams: 8 },
    );
    const r = await rig([{ name: "a", url: b.url }], { limits: { h2SessionsPerBackend: 2, h2StreamsPerSession: 50 }, retry: { timeout: "20s", perTryTimeout: "20s" } });
    const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => fetch(`${r.balancer.url}/r${i}`).then(async (res) => (await res.text(), res.status))));
    expect(statuses.filter((s) => s === 200).length).toBe(200);
    expect(b.accepted()).toBeLessThanOrEqual(2);
    expect(peak).toBeLessThanOrEqual(16);
    expect(b.paths.length).toBe(200);
  });
});

describe("refused streams are retried elsewhere, whatever the method", () => {
  for (const how of ["rst", "goaway"] as const) {
    test(how === "rst" ? "RST_STREAM REFUSED_STREAM to a POST" : "GOAWAY with last-stream-id 0", async () => {
      const bad = await startRefusing(how);
      cleanups.push(() => bad.stop());
      const good = await h2c("good");
      const r = await rig([{ name: "bad", url: bad.url }, { name: "good", url: good.url }], { strategy: "round-robin", passive: { consecutiveFailures: 0 } });
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${r.balancer.url}/p${i}`, { method: "POST", body: "payload" });
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ backend: "good", method: "POST", length: 7 });
      }
      // Round-robin sent some first tries to the refusing backend: each went on to the other.
      expect(bad.paths.length).toBeGreaterThan(0);
      expect(good.paths.length).toBe(4);
      const badBackend = r.balancer.pool.backends.find((x) => x.name === "bad")!;
      expect(badBackend.stats.proxyErrors).toBe(bad.paths.length);
      // A session that had a GOAWAY takes no new stream: each later try opened a new one.
      if (how === "goaway") expect(bad.accepted()).toBe(bad.paths.length);
    });
  }

  test("GOAWAY mid-flight: the stream below its last id finishes, the one above goes elsewhere", async () => {
    const bad = await startRefusing("goaway-after-first");
    cleanups.push(() => bad.stop());
    const good = await h2c("good");
    // The standby tier takes what the first cannot: both POSTs go to `bad` first, on one session.
    const r = await rig([{ name: "bad", url: bad.url }, { name: "good", url: good.url, priority: 1 } as never], { passive: { consecutiveFailures: 0 } });
    const [one, two] = await Promise.all([0, 1].map((i) => fetch(`${r.balancer.url}/p${i}`, { method: "POST", body: "payload" }).then(async (res) => ({ status: res.status, body: await res.text() }))));
    expect(bad.paths).toEqual(["stream 1", "stream 3"]);
    expect([one!.status, two!.status]).toEqual([200, 200]);
    const bodies = [one!.body, two!.body].sort();
    expect(bodies[0]).toBe("first");
    expect(JSON.parse(bodies[1]!)).toMatchObject({ backend: "good", method: "POST", length: 7 });
  });

  test("a POST reset otherwise (CANCEL) is not retried", async () => {
    const bad = await h2c("bad", (stream) => stream.close(8));
    const good = await h2c("good");
    const r = await rig([{ name: "bad", url: bad.url }, { name: "good", url: good.url }], { strategy: "round-robin", passive: { consecutiveFailures: 0 } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${r.balancer.url}/p${i}`, { method: "POST", body: "x" })).status);
    expect(statuses.filter((s) => s === 502).length).toBe(bad.paths.length);
    expect(good.paths.length + bad.paths.length).toBe(4);
  });
});

describe("a backend that dies mid-response", () => {
  test("the client's body is cut, and passive health counts it", async () => {
    const b = await h2c("a", (stream) => {
      stream.respond({ ":status": 200 });
      stream.write(Buffer.alloc(64 * 1024, 97));
    });
    const r = await rig([{ name: "a", url: b.url }]);
    const c = await rawClient(r.balancer.port);
    cleanups.push(() => c.terminate());
    c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    await c.waitFor((t) => t.includes("HTTP/1.1 200") && t.length > 32 * 1024, "the head and some of the body");
    b.kill();
    await c.waitClosed();
    // Chunked (no length from the backend): the last chunk never came.
    expect(c.text()).toContain("Transfer-Encoding: chunked");
    expect(c.text().endsWith("\r\n0\r\n\r\n")).toBe(false);
    const backend = r.balancer.pool.backends[0]!;
    await waitFor(() => backend.stats.proxyErrors === 1, "the backend's proxy error");
    expect(backend.consecutiveFailures).toBe(1);
    await waitFor(() => r.access.some((l) => l.includes("SY_UPSTREAM_TRUNCATED")), "the truncation in the access log");
  });
});

describe("a response whose DATA does not add up to its content-length (RFC 9113 §8.1.1)", () => {
  for (const [how, sent] of [["more", 24], ["less", 2]] as const) {
    test(`${how} than declared: the HTTP/1.1 client's connection is cut, never handed bytes of another answer`, async () => {
      const b = await h2c("a", (stream) => {
        stream.respond({ ":status": 200, "content-length": "5" });
        stream.end(Buffer.alloc(sent, 97));
      });
      const r = await rig([{ name: "a", url: b.url }]);
      const c = await rawClient(r.balancer.port);
      cleanups.push(() => c.terminate());
      c.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
      await c.waitClosed();
      const text = c.text();
      const body = text.slice(text.indexOf("\r\n\r\n") + 4);
      // Whatever reached the client before the cut, never past the declared 5 bytes.
      expect(body.length).toBeLessThan(5 + (how === "more" ? 1 : 0));
      await waitFor(() => r.access.some((l) => l.includes("SY_UPSTREAM_TRUNCATED") || l.includes("SY_UPSTREAM_FAILED")), "the failure in the access log");
    });
  }

  test("a content-length that is not a number fails the try", async () => {
    const b = await h2c("a", (stream) => {
      stream.respond({ ":status": 200, "content-length": "5, 5" });
      stream.end("hello");
    });
    const r = await rig([{ name: "a", url: b.url }], { retry: { attempts: 1 } });
    const res = await fetch(`${r.balancer.url}/x`);
    await res.text();
    expect(res.status).toBe(502);
  });
});

describe("response trailers", () => {
  test("reach an HTTP/1.1 client that sent TE: trailers, in the last chunk; others get none", async () => {
    const b = await h2c("a", (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "fine", "content-length": "99" }));
      stream.end("body");
    });
    const r = await rig([{ name: "a", url: b.url }]);
    const c = await rawClient(r.balancer.port);
    cleanups.push(() => c.terminate());
    c.send("GET /t HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n");
    await c.waitFor((t) => t.endsWith("\r\n\r\n") && t.includes("\r\n0\r\n"), "the last chunk");
    // Framing fields are never trailers (RFC 9110 §6.5.1): content-length is dropped.
    expect(c.text().endsWith("\r\n4\r\nbody\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n")).toBe(true);
    c.send("GET /t HTTP/1.1\r\nHost: x\r\n\r\n");
    await c.waitFor((t) => t.split("HTTP/1.1 200").length === 3 && t.endsWith("\r\n0\r\n\r\n"), "the second answer");
    expect(c.text().endsWith("4\r\nbody\r\n0\r\n\r\n")).toBe(true);
  });
});

describe("session lifetime", () => {
  test("an idle session is closed after timeouts.upstreamIdle", async () => {
    const b = await h2c("a");
    const r = await rig([{ name: "a", url: b.url }], { timeouts: { upstreamIdle: "200ms" } });
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
    expect(b.accepted()).toBe(1);
    await waitFor(() => b.open() === 0, "the idle session closed", 5000);
    // The next request opens a new one.
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
    expect(b.accepted()).toBe(2);
  });

  test("a backend a reload removes has its sessions closed", async () => {
    const a = await h2c("a");
    const b = await h2c("b");
    const config = (backends: { name: string; url: string }[]) => validateConfig({ engine: "socket", listen: { host: "127.0.0.1", port: r.balancer.port }, admin: false, healthCheck: false, protocol: "h2c", backends });
    const r = await rig([{ name: "a", url: a.url }, { name: "b", url: b.url }], { strategy: "round-robin" });
    for (let i = 0; i < 4; i++) expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
    expect(a.open()).toBe(1);
    expect(b.open()).toBe(1);
    await r.balancer.apply(config([{ name: "a", url: a.url }]));
    await waitFor(() => b.open() === 0, "the removed backend's session closed", 5000);
    expect(a.open()).toBe(1);
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
  });
});

describe("h2 over TLS", () => {
  let pki: Pki;
  test("a request goes over TLS with ALPN h2", async () => {
    pki = await makePki();
    cleanups.push(() => pki.remove());
    const cert = await pki.issue("backend", ["localhost"]);
    const b = await startH2Tls("tls", cert);
    cleanups.push(() => b.stop());
    const r = await rig([{ name: "tls", url: b.url, tls: { ca: pki.ca } } as never], { protocol: "h2" });
    const res = await fetch(`${r.balancer.url}/secure`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ backend: "tls", path: "/secure" });
  });

  test("a TLS backend that does not select h2 fails the try, saying so", async () => {
    pki = await makePki();
    cleanups.push(() => pki.remove());
    const cert = await pki.issue("backend", ["localhost"]);
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: Bun.file(cert.cert), key: Bun.file(cert.key) }, fetch: () => new Response("http/1.1 only") });
    cleanups.push(() => server.stop(true));
    const r = await rig([{ name: "h1", url: `https://localhost:${server.port}`, tls: { ca: pki.ca } } as never], { protocol: "h2" });
    const res = await fetch(`${r.balancer.url}/x`);
    expect(res.status).toBe(502);
    expect(await res.text()).toContain("ERR_H2_NOT_NEGOTIATED");
  });
});

describe("health checks speak HTTP/2 to h2c backends", () => {
  test("an h2c backend is marked down when its check fails and up when it passes", async () => {
    let healthy = true;
    const b = await h2c("a", (stream, headers) => {
      if (headers[":path"] === "/health") {
        stream.respond({ ":status": healthy ? 200 : 503 });
        stream.end();
        return;
      }
      echo(stream, headers, "a");
    });
    const r = await rig([{ name: "a", url: b.url }], { healthCheck: { type: "http", path: "/health", interval: "100ms", timeout: "500ms", rise: 1, fall: 1 } });
    const backend = r.balancer.pool.backends[0]!;
    expect(backend.isHealthy).toBe(true);
    healthy = false;
    await waitFor(() => !backend.isHealthy, "the backend marked down", 5000);
    healthy = true;
    await waitFor(() => backend.isHealthy, "the backend marked up again", 5000);
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
  });
});

describe("the admin API", () => {
  test("a backend added to an h2c pool takes its protocol, and one of the wrong scheme is refused", async () => {
    const a = await h2c("a");
    const b = await h2c("b");
    const token = "h2-api-token-0123456789";
    const r = await rig([{ name: "a", url: a.url }], { admin: { host: "127.0.0.1", port: 0, token }, strategy: "round-robin" });
    const add = (body: unknown) => fetch(`${r.balancer.adminUrl}/api/backends`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    let res = await add({ name: "tls", url: "https://127.0.0.1:1" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toContain('protocol: "h2c" for backends[1] ("https://127.0.0.1:1"); expected an http:// backend');
    res = await add({ name: "b", url: b.url });
    expect(res.status).toBe(201);
    expect(r.balancer.pool.get("b")!.protocol).toBe("h2c");
    for (let i = 0; i < 4; i++) expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
    expect(b.paths.length).toBe(2);
  });
});

describe("config", () => {
  const refusal = (config: Record<string, unknown>): string => {
    try {
      validateConfig({ listen: { port: 0 }, ...config });
    } catch (e) {
      return (e as Error).message;
    }
    return "accepted";
  };

  test("h2 needs https://, h2c needs http://, each named with its field", () => {
    expect(refusal({ protocol: "h2", backends: [{ url: "http://127.0.0.1:1" }] })).toContain('protocol: "h2" for backends[0] ("http://127.0.0.1:1"); expected an https:// backend');
    expect(refusal({ pools: { api: { protocol: "h2c", backends: [{ url: "https://127.0.0.1:1" }] } } })).toContain('pools.api.protocol: "h2c" for pools.api.backends[0] ("https://127.0.0.1:1"); expected an http:// backend');
    expect(refusal({ backends: [{ url: "http://127.0.0.1:1", protocol: "h2" }] })).toContain('backends[0].protocol: "h2"');
    expect(refusal({ backends: [{ url: "http://127.0.0.1:1", protocol: "h3" }] })).toContain('expected "http1", "h2" or "h2c"');
  });

  test("a backend's protocol wins over its pool's, the pool's over the top level", () => {
    const c = validateConfig({ listen: { port: 0 }, protocol: "h2c", pools: { a: { backends: [{ url: "http://127.0.0.1:1" }] }, b: { protocol: "http1", backends: [{ url: "https://127.0.0.1:2", protocol: "h2" }, { url: "http://127.0.0.1:3" }] } }, routes: [{ name: "r", pool: "a" }, { name: "s", pool: "b", match: { path: "/b" } }] });
    expect(c.pools.a!.protocol).toBe("h2c");
    expect(c.pools.b!.protocol).toBe("http1");
    expect(c.pools.b!.backends[0]!.protocol).toBe("h2");
  });

  test("the fetch engine refuses h2 and h2c, saying why", () => {
    expect(refusal({ engine: "fetch", protocol: "h2c", backends: [{ url: "http://127.0.0.1:1" }] })).toContain('protocol: "h2c" with engine "fetch"; expected "http1", or engine "socket" (Bun\'s fetch cannot speak cleartext HTTP/2');
  });

  test("proxyProtocol and mirrors are refused on HTTP/2 pools", () => {
    expect(refusal({ pools: { a: { protocol: "h2c", proxyProtocol: "v2", backends: [{ url: "http://127.0.0.1:1" }] } } })).toContain("pools.a.proxyProtocol: \"v2\" on a pool with HTTP/2 backends");
  });
});
