/**
 * End-to-end: the real proxy in front of real sim backends on ephemeral ports.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { gunzipSync } from "node:zlib";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { countResponses, rawClient, rawExchange, rawRequest as rawRequestCased, startResettingServer } from "../helpers/raw.ts";

const rawRequest = (port: number, head: string) => rawRequestCased(port, head, { lowerCase: true });
import type { EchoResponse } from "../../sim/backend.ts";
import { waitFor } from "../helpers/wait.ts";
import { requirePrograms } from "../helpers/system.ts";

const curl = requirePrograms("the curl check in the gzip test", { curl: "curl" });

let rig: TestRig | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
  for (const c of cleanups.splice(0)) await c();
});

/** Both HTTP engines run every forwarding test from this one table (docs/forwarding.md, "Engines"). */
export const ENGINES = ["fetch", "socket"] as const;
export type Engine = (typeof ENGINES)[number];

/** startRig with the engine under test merged into the config. */
export function rigFor(engine: Engine): typeof startRig {
  return (count, config = {}, prepare) =>
    startRig(count, typeof config === "function" ? (c) => ({ engine, ...config(c) }) : { engine, ...config }, prepare);
}

const echo = async (res: Response) => (await res.json()) as EchoResponse;
const header = (e: EchoResponse, name: string) => e.headers.find(([k]) => k === name)?.[1];

describe.each(ENGINES)("%s engine", (engine) => {
  const start = rigFor(engine);

  describe("request target and headers", () => {
    test("path and query reach the backend exactly as sent", async () => {
      rig = await start(1);
      const res = await rawRequest(rig.balancer.port, "GET /echo/a%2Fb//c?x=1&x=2&y=%20z HTTP/1.1\r\nHost: example.test");
      expect(res.status).toBe(200);
      const e = JSON.parse(res.body) as EchoResponse;
      expect(e.path).toBe("/echo/a%2Fb//c?x=1&x=2&y=%20z");
      expect(e.query.x).toEqual(["1", "2"]);
    });

    test("an HTTP/1.0 request without Host keeps its path and gets the backend's Host", async () => {
      rig = await start(1);
      const res = await rawRequest(rig.balancer.port, "GET /echo/x?y=1 HTTP/1.0");
      expect(res.status).toBe(200);
      const e = JSON.parse(res.body) as EchoResponse;
      expect(e.path).toBe("/echo/x?y=1");
      expect(header(e, "host")).toBe(new URL(rig.cluster.backends[0]!.url).host);
    });

    test("forwarded headers are set and untrusted ones replaced", async () => {
      rig = await start(1);
      const e = await echo(await fetch(`${rig.balancer.url}/echo`, {
        headers: { host: "shop.example:8443", "x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https", forwarded: "for=6.6.6.6" },
      }));
      expect(header(e, "x-forwarded-for")).toBe("127.0.0.1");
      expect(header(e, "x-forwarded-proto")).toBe("http");
      expect(header(e, "x-forwarded-host")).toBe("shop.example:8443");
      expect(header(e, "forwarded")).toBeUndefined();
      expect(header(e, "via")).toBe("1.1 switchyard");
      expect(header(e, "host")).toBe("shop.example:8443");
      expect(header(e, "x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    });

    test("a trusted proxy's X-Forwarded-For is kept and appended to; a given request id is kept", async () => {
      rig = await start(1, { trustedProxies: ["127.0.0.0/8"] });
      const res = await fetch(`${rig.balancer.url}/echo`, {
        headers: { "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", "x-request-id": "req-42", via: "1.0 edge" },
      });
      expect(res.headers.get("x-request-id")).toBe("req-42");
      const e = await echo(res);
      expect(header(e, "x-forwarded-for")).toBe("203.0.113.7, 127.0.0.1");
      expect(header(e, "x-forwarded-proto")).toBe("https");
      expect(header(e, "x-request-id")).toBe("req-42");
      expect(header(e, "via")).toBe("1.0 edge, 1.1 switchyard");
    });

    test("an HTTP/1.0 request: Via names 1.0 on the socket engine (Bun.serve does not tell the version)", async () => {
      rig = await start(1);
      const req = await rawRequest(rig.balancer.port, "GET /echo HTTP/1.0\r\nHost: x");
      const e = JSON.parse(req.body) as EchoResponse;
      expect(header(e, "via")).toBe(engine === "socket" ? "1.0 switchyard" : "1.1 switchyard");
    });

    test("preserveHost: false sends the backend's host", async () => {
      rig = await start(1, { preserveHost: false });
      const e = await echo(await fetch(`${rig.balancer.url}/echo`, { headers: { host: "shop.example" } }));
      expect(header(e, "host")).toBe(new URL(rig.cluster.backends[0]!.url).host);
      expect(header(e, "x-forwarded-host")).toBe("shop.example");
    });

    test("hop-by-hop fields and fields named in Connection are removed in both directions", async () => {
      rig = await start(1);
      const req = await rawRequest(
        rig.balancer.port,
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: trailers\r\nX-Kept: yes",
      );
      const e = JSON.parse(req.body) as EchoResponse;
      const names = e.headers.map(([k]) => k);
      for (const gone of ["x-secret", "keep-alive", "proxy-authorization", "te"]) expect(names).not.toContain(gone);
      expect(header(e, "x-kept")).toBe("yes");

      const res = await rawRequest(
        rig.balancer.port,
        "GET /response-headers?Connection=x-backend-secret&X-Backend-Secret=1&Keep-Alive=timeout%3D5&Proxy-Authenticate=Basic&X-Kept=yes HTTP/1.1\r\nHost: x",
      );
      const got = res.headers.map(([k]) => k);
      for (const gone of ["x-backend-secret", "keep-alive", "proxy-authenticate"]) expect(got).not.toContain(gone);
      expect(res.headers).toContainEqual(["x-kept", "yes"]);
      expect(res.headers).toContainEqual(["via", "1.1 switchyard"]);
    });

    test("several Set-Cookie fields all reach the client", async () => {
      rig = await start(1);
      const res = await fetch(`${rig.balancer.url}/cookies?n=3`);
      expect(res.headers.getSetCookie()).toEqual(["c1=1; Path=/", "c2=2; Path=/", "c3=3; Path=/"]);
    });
  });

  describe("bodies and statuses", () => {
    test("a 302 reaches the client as a 302", async () => {
      rig = await start(1);
      const res = await fetch(`${rig.balancer.url}/redirect?to=/elsewhere`, { redirect: "manual" });
      expect(res.status).toBe(302);
      expect(res.headers.get("location")).toBe("/elsewhere");
    });

    test("gzip from the backend reaches the client still gzip and decodes", async () => {
      rig = await start(1);
      const direct = await fetch(`${rig.cluster.backends[0]!.url}/gzip`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
      const expected = Buffer.from(await direct.arrayBuffer());
      const res = await fetch(`${rig.balancer.url}/gzip`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
      expect(res.headers.get("content-encoding")).toBe("gzip");
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(Number(res.headers.get("content-length"))).toBe(bytes.length);
      expect(bytes.equals(expected)).toBe(true);
      expect(gunzipSync(bytes).toString().length).toBeGreaterThan(0);
      // And a real client that asks for compression decodes it.
      if (curl.skip) return;
      curl.assertPresent();
      const proc = Bun.spawn([curl.path("curl"), "-sS", "--compressed", `${rig.balancer.url}/gzip`], { stdout: "pipe" });
      expect(await new Response(proc.stdout).text()).toBe(gunzipSync(bytes).toString());
    });

    test("HEAD, 204 and 304 are answered without a body", async () => {
      rig = await start(1);
      const head = await rawRequest(rig.balancer.port, "HEAD /bytes/1000 HTTP/1.1\r\nHost: x");
      expect(head.status).toBe(200);
      expect(head.body).toBe("");
      expect(head.headers).toContainEqual(["content-length", "1000"]);
      for (const code of [204, 304]) {
        const res = await rawRequest(rig.balancer.port, `GET /status/${code} HTTP/1.1\r\nHost: x`);
        expect(res.status).toBe(code);
        expect(res.body).toBe("");
        expect(res.headers.find(([k]) => k === "transfer-encoding")).toBeUndefined();
      }
    });

    test("Content-Length is kept up to limits.responseBuffer (fetch) or always (socket); unknown lengths stream chunked", async () => {
      rig = await start(1);
      for (const n of [0, 10, 65_536]) {
        const res = await rawRequest(rig.balancer.port, `GET /bytes/${n} HTTP/1.1\r\nHost: x`);
        expect(res.headers).toContainEqual(["content-length", String(n)]);
        expect(res.body.length).toBe(n);
      }
      // Bun drops Content-Length on a streamed body (oven-sh/bun#10507): the fetch engine's
      // framing changes to chunked, which RFC 9112 §7.1 allows an intermediary; the bytes are
      // the same. The socket engine keeps the backend's Content-Length whatever the size.
      for (const n of [65_537, 4_000_000]) {
        const res = await rawRequest(rig.balancer.port, `GET /bytes/${n} HTTP/1.1\r\nHost: x`);
        if (engine === "socket") {
          expect(res.headers).toContainEqual(["content-length", String(n)]);
          expect(res.body.length).toBe(n);
          continue;
        }
        expect(res.headers).toContainEqual(["transfer-encoding", "chunked"]);
        expect(res.body.replace(/\r\n[0-9a-f]+\r\n/g, "").replace(/^[0-9a-f]+\r\n/, "").length).toBeGreaterThanOrEqual(n);
      }
      const chunked = await rawRequest(rig.balancer.port, "GET /stream?chunks=2&interval=10 HTTP/1.1\r\nHost: x");
      expect(chunked.headers).toContainEqual(["transfer-encoding", "chunked"]);
    });

    test("request bodies stream through: 5 MB POST arrives intact, chunked upload too", async () => {
      rig = await start(1);
      const body = new Uint8Array(5 * 1024 * 1024).map((_, i) => (i * 7) % 251);
      const hash = new Bun.CryptoHasher("sha256").update(body).digest("hex");
      const e = await echo(await fetch(`${rig.balancer.url}/echo`, { method: "POST", body }));
      expect(e.bodyLength).toBe(body.length);
      expect(e.bodySha256).toBe(hash);
      const stream = new ReadableStream({
        start(c) {
          c.enqueue(body.subarray(0, 1000));
          c.enqueue(body.subarray(1000, 200_000));
          c.close();
        },
      });
      const e2 = await echo(await fetch(`${rig.balancer.url}/echo`, { method: "POST", body: stream, duplex: "half" } as RequestInit));
      expect(e2.bodyLength).toBe(200_000);
      expect(e2.bodySha256).toBe(new Bun.CryptoHasher("sha256").update(body.subarray(0, 200_000)).digest("hex"));
    });

    test("a chunked stream passes through incrementally", async () => {
      rig = await start(1);
      const started = performance.now();
      const res = await fetch(`${rig.balancer.url}/stream?chunks=4&interval=250`);
      const reader = res.body!.getReader();
      const first = await reader.read();
      const firstAt = performance.now() - started;
      expect(new TextDecoder().decode(first.value)).toContain("chunk 1");
      let text = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const totalAt = performance.now() - started;
      expect(text).toContain("chunk 4");
      // The first chunk came long before the stream ended: nothing was buffered.
      expect(totalAt - firstAt).toBeGreaterThan(500);
    });

    test("server-sent events pass through one by one", async () => {
      rig = await start(1);
      const res = await fetch(`${rig.balancer.url}/sse?count=3&interval=300`);
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const reader = res.body!.getReader();
      const arrivals: number[] = [];
      let text = "";
      const started = performance.now();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
        arrivals.push(performance.now() - started);
      }
      expect(text.match(/^data: /gm)?.length).toBe(3);
      expect(arrivals.length).toBeGreaterThanOrEqual(3);
      expect(arrivals[arrivals.length - 1]! - arrivals[0]!).toBeGreaterThan(400);
    });

    test("a slow backend within the retry timeout is not cut by the client idle timeout", async () => {
      rig = await start(1, { timeouts: { idle: "1s" }, retry: { perTryTimeout: "6s", timeout: "6s" } });
      const res = await fetch(`${rig.balancer.url}/delay/2500`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("delayed 2500ms");
    }, 10_000);
  });

  describe("failures and retries", () => {
    test("503 with Retry-After when no backend is available", async () => {
      rig = await start(2);
      for (const b of rig.balancer.pool.backends) b.setEnabled(false);
      const res = await fetch(`${rig.balancer.url}/`);
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect((await res.json()).error).toBe("SY_NO_BACKEND");
    });

    test("502 when every try fails; refused backends are marked down only within passive.maxEjectedPercent", async () => {
      rig = await start(2);
      for (const b of rig.cluster.backends) await b.stop();
      const res = await fetch(`${rig.balancer.url}/`);
      expect(res.status).toBe(502);
      expect((await res.json()).error).toBe("SY_UPSTREAM_FAILED");
      // 50% of 2: the first refusal marks one down, the second may not take the other (nor
      // would "never the last available one" let it): it counts as a gateway failure instead.
      expect(rig.balancer.pool.backends.map((b) => b.state()).sort()).toEqual(["down", "up"]);
      const up = rig.balancer.pool.backends.find((b) => b.state() === "up")!;
      expect(up.consecutiveFailures).toBeGreaterThan(0);
      const next = await fetch(`${rig.balancer.url}/`);
      expect(next.status).toBe(502);
      expect(rig.balancer.pool.backends.map((b) => b.state()).sort()).toEqual(["down", "up"]);
    });

    test("502 from a backend that resets: GET tried on every attempt, logged with the backends tried", async () => {
      const reset = startResettingServer();
      cleanups.push(() => reset.stop());
      rig = await start(0, { backends: [{ name: "resetter", url: reset.url }], retry: { attempts: 3 } });
      const res = await fetch(`${rig.balancer.url}/x`);
      expect(res.status).toBe(502);
      expect((await res.json()).error).toBe("SY_UPSTREAM_FAILED");
      // One backend: every retry falls back to it. Bun's fetch may itself retry a reset pooled
      // socket once, so count at least one connection per try.
      expect(reset.connections()).toBeGreaterThanOrEqual(3);
      await waitFor(() => rig!.access.length > 0, "the access-log line");
      expect(rig.access[0]).toContain("backend=resetter,resetter,resetter attempts=3");
      expect(rig.access[0]).toContain("error=SY_UPSTREAM_FAILED");
    });

    test("a POST is not retried after it was sent", async () => {
      const reset = startResettingServer();
      cleanups.push(() => reset.stop());
      // The resetting backend first in the list and the policy round-robin: the POST goes there.
      rig = await start(0, {
        strategy: "round-robin",
        backends: [{ name: "resetter", url: reset.url }, { name: "good", url: "http://127.0.0.1:1" }],
      });
      const res = await fetch(`${rig.balancer.url}/echo`, { method: "POST", body: "pay once" });
      expect(res.status).toBe(502);
      await waitFor(() => rig!.access.length > 0, "the access-log line");
      expect(rig.access[0]).toContain("attempts=1");
    });

    test("a POST whose backend refused the connection is retried elsewhere (nothing was sent)", async () => {
      rig = await start(2, { strategy: "round-robin" });
      await rig.cluster.backends[0]!.stop();
      const e = await echo(await fetch(`${rig.balancer.url}/echo`, { method: "POST", body: "hello" }));
      expect(e.bodyLength).toBe(5);
      expect(rig.cluster.backends[1]!.requests).toBe(1);
    });

    test("an idempotent PUT with a buffered body is retried on a status in onStatus", async () => {
      rig = await start(2, { strategy: "round-robin", retry: { onStatus: [500] } });
      rig.cluster.backends[0]!.setFailRate(1);
      const body = "x".repeat(30_000);
      const res = await fetch(`${rig.balancer.url}/echo`, { method: "PUT", body });
      expect(res.status).toBe(200);
      const e = await echo(res);
      expect(e.bodyLength).toBe(body.length);
      expect(rig.cluster.backends[0]!.requests).toBe(1);
      expect(rig.cluster.backends[1]!.requests).toBe(1);
    });

    test("a POST answered 503 is passed through, not retried", async () => {
      rig = await start(2, { strategy: "round-robin" });
      const res = await fetch(`${rig.balancer.url}/status/503`, { method: "POST", body: "x" });
      expect(res.status).toBe(503);
      expect(rig.cluster.backends[0]!.requests + rig.cluster.backends[1]!.requests).toBe(1);
    });

    test("504 when the overall timeout runs out; a per-try timeout moves on to a faster backend", async () => {
      rig = await start(2, { strategy: "round-robin", retry: { perTryTimeout: "300ms", timeout: "2s" } });
      rig.cluster.backends[0]!.setLatency({ min: 1500, max: 1500 });
      const started = performance.now();
      const ok = await fetch(`${rig.balancer.url}/`);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toBe("backend-2\n");
      expect(performance.now() - started).toBeLessThan(1200);

      await rig.stop();
      rig = await start(1, { retry: { perTryTimeout: "300ms", timeout: "500ms" } });
      const slow = await fetch(`${rig.balancer.url}/delay/3000`);
      expect(slow.status).toBe(504);
      expect((await slow.json()).error).toBe("SY_UPSTREAM_TIMEOUT");
      // The aborted upstream request is cancelled at the backend.
      await waitFor(() => rig!.cluster.backends[0]!.active === 0, "the backend to see the cancel");
    });

    test("a client that goes away aborts the upstream request", async () => {
      rig = await start(1);
      const controller = new AbortController();
      const pending = fetch(`${rig.balancer.url}/delay/5000`, { signal: controller.signal }).catch(() => "aborted");
      await waitFor(() => rig!.cluster.backends[0]!.active === 1, "the request to reach the backend");
      controller.abort();
      expect(await pending).toBe("aborted");
      await waitFor(() => rig!.cluster.backends[0]!.active === 0, "the backend to see the abort");
      await waitFor(() => rig!.balancer.pool.backends[0]!.inFlight === 0, "the in-flight slot to be released");
    });

    test("a client that disconnects mid-upload costs nothing: no error, no slot held", async () => {
      rig = await start(1);
      for (const head of [
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly ten b", // buffered body
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\npartial", // streamed body
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", // chunked
      ]) {
        const client = await rawClient(rig!.balancer.port);
        client.send(head);
        await Bun.sleep(100);
        client.terminate();
        await client.waitClosed();
      }
      await waitFor(() => rig!.balancer.pool.backends[0]!.inFlight === 0, "the in-flight slot to be released");
      expect(rig.logLines.filter((l) => l.startsWith("error"))).toEqual([]);
      expect((await fetch(`${rig.balancer.url}/`)).status).toBe(200);
    });

    test("one backend killed mid-run costs zero failed GETs", async () => {
      rig = await start(3);
      let ok = 0;
      const failures: string[] = [];
      const deadline = performance.now() + 1500;
      const killer = Bun.sleep(400).then(() => rig!.cluster.backends[1]!.stop());
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (performance.now() < deadline) {
            const res = await fetch(`${rig!.balancer.url}/`);
            await res.text();
            if (res.status === 200) ok++;
            else failures.push(String(res.status));
          }
        }),
      );
      await killer;
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThan(100);
      expect(rig.balancer.pool.backends[1]!.state()).toBe("down");
    });
  });

  /**
   * Defects of Bun 1.4.5's Bun.serve and fetch that the fetch engine cannot hide: the same
   * tests pass on the socket engine and are expected to fail on the fetch engine, with the
   * upstream reference (docs/forwarding.md, "What the fetch engine changes").
   */
  describe("what only the socket engine gets right (Bun 1.4.5 defects)", () => {
    const fetchFails = engine === "fetch" ? test.failing : test;

    // oven-sh/bun PR #38128: a request pipelined behind one answered asynchronously closes
    // the connection with nothing written.
    fetchFails("two pipelined GETs are both answered, in order", async () => {
      rig = await start(1);
      const res = await rawExchange(rig.balancer.port, "GET /echo/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: a\r\n\r\n", {
        until: (t) => countResponses(t) === 2, timeoutMs: 2000,
      });
      expect(res.statuses).toEqual([200, 200]);
      expect(res.text.indexOf('"path":"/echo/1"')).toBeLessThan(res.text.indexOf('"path":"/echo/2"'));
    });

    // Bun's fetch adds User-Agent: Bun/1.4.5 and Accept: */* to requests that had neither.
    fetchFails("a request without User-Agent or Accept reaches the backend without them", async () => {
      rig = await start(1);
      const res = await rawRequest(rig.balancer.port, "GET /echo HTTP/1.1\r\nHost: a");
      const names = (JSON.parse(res.body) as EchoResponse).headers.map(([k]) => k);
      expect(names).not.toContain("user-agent");
      expect(names).not.toContain("accept");
    });

    // Bun.serve reads a chunked body's trailer section as a next request and answers 400.
    fetchFails("a chunked body with a trailer gets 200, and the backend one request", async () => {
      rig = await start(1);
      const res = await rawExchange(rig.balancer.port, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", {
        until: (t) => countResponses(t) >= 1, timeoutMs: 2000,
      });
      expect(res.statuses).toEqual([200]);
      expect(res.text).toContain('"bodyLength":5');
      await waitFor(() => rig!.cluster.backends[0]!.requests >= 1, "the request at the backend");
      expect(rig.cluster.backends[0]!.requests).toBe(1);
    });
  });

  describe("in-flight accounting", () => {
    test("counters return to zero after successes, failures, timeouts, client aborts and streams", async () => {
      const reset = startResettingServer();
      cleanups.push(() => reset.stop());
      rig = await start(2, { retry: { perTryTimeout: "200ms", timeout: "1s" }, passive: { consecutiveFailures: 0 } });
      const base = rig.balancer.url;
      const aborted = Array.from({ length: 5 }, async () => {
        const c = new AbortController();
        const p = fetch(`${base}/delay/2000`, { signal: c.signal }).catch(() => null);
        await Bun.sleep(50);
        c.abort();
        await p;
      });
      const abortedStreams = Array.from({ length: 3 }, async () => {
        const res = await fetch(`${base}/stream?chunks=20&interval=50`);
        const reader = res.body!.getReader();
        await reader.read();
        await reader.cancel();
      });
      await Promise.all([
        ...Array.from({ length: 20 }, () => fetch(`${base}/`).then((r) => r.text())),
        ...Array.from({ length: 5 }, () => fetch(`${base}/status/500`).then((r) => r.text())),
        ...Array.from({ length: 5 }, () => fetch(`${base}/delay/1000`).then((r) => r.text())),
        ...Array.from({ length: 5 }, () => fetch(`${base}/bytes/300000`).then((r) => r.arrayBuffer())),
        ...Array.from({ length: 3 }, () => fetch(`${base}/sse?count=2&interval=20`).then((r) => r.text())),
        ...aborted,
        ...abortedStreams,
      ]);
      await waitFor(() => rig!.balancer.pool.backends.every((b) => b.inFlight === 0), "every in-flight count to return to zero");
    });
  });
});
