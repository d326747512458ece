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
    expect(res.startsWith("HTTP/1.1 505")).toBe(true);
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
});
