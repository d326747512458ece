/**
 * HTTP/2 from clients on the fetch engine: Bun.serve's own HTTP/2 (`http2: true`), by prior
 * knowledge on plain listeners and by ALPN on TLS ones, in front of the same forwarding loop.
 * Its limits are Bun's (the `http2` options other than `enabled` belong to the socket engine),
 * and it carries no gRPC: Bun's fetch cannot read a backend's trailers, which carry grpc-status.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { startRig, type RigConfig, type TestRig } from "../../helpers/balancer.ts";
import { curl, makePki, type Issued, type Pki } from "../../helpers/pki.ts";
import { requirePrograms } from "../../helpers/system.ts";
import { waitFor } from "../../helpers/wait.ts";

let pki: Pki;
let a: Issued;
beforeAll(async () => {
  pki = await makePki();
  a = await pki.issue("a", ["localhost", "IP:127.0.0.1"]);
});
afterAll(() => pki.remove());

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.stop();
});
async function rig(count: number, config: Record<string, unknown> = {}): Promise<TestRig> {
  const r = await startRig(count, { engine: "fetch", ...config } as RigConfig);
  rigs.push(r);
  return r;
}

const h2load = requirePrograms("the fetch engine's HTTP/2 load test", { h2load: "nghttp2-client" });

describe("fetch engine: HTTP/2 from clients", () => {
  test("prior knowledge on a plain listener: the request reaches the backend as HTTP/1.1 with the usual fields", async () => {
    const r = await rig(1);
    const res = await curl(["--http2-prior-knowledge", "-i", "-d", "hello", `${r.balancer.url}/echo`]);
    expect(res.code).toBe(0);
    expect(res.body.startsWith("HTTP/2 200")).toBe(true);
    const echoed = JSON.parse(res.body.slice(res.body.indexOf("\r\n\r\n") + 4)) as { method: string; headers: [string, string][]; body?: string };
    expect(echoed.method).toBe("POST");
    const fields = new Map(echoed.headers);
    expect(fields.get("x-forwarded-for")).toBe("127.0.0.1");
    expect(fields.get("x-forwarded-proto")).toBe("http");
    expect(fields.get("host")).toStartWith("127.0.0.1:");
  });

  test("many streams on one connection spread over the backends", async () => {
    const r = await rig(3, { strategy: "round-robin" });
    const s = http2.connect(r.balancer.url);
    s.on("error", () => {});
    try {
      const served = await Promise.all(
        Array.from({ length: 30 }, () =>
          new Promise<string>((resolve, reject) => {
            const req = s.request({ ":path": "/" });
            let body = "";
            req.setEncoding("utf8");
            req.on("data", (c: string) => (body += c));
            req.on("end", () => resolve(body));
            req.on("error", reject);
          }),
        ),
      );
      const counts = new Map<string, number>();
      for (const b of served) counts.set(b, (counts.get(b) ?? 0) + 1);
      expect(counts.size).toBe(3);
    } finally {
      s.destroy();
    }
  });

  test("over TLS: ALPN h2 and http/1.1 on one port; http2.enabled false offers no h2", async () => {
    const tls = { listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } } };
    const r = await rig(1, tls);
    const h2 = await curl(["--cacert", pki.ca, "--http2", "-i", `${r.balancer.url}/echo`]);
    expect(h2.verbose).toContain("ALPN: server accepted h2");
    expect(h2.body.startsWith("HTTP/2 200")).toBe(true);
    expect(h2.body).toContain('["x-forwarded-proto","https"]');
    const h1 = await curl(["--cacert", pki.ca, "--http1.1", "-i", `${r.balancer.url}/`]);
    expect(h1.body.startsWith("HTTP/1.1 200")).toBe(true);
    const off = await rig(1, { ...tls, http2: { enabled: false } });
    const res = await curl(["--cacert", pki.ca, "--http2", "-i", `${off.balancer.url}/`]);
    expect(res.verbose).not.toContain("server accepted h2");
    expect(res.body.startsWith("HTTP/1.1 200")).toBe(true);
  });

  for (const engine of ["fetch", "socket"] as const) {
    test(`${engine} engine: a reload that turns HTTP/2 off (and on) on a TLS listener changes what ALPN offers`, async () => {
      const r = await rig(1, { engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } } });
      const alpn = async () => {
        const res = await curl(["--cacert", pki.ca, "--http2", "-i", `${r.balancer.url}/`]);
        expect(res.body).toMatch(/^HTTP\/(2|1\.1) 200/);
        return res.verbose.includes("server accepted h2") ? "h2" : "http/1.1";
      };
      expect(await alpn()).toBe("h2");
      const running = r.balancer.config;
      // The listener is bound anew beside the old one, which goes on answering for a moment
      // (DRAIN_NOTICE_MS) before it closes: new connections reach the new one from then on.
      await r.balancer.apply({ ...running, http2: { ...running.http2, enabled: false } });
      await waitFor(async () => (await alpn()) === "http/1.1", "ALPN without h2 after the reload");
      await r.balancer.apply({ ...r.balancer.config, http2: { ...running.http2, enabled: true } });
      await waitFor(async () => (await alpn()) === "h2", "ALPN with h2 again");
    });
  }

  test.skipIf(h2load.skip)("h2load: 2,000 requests over 4 connections all succeed", async () => {
    const r = await rig(2);
    const p = Bun.spawn(["h2load", "-c4", "-m10", "-n2000", `${r.balancer.url}/`], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(p.stdout).text();
    expect(await p.exited).toBe(0);
    expect(out).toContain("2000 succeeded, 0 failed, 0 errored");
  });
});
