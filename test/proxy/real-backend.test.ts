/**
 * What each engine changes on the way, tried against a real backend:
 * httpbin (Debian's python3-httpbin under gunicorn), and where httpbin cannot show a case (it
 * folds a leading "//" itself, and labels every answer with a Content-Type) a backend that
 * records the bytes it receives. Every case runs on both engines. What only Bun can fix is
 * recorded as it is: expected to fail on the fetch engine, with the behaviour it has instead
 * asserted beside it (docs/forwarding.md, "What the fetch engine changes").
 */
import http from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { countResponses, rawExchange, rawRequest } from "../helpers/raw.ts";
import { requireHttpbin, startHttpbin, type Httpbin } from "../helpers/httpbin.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";

const ENGINES = ["fetch", "socket"] as const;
const available = requireHttpbin("the real-backend (httpbin) tests");

let httpbin: Httpbin | undefined;
let rig: TestRig | undefined;
let recorder: RecordingBackend | undefined;
beforeAll(async () => {
  if (available.skip) return;
  available.assertPresent();
  httpbin = await startHttpbin();
});
afterAll(async () => {
  await httpbin?.stop();
});
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
  recorder?.stop();
  recorder = undefined;
});

/** A field's values as the client received them, one per line, names folded to lower case. */
const fieldLines = (headers: [string, string][], name: string) => headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);

describe.skipIf(available.skip).each(ENGINES)("%s engine", (engine) => {
  const fetchFails = engine === "fetch" ? test.failing : test;
  const toHttpbin = (config: Record<string, unknown> = {}) =>
    startRig(0, { engine, backends: [{ name: "httpbin", url: httpbin!.url }], ...config });
  const toRecorder = async () => {
    recorder = startRecordingBackend();
    return startRig(0, { engine, backends: [{ name: "recorder", url: recorder.url }] });
  };

  // Bun's fetch sends "http://b//evil.example/x" as "GET /evil.example/x": the fetch engine
  // sends such targets through node:http (src/engine/fetch/raw-target.ts).
  test("a target beginning with // reaches the backend as sent", async () => {
    rig = await toRecorder();
    const res = await rawRequest(rig.balancer.port, "GET //evil.example/x?y=1 HTTP/1.1\r\nHost: a");
    expect(res.status).toBe(200);
    expect(res.body).toBe("ok 1");
    expect(recorder!.requests.map((r) => r.url)).toEqual(["//evil.example/x?y=1"]);
    const names = recorder!.requests[0]!.headers.map(([k]) => k);
    expect(names).toContain("x-forwarded-for");
    expect(recorder!.requests[0]!.headers).toContainEqual(["host", "a"]);
  });

  test("a target beginning with // carries a request body, buffered or streamed", async () => {
    rig = await toRecorder();
    for (const size of [5, 200_000]) {
      const body = "b".repeat(size);
      const res = await rawExchange(rig.balancer.port, `POST //upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n${body}`, { timeoutMs: 5000 });
      expect(res.statuses).toEqual([200]);
      const got = recorder!.requests.at(-1)!;
      expect(got.url).toBe("//upload");
      expect(got.body.length).toBe(size);
    }
  });

  test("a target beginning with // is retried on another backend when a connection is refused", async () => {
    recorder = startRecordingBackend();
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const refused = `http://127.0.0.1:${closed.port}`;
    closed.stop(true);
    rig = await startRig(0, { engine, backends: [{ name: "gone", url: refused }, { name: "recorder", url: recorder.url }], passive: { consecutiveFailures: 0 } });
    for (let i = 0; i < 2; i++) {
      const res = await rawRequest(rig.balancer.port, "GET //x HTTP/1.1\r\nHost: a");
      expect(res.status).toBe(200);
    }
    expect(recorder.requests.map((r) => r.url)).toEqual(["//x", "//x"]);
  });

  // Bun.serve writes a response's Headers, and Headers joins repeated fields (the Fetch model);
  // only Set-Cookie is kept apart. RFC 9110 §5.3 makes the joined line mean the same for a
  // list-valued field, but not for every field a backend may repeat.
  fetchFails("repeated response fields reach the client as separate lines", async () => {
    rig = await toHttpbin();
    const res = await rawRequest(rig.balancer.port, "GET /response-headers?X-Dup=1&X-Dup=2 HTTP/1.1\r\nHost: a");
    expect(res.status).toBe(200);
    expect(fieldLines(res.headers, "x-dup")).toEqual(["1", "2"]);
  });

  if (engine === "fetch") {
    test("the fetch engine joins repeated response fields into one line (Bun.serve), Set-Cookie apart", async () => {
      rig = await toHttpbin();
      const res = await rawRequest(rig.balancer.port, "GET /response-headers?X-Dup=1&X-Dup=2&Set-Cookie=a%3D1&Set-Cookie=b%3D2 HTTP/1.1\r\nHost: a");
      expect(fieldLines(res.headers, "x-dup")).toEqual(["1, 2"]);
      expect(fieldLines(res.headers, "set-cookie")).toEqual(["a=1", "b=2"]);
    });
  }

  test("a response without Content-Type gets none", async () => {
    rig = await toRecorder();
    const res = await rawRequest(rig.balancer.port, "GET /plain HTTP/1.1\r\nHost: a");
    expect(res.status).toBe(200);
    expect(res.body).toBe("ok 1");
    expect(fieldLines(res.headers, "content-type")).toEqual([]);
    expect(fieldLines(res.headers, "content-length")).toEqual(["4"]);
  });

  test("a response's Content-Type arrives as the backend sent it", async () => {
    rig = await toHttpbin();
    const res = await rawRequest(rig.balancer.port, "GET /html HTTP/1.1\r\nHost: a");
    expect(fieldLines(res.headers, "content-type")).toEqual(["text/html; charset=utf-8"]);
  });

  test("a HEAD answer without a length from the backend gets no Content-Length", async () => {
    rig = await toHttpbin();
    // httpbin streams /stream/N: its HEAD answer has no Content-Length.
    const direct = await rawRequest(httpbin!.port, "HEAD /stream/2 HTTP/1.1\r\nHost: a");
    expect(fieldLines(direct.headers, "content-length")).toEqual([]);
    const res = await rawRequest(rig.balancer.port, "HEAD /stream/2 HTTP/1.1\r\nHost: a");
    expect(res.status).toBe(200);
    expect(fieldLines(res.headers, "content-length")).toEqual([]);
    expect(res.body).toBe("");
    // Bun.serve writes either a length or chunked; the fetch engine says chunked, as a GET
    // through it would be (RFC 9112 §6.1). The socket engine sends neither, as the backend did.
    expect(fieldLines(res.headers, "transfer-encoding")).toEqual(engine === "fetch" ? ["chunked"] : []);
  });

  test("a HEAD answer keeps the backend's Content-Length", async () => {
    rig = await toHttpbin();
    const res = await rawRequest(rig.balancer.port, "HEAD /bytes/1234 HTTP/1.1\r\nHost: a");
    expect(fieldLines(res.headers, "content-length")).toEqual(["1234"]);
    expect(res.body).toBe("");
  });

  // Bun.serve reads a GET's body and discards it (the Request it hands over has none).
  fetchFails("a GET's body, with its Content-Length, reaches the backend", async () => {
    rig = await toHttpbin();
    // Read until the proxy closes (Connection: close): the whole answer.
    const res = await rawExchange(rig.balancer.port, "GET /anything HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", { timeoutMs: 5000 });
    expect(res.statuses).toEqual([200]);
    const echoed = JSON.parse(res.text.slice(res.text.indexOf("\r\n\r\n") + 4)) as { data: string; headers: Record<string, string> };
    expect(echoed.data).toBe("hello");
    expect(echoed.headers["Content-Length"]).toBe("5");
  });

  if (engine === "fetch") {
    test("the fetch engine refuses a GET with a body (400) rather than drop the body", async () => {
      rig = await toRecorder();
      for (const framing of ["Content-Length: 5\r\n\r\nhello", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]) {
        const res = await rawExchange(rig.balancer.port, `GET /search HTTP/1.1\r\nHost: a\r\n${framing}`, { until: (t) => countResponses(t) >= 1, timeoutMs: 5000 });
        expect(res.statuses).toEqual([400]);
        expect(res.text).toContain("SY_BAD_REQUEST");
        expect(res.text.toLowerCase()).toContain("connection: close");
      }
      // Content-Length: 0 is no body.
      const empty = await rawRequest(rig.balancer.port, "GET /search HTTP/1.1\r\nHost: a\r\nContent-Length: 0");
      expect(empty.status).toBe(200);
      expect(recorder!.requests.map((r) => r.url)).toEqual(["/search"]);
    });
  }

  test("a 40 KB request head reaches the backend (limits.maxHeaderSize, 64 KB)", async () => {
    rig = await toHttpbin();
    // gunicorn takes fields of up to 8 KB each: eight of 5 KB.
    const fields = Array.from({ length: 8 }, (_, i) => `X-Big-${i}: ${String(i).repeat(5000)}`).join("\r\n");
    const res = await rawRequest(rig.balancer.port, `GET /headers HTTP/1.1\r\nHost: a\r\n${fields}`);
    expect(res.status).toBe(200);
    const seen = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
    expect(seen["X-Big-7"]).toBe("7".repeat(5000));
  });

  test("a request head over limits.maxHeaderSize gets 431", async () => {
    const before = http.maxHeaderSize;
    try {
      rig = await toHttpbin({ limits: { maxHeaderSize: "8KB" } });
      const fits = await rawRequest(rig.balancer.port, `GET /headers HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(6000)}`);
      expect(fits.status).toBe(200);
      const over = await rawRequest(rig.balancer.port, `GET /headers HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(4000)}\r\nX-Big-2: ${"b".repeat(5000)}`);
      expect(over.status).toBe(431);
    } finally {
      // The fetch engine sets the limit for the whole process (Bun.serve has no per-server one).
      (http as { maxHeaderSize: number }).maxHeaderSize = before;
    }
  });
});
