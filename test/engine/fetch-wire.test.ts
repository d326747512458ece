/**
 * The fetch engine against hostile clients and broken backends: raw
 * bytes from the client side, backends that record, stall, dribble or reset, and what reaches
 * passive health. Every failure is the client's or a backend's, and only a backend's counts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { rawClient, rawExchange, type RawClient } from "../helpers/raw.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";
import type { EchoResponse } from "../../sim/backend.ts";

let rig: TestRig | undefined;
let backend: RecordingBackend | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await rig?.stop();
  rig = undefined;
  backend?.stop();
  backend = undefined;
});

/** The rig in front of one recording backend (helpers/recording-backend.ts), fetch engine. */
async function startRecording(config: Record<string, unknown> = {}): Promise<{ port: number; backend: RecordingBackend }> {
  backend = startRecordingBackend();
  rig = await startRig(0, { engine: "fetch", backends: [{ name: "rec", url: backend.url }], ...config });
  return { port: rig.balancer.port, backend };
}

/** A raw client connection whose writes the test controls, closed after the test. */
async function openClient(port: number): Promise<RawClient> {
  const client = await rawClient(port);
  cleanups.push(() => client.terminate());
  return client;
}

const status = (text: string) => Number(text.match(/^HTTP\/1\.1 (\d{3})/)?.[1] ?? 0);
const blamed = () => rig!.balancer.pool.backends.reduce((n, b) => n + b.stats.proxyErrors, 0);
const accessErrors = () => rig!.access.map((l) => l.match(/error=(\S+)/)?.[1]).filter(Boolean);
const chunk = (body: string) => `${body.length.toString(16)}\r\n${body}\r\n`;

describe("requests refused before any byte reaches a backend (fetch engine)", () => {
  const cases: [string, string, number][] = [
    // RFC 9112 §3.2: more than one Host is a 400 (Bun.serve would join them into "a, b").
    ["two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    // RFC 9112 §6.3: Bun.serve reads the body, but joins the fields; fetch would refuse "5, 5"
    // upstream, and the loop would have counted that against the backend.
    ["Content-Length sent twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400],
    // RFC 9110 §9.3.6: not a forward proxy.
    ["CONNECT", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", 405],
    // RFC 9110 §9.3.8: TRACE would reflect the client's cookies and credentials.
    ["TRACE with a cookie", "TRACE / HTTP/1.1\r\nHost: a\r\nCookie: session=secret\r\nAuthorization: Basic eDp5\r\n\r\n", 405],
  ];
  test.each(cases)("%s: %d and close", async (_name, input, expected) => {
    const { port, backend } = await startRecording();
    const res = await rawExchange(port, input);
    expect(res.statuses).toEqual([expected]);
    expect(res.closed).toBe(true);
    expect(res.text.toLowerCase()).toContain("connection: close");
    if (expected === 405) expect(res.text.toLowerCase()).toContain("allow: get, head, post, put, delete, options, patch");
    expect(res.text).not.toContain("secret");
    expect(backend.raw).toEqual([]);
    expect(blamed()).toBe(0);
  });

  test("Content-Length sent twice, fifteen times: no backend is ejected", async () => {
    rig = await startRig(2, { engine: "fetch", passive: { consecutiveFailures: 1, maxEjectedPercent: 100 } });
    for (let i = 0; i < 15; i++) {
      const res = await rawExchange(rig.balancer.port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
      expect(res.statuses).toEqual([400]);
    }
    expect(rig.balancer.pool.backends.map((b) => b.state())).toEqual(["up", "up"]);
    expect(blamed()).toBe(0);
    expect(rig.cluster.backends.reduce((n, b) => n + b.requests, 0)).toBe(0);
  });
});

describe("a chunked body over limits.maxBodySize (fetch engine)", () => {
  test("413 for the client, no further bytes to the backend, no backend blamed", async () => {
    const { port, backend } = await startRecording({
      limits: { maxBodySize: "64KB" },
      retry: { bufferBody: "1KB" },
      passive: { consecutiveFailures: 1 },
    });
    const client = await openClient(port);
    client.write("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    const piece = chunk("x".repeat(8192));
    // 16 pieces of 8 KB: twice the limit, sent while the answer has not come.
    for (let i = 0; i < 16 && !client.closed && client.text() === ""; i++) {
      client.write(piece);
      await Bun.sleep(5);
    }
    await waitFor(() => client.closed, "the proxy to close the connection");
    expect(status(client.text())).toBe(413);
    // The backend had a body cut off at the limit at most, and its connection was closed.
    await waitFor(() => rig!.access.length === 1, "the access-log line");
    const got = backend.raw.join("");
    const body = got.slice(got.indexOf("\r\n\r\n") + 4);
    expect(body.length).toBeLessThanOrEqual(64 * 1024 + 16 * 10);
    expect(backend.requests).toEqual([]);
    expect(accessErrors()).toEqual(["SY_BODY_TOO_LARGE"]);
    expect(rig!.access[0]).toContain(" 413 ");
    expect(blamed()).toBe(0);
    expect(rig!.balancer.pool.backends[0]!.state()).toBe("up");
  });

  test("fifteen over-limit uploads leave both backends up", async () => {
    rig = await startRig(2, { engine: "fetch", limits: { maxBodySize: "16KB" }, retry: { bufferBody: "1KB" }, passive: { consecutiveFailures: 1, maxEjectedPercent: 100 } });
    for (let i = 0; i < 15; i++) {
      const body = Array.from({ length: 8 }, () => chunk("y".repeat(4096))).join("") + "0\r\n\r\n";
      const res = await rawExchange(rig.balancer.port, ["POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", body]);
      expect(res.statuses).toEqual([413]);
    }
    expect(rig.balancer.pool.backends.map((b) => b.state())).toEqual(["up", "up"]);
    expect(blamed()).toBe(0);
  });
});

/** A backend that answers each request with a head declaring `declared` bytes, sends `sent` of them, and resets. */
function startTruncatingBackend(declared: number, sent: number): { url: string; stop(): void } {
  const server: TCPSocketListener<undefined> = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${declared}\r\nContent-Type: application/octet-stream\r\n\r\n`);
        socket.write(new Uint8Array(sent));
        // Let the bytes go out before the reset.
        setTimeout(() => socket.terminate(), 20);
      },
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}

describe("a backend that resets mid-body (fetch engine)", () => {
  test("declares 1 MB, sends 100 KB, resets: logged SY_UPSTREAM_TRUNCATED and counted against it", async () => {
    const bad = startTruncatingBackend(1024 * 1024, 100 * 1024);
    cleanups.push(() => bad.stop());
    rig = await startRig(1, (c) => ({
      engine: "fetch",
      backends: [{ name: "bad", url: bad.url }, { name: "good", url: c.backends[0]!.url }],
      strategy: "round-robin",
      passive: { consecutiveFailures: 2, maxEjectedPercent: 100 },
    }));
    const badBackend = rig.balancer.pool.backends.find((b) => b.name === "bad")!;
    for (let i = 0; i < 2; i++) {
      // Round-robin: the first request of each pair goes to "bad".
      const res = await fetch(`${rig.balancer.url}/bytes/10`).catch((e: Error) => e);
      const good = await fetch(`${rig.balancer.url}/bytes/10`);
      expect(good.status).toBe(200);
      await good.arrayBuffer();
      if (res instanceof Response) {
        expect(res.status).toBe(200);
        // The client sees the body break off, never a clean end.
        const read = await res.arrayBuffer().then((b) => b.byteLength, () => -1);
        expect(read).not.toBe(1024 * 1024);
      }
    }
    await waitFor(() => accessErrors().filter((e) => e === "SY_UPSTREAM_TRUNCATED").length === 2, "two truncated responses in the access log");
    expect(rig.access.find((l) => l.includes("SY_UPSTREAM_TRUNCATED"))).toContain("backend=bad");
    expect(rig.balancer.traffic.proxyErrors.SY_UPSTREAM_TRUNCATED).toBe(2);
    expect(badBackend.stats.proxyErrors).toBe(2);
    // Two consecutive failures: ejected.
    await waitFor(() => badBackend.state() === "ejected", "the truncating backend to be ejected");
  });

  test("a short body within limits.responseBuffer is a failed try: retried on another backend", async () => {
    const bad = startTruncatingBackend(32 * 1024, 10 * 1024);
    cleanups.push(() => bad.stop());
    rig = await startRig(1, (c) => ({
      engine: "fetch",
      backends: [{ name: "bad", url: bad.url }, { name: "good", url: c.backends[0]!.url }],
      strategy: "round-robin",
    }));
    const res = await fetch(`${rig.balancer.url}/bytes/10`);
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(10);
    expect(rig.balancer.pool.backends.find((b) => b.name === "bad")!.stats.proxyErrors).toBe(1);
  });
});

describe("uploads and the admission gate (fetch engine)", () => {
  /** A client that declares a large body, sends `first` bytes of it, and then nothing. */
  async function slowUploader(port: number, first: number): Promise<RawClient> {
    const c = await openClient(port);
    c.write(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${1024 * 1024}\r\n\r\n`);
    if (first > 0) c.write(new Uint8Array(first));
    return c;
  }

  test("slow uploaders holding upstream requests do not stop GETs", async () => {
    rig = await startRig(2, {
      engine: "fetch",
      limits: { upstreamConcurrency: 4, uploadConcurrency: 4 },
      retry: { bufferBody: "1KB", timeout: "2s", perTryTimeout: "2s" },
    });
    const port = rig.balancer.port;
    // Eight uploads past the retry buffer: each streams, so each is an upstream request that
    // the client will keep open for as long as it likes.
    const uploaders = await Promise.all(Array.from({ length: 8 }, () => slowUploader(port, 4096)));
    await waitFor(() => rig!.cluster.backends.reduce((n, b) => n + b.requests, 0) >= 4, "four uploads to reach the backends");
    const gets = await Promise.all(Array.from({ length: 20 }, () => fetch(`${rig!.balancer.url}/`).then((r) => r.status)));
    expect(gets).toEqual(Array(20).fill(200));
    // The uploads beyond uploadConcurrency wait for their own slots; none has been answered.
    expect(uploaders.every((u) => u.text() === "")).toBe(true);
  });

  test("a client dribbling its body from the start holds no upload slot", async () => {
    rig = await startRig(1, { engine: "fetch", limits: { uploadConcurrency: 1 }, retry: { bufferBody: "4KB", timeout: "3s", perTryTimeout: "3s" } });
    const port = rig.balancer.port;
    // Within the retry buffer: read by the proxy, not yet forwarded.
    await Promise.all(Array.from({ length: 4 }, () => slowUploader(port, 100)));
    const body = new Uint8Array(64 * 1024).fill(7);
    const res = await fetch(`${rig.balancer.url}/echo`, { method: "POST", body });
    expect(res.status).toBe(200);
    expect(((await res.json()) as EchoResponse).bodyLength).toBe(body.length);
    expect(rig.cluster.backends[0]!.requests).toBe(1);
  });
});

describe.each(["fetch", "socket"] as const)("sending a request body on the %s engine: timeouts.send, then the response-head timers", (engine) => {
  /** POST `total` bytes in pieces of `piece`, `gapMs` apart, over a raw connection; resolves with what came back. */
  async function paced(port: number, total: number, piece: number, gapMs: number): Promise<RawClient> {
    const c = await openClient(port);
    c.write(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${total}\r\nConnection: close\r\n\r\n`);
    for (let sent = 0; sent < total && !c.closed; sent += piece) {
      c.write(new Uint8Array(Math.min(piece, total - sent)).fill(1));
      await Bun.sleep(gapMs);
    }
    await waitFor(() => c.closed, "the answer", 10_000);
    return c;
  }

  test("an upload that takes longer than retry.perTryTimeout and retry.timeout succeeds", async () => {
    rig = await startRig(1, { engine, retry: { perTryTimeout: "300ms", timeout: "600ms", bufferBody: "4KB" } });
    // 256 KB over about 1.6 s: well past both timeouts, steadily flowing.
    const c = await paced(rig.balancer.port, 256 * 1024, 16 * 1024, 100);
    expect(status(c.text())).toBe(200);
    const echo = JSON.parse(c.text().slice(c.text().indexOf("\r\n\r\n") + 4)) as EchoResponse;
    expect(echo.bodyLength).toBe(256 * 1024);
    expect(blamed()).toBe(0);
  });

  test("once the body is sent, retry.perTryTimeout bounds the wait for the head", async () => {
    // A backend that reads the whole request and never answers.
    let received = 0;
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (_s, d) => void (received += d.length) } });
    cleanups.push(() => server.stop(true));
    rig = await startRig(0, { engine, backends: [{ name: "mute", url: `http://127.0.0.1:${server.port}` }], retry: { perTryTimeout: "300ms", timeout: "60s", bufferBody: "4KB" } });
    // Without a per-try timer started once the body was sent, only the 60 s deadline would
    // end this, long after the test's own timeout.
    const c = await paced(rig.balancer.port, 64 * 1024, 16 * 1024, 150);
    expect(status(c.text())).toBe(504);
    expect(received).toBeGreaterThan(64 * 1024);
    expect(accessErrors()).toEqual(["SY_UPSTREAM_TIMEOUT"]);
  });

  test("a backend that stops taking the body fails the try after timeouts.send, counted against it", async () => {
    // Accepts the connection, reads nothing: its receive window fills and writes stall.
    const sockets: Socket<undefined>[] = [];
    const server = Bun.listen<undefined>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(s) {
          sockets.push(s);
          (s as unknown as { pause(): void }).pause();
        },
        data() {},
      },
    });
    cleanups.push(() => server.stop(true));
    rig = await startRig(0, {
      engine,
      backends: [{ name: "stuck", url: `http://127.0.0.1:${server.port}` }],
      timeouts: { send: "300ms" },
      retry: { perTryTimeout: "30s", timeout: "60s", bufferBody: "4KB" },
    });
    const c = await openClient(rig.balancer.port);
    const total = 64 * 1024 * 1024;
    c.write(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${total}\r\n\r\n`);
    const piece = new Uint8Array(256 * 1024);
    // Keep the body coming (so the client is never the one who stalls) until the answer.
    for (let sent = 0; sent < total && c.text() === "" && !c.closed; sent += piece.length) {
      c.write(piece);
      await Bun.sleep(5);
    }
    await waitFor(() => c.text() !== "", "the answer", 10_000);
    expect(status(c.text())).toBe(504);
    await waitFor(() => rig!.access.length === 1, "the access-log line");
    expect(accessErrors()).toEqual(["SY_UPSTREAM_TIMEOUT"]);
    expect(blamed()).toBe(1);
  });
});
