/**
 * PROXY protocol with a real peer on both sides (Debian's HAProxy):
 * - HAProxy `send-proxy` / `send-proxy-v2` in front of a listener with `proxyProtocol: true`:
 *   the client HAProxy saw (a connection from 127.0.0.2) is the client everywhere after it
 *   (X-Forwarded-For at the backend, the access log, the PROXY header a TCP relay sends on);
 * - HAProxy `accept-proxy` as a backend behind a pool with `proxyProtocol: v1 | v2`: HAProxy's
 *   `%[src]` is the client's address, per client even over kept-alive upstream connections;
 * - peers not in trustedProxies, garbage, oversized and slow headers are closed.
 * The listener side needs the socket engine (the fetch engine is refused at load, tested here).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import tls from "node:tls";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";
import { requirePrograms } from "../helpers/system.ts";
import { waitFor } from "../helpers/wait.ts";
import { validateConfig } from "../../src/config/load.ts";
import { encodeProxyHeader } from "../../src/net/proxy-protocol.ts";
import { startBalancer } from "../../src/balancer.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { rawClient } from "../helpers/raw.ts";
import { makePki, type Pki } from "../helpers/pki.ts";

const programs = requirePrograms("the PROXY protocol tests with HAProxy", { haproxy: "haproxy" });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** HAProxy with this config body (after global/defaults), stopped after the test; resolves once `port` accepts. */
async function haproxy(body: string, port: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-pp-haproxy-"));
  const cfg = join(dir, "haproxy.cfg");
  await Bun.write(cfg, `global\n  maxconn 256\ndefaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n${body}\n`);
  const proc = Bun.spawn([programs.path("haproxy"), "-db", "-f", cfg], { stdout: "ignore", stderr: "pipe" });
  cleanups.push(async () => {
    proc.kill();
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(() => connects(port), "HAProxy to listen");
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

interface Talk {
  /** Everything received until the peer closed (or the timeout). */
  text: string;
  /** The peer closed the connection (FIN or reset) before the timeout. */
  closed: boolean;
}

/**
 * A client from `from` (a loopback address of its own: 127.0.0.2 is not the proxies' 127.0.0.1)
 * that writes `parts` (with `gapMs` between them) and reads until the peer closes, or `until`
 * holds, or timeoutMs.
 */
function talk(port: number, parts: (string | Uint8Array)[], o: { from?: string; until?: (t: string) => boolean; timeoutMs?: number; gapMs?: number } = {}): Promise<Talk> {
  return new Promise((resolve) => {
    let text = "";
    let done = false;
    const s = net.connect({ host: "127.0.0.1", port, localAddress: o.from ?? "127.0.0.1" });
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(() => finish(false), o.timeoutMs ?? 5000);
    s.on("data", (d) => {
      text += d.toString("latin1");
      if (o.until?.(text)) finish(false);
    });
    s.on("close", () => finish(true));
    s.on("error", () => finish(true));
    s.once("connect", async () => {
      for (const p of parts) {
        if (done) return;
        s.write(p);
        if (o.gapMs) await Bun.sleep(o.gapMs);
      }
    });
  });
}

const answered = (t: string) => /\r\n\r\n[\s\S]*ok \d+/.test(t) || /^HTTP\/1\.1 [45]\d\d/.test(t) && t.includes("\r\n\r\n");
const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: example.test\r\n\r\n`;

/** A rig (socket engine) with one HTTP listener that takes PROXY headers from 127.0.0.1. */
async function acceptingRig(backend: RecordingBackend, extra: Record<string, unknown> = {}): Promise<TestRig> {
  const rig = await startRig(0, {
    engine: "socket",
    listen: undefined,
    listeners: [{ name: "web", host: "127.0.0.1", port: 0, proxyProtocol: true }],
    trustedProxies: ["127.0.0.1"],
    backends: [{ name: "rec", url: backend.url }],
    ...extra,
  });
  cleanups.push(() => rig.stop());
  return rig;
}

function header(name: string, req: { headers: [string, string][] } | undefined): string | undefined {
  return req?.headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

/**
 * A TCP backend that records what each connection gets (a PROXY header, then the data; HAProxy's
 * readiness probe, relayed too, is a connection of its own without data), and writes what
 * `reply` gives for the bytes so far: by default "pong" once "ping" came.
 */
function recordingTcp(reply: (got: string) => string | undefined = (g) => (g.includes("ping") ? "pong" : undefined)): { got: string[]; port: number } {
  const got: string[] = [];
  const server = Bun.listen<{ i: number }>({
    hostname: "127.0.0.1", port: 0,
    socket: {
      open(s) { s.data = { i: got.push("") - 1 }; },
      data(s, d) {
        got[s.data.i] += Buffer.from(d).toString("latin1");
        const out = reply(got[s.data.i]!);
        if (out !== undefined) s.write(out);
      },
    },
  });
  cleanups.push(() => server.stop(true));
  return { got, port: server.port };
}

describe("accepting: HAProxy send-proxy in front of a proxyProtocol listener", () => {
  for (const send of ["send-proxy", "send-proxy-v2"]) {
    test.skipIf(programs.skip)(`${send}: the backend and the access log see the client HAProxy saw`, async () => {
      programs.assertPresent();
      const backend = startRecordingBackend();
      cleanups.push(() => backend.stop());
      const rig = await acceptingRig(backend);
      const front = await freePort();
      await haproxy(`frontend fe\n  mode tcp\n  bind 127.0.0.1:${front}\n  default_backend sy\nbackend sy\n  mode tcp\n  server s1 127.0.0.1:${rig.balancer.port} ${send}\n`, front);
      const r = await talk(front, [GET("/who")], { from: "127.0.0.2", until: answered });
      expect(r.text).toStartWith("HTTP/1.1 200");
      const seen = backend.requests.find((q) => q.url === "/who");
      expect(header("x-forwarded-for", seen)).toBe("127.0.0.2");
      await waitFor(() => rig.access.some((l) => l.includes("/who")), "the access log line");
      expect(rig.access.find((l) => l.includes("/who"))).toContain(" 127.0.0.2 ");
    });
  }

  test.skipIf(programs.skip)("a TCP listener relays as from the named client, and passes it on in its own PROXY header", async () => {
    programs.assertPresent();
    // The TCP backend records what each connection gets: the relay's v1 header, then the data
    // (HAProxy's readiness probe, relayed too, is a connection of its own without data).
    const { got, port: tcpPort } = recordingTcp();
    const rig = await startRig(0, {
      listen: undefined,
      listeners: [{ name: "l4", host: "127.0.0.1", port: 0, mode: "tcp", pool: "raw", proxyProtocol: true }],
      trustedProxies: ["127.0.0.1/32"],
      backends: undefined,
      pools: { raw: { proxyProtocol: "v1", backends: [{ url: `tcp://127.0.0.1:${tcpPort}` }] } },
    });
    cleanups.push(() => rig.stop());
    const front = await freePort();
    await haproxy(`frontend fe\n  mode tcp\n  bind 127.0.0.1:${front}\n  default_backend sy\nbackend sy\n  mode tcp\n  server s1 127.0.0.1:${rig.balancer.port} send-proxy-v2\n`, front);
    const r = await talk(front, ["ping"], { from: "127.0.0.2", until: (t) => t.includes("pong") });
    expect(r.text).toBe("pong");
    // 127.0.0.2 as HAProxy saw it, to HAProxy's frontend port; then the client's bytes, untouched.
    expect(got.find((g) => g.includes("ping"))).toMatch(new RegExp(`^PROXY TCP4 127\\.0\\.0\\.2 127\\.0\\.0\\.1 \\d+ ${front}\\r\\nping$`));
  });
});

/**
 * The header before the TLS handshake, as HAProxy sends it to an `ssl` server (HAProxy's
 * `send-proxy ssl`: an NLB in front of a TLS-terminating balancer is the same): the listener
 * reads the header, then the ClientHello (src/tls/hello-first.ts).
 */
describe("accepting on a TLS listener: HAProxy send-proxy ... ssl", () => {
  let pki: Pki | undefined;
  afterAll(async () => pki?.remove());
  /** A socket-engine rig whose HTTPS listener takes PROXY headers from 127.0.0.1, in front of `backend`. */
  const tlsRig = async (backend: RecordingBackend): Promise<TestRig> => {
    pki ??= await makePki();
    const pair = await pki.issue(`pp${Math.random().toString(36).slice(2, 8)}`, ["a.test"]);
    const rig = await startRig(0, {
      engine: "socket",
      listen: undefined,
      listeners: [{ name: "web", host: "127.0.0.1", port: 0, proxyProtocol: true, tls: { cert: pair.cert, key: pair.key } }],
      trustedProxies: ["127.0.0.1"],
      backends: [{ name: "rec", url: backend.url }],
    });
    cleanups.push(() => rig.stop());
    return rig;
  };

  for (const send of ["send-proxy", "send-proxy-v2"]) {
    test.skipIf(programs.skip)(`${send} to an HTTPS listener: the backend and the access log see the client HAProxy saw`, async () => {
      programs.assertPresent();
      const backend = startRecordingBackend();
      cleanups.push(() => backend.stop());
      const rig = await tlsRig(backend);
      const front = await freePort();
      await haproxy(`frontend fe\n  mode tcp\n  bind 127.0.0.1:${front}\n  default_backend sy\nbackend sy\n  mode tcp\n  server s1 127.0.0.1:${rig.balancer.port} ${send} ssl verify none sni str(a.test)\n`, front);
      const r = await talk(front, [GET("/tls-who")], { from: "127.0.0.2", until: answered });
      expect(r.text).toStartWith("HTTP/1.1 200");
      const seen = backend.requests.find((q) => q.url === "/tls-who");
      expect(header("x-forwarded-for", seen)).toBe("127.0.0.2");
      expect(header("x-forwarded-proto", seen)).toBe("https");
      await waitFor(() => rig.access.some((l) => l.includes("/tls-who")), "the access log line");
      expect(rig.access.find((l) => l.includes("/tls-who"))).toContain(" 127.0.0.2 ");
    });
  }

  test.skipIf(programs.skip)("a TCP listener terminating TLS reads the header first, and passes the named client on in its own", async () => {
    programs.assertPresent();
    const { got, port: tcpPort } = recordingTcp();
    pki ??= await makePki();
    const pair = await pki.issue("pp-tcp", ["a.test"]);
    const rig = await startRig(0, {
      listen: undefined,
      listeners: [{ name: "l4", host: "127.0.0.1", port: 0, mode: "tcp", pool: "raw", proxyProtocol: true, tls: { cert: pair.cert, key: pair.key } }],
      trustedProxies: ["127.0.0.1/32"],
      backends: undefined,
      pools: { raw: { proxyProtocol: "v1", backends: [{ url: `tcp://127.0.0.1:${tcpPort}` }] } },
    });
    cleanups.push(() => rig.stop());
    const front = await freePort();
    await haproxy(`frontend fe\n  mode tcp\n  bind 127.0.0.1:${front}\n  default_backend sy\nbackend sy\n  mode tcp\n  server s1 127.0.0.1:${rig.balancer.port} send-proxy-v2 ssl verify none\n`, front);
    const r = await talk(front, ["ping"], { from: "127.0.0.2", until: (t) => t.includes("pong") });
    expect(r.text).toBe("pong");
    // Decrypted by the listener: the backend gets the relay's header naming 127.0.0.2, then the plain bytes.
    expect(got.find((g) => g.includes("ping"))).toMatch(new RegExp(`^PROXY TCP4 127\\.0\\.0\\.2 127\\.0\\.0\\.1 \\d+ ${front}\\r\\nping$`));
  });

  test("a peer not trusted is closed before its handshake, a bad header is closed, and both are counted", async () => {
    const backend = startRecordingBackend();
    cleanups.push(() => backend.stop());
    const rig = await tlsRig(backend);
    const port = rig.balancer.port;
    // From 127.0.0.2, not trusted: closed with nothing read.
    expect((await talk(port, [encodeProxyHeader(1, { address: "192.0.2.1", port: 1 }, { address: "127.0.0.1", port })], { from: "127.0.0.2", timeoutMs: 3000 })).closed).toBe(true);
    // A ClientHello where the header should be: closed, never handshaken.
    const hello = tls.connect({ host: "127.0.0.1", port, servername: "a.test", rejectUnauthorized: false });
    const outcome = await new Promise<string>((resolve) => {
      hello.once("secureConnect", () => resolve("secure"));
      hello.once("error", (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      hello.once("close", () => resolve("closed"));
    });
    hello.destroy();
    expect(outcome).not.toBe("secure");
    await waitFor(() => rig.balancer.traffic.proxyErrors.SY_PROXY_PROTOCOL_REFUSED === 2, "both refusals counted");
    expect(backend.requests).toEqual([]);
    expect(rig.logLines.some((l) => l.includes("PROXY protocol: the peer is not in trustedProxies"))).toBe(true);
  });
});

describe("accepting before SNI routing", () => {
  test("a TCP listener reads the header, then routes by the ClientHello after it, and passes the client on", async () => {
    // Two TCP backends recording their connections' bytes (TLS is not answered: the ClientHello is enough).
    const seen: Record<string, Buffer> = { a: Buffer.alloc(0), b: Buffer.alloc(0) };
    const backends = (["a", "b"] as const).map((n) =>
      Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data(_s, d) { seen[n] = Buffer.concat([seen[n]!, Buffer.from(d)]); } } }),
    );
    cleanups.push(() => backends.forEach((b) => b.stop(true)));
    const rig = await startRig(0, {
      listen: undefined,
      listeners: [{ name: "sni", host: "127.0.0.1", port: 0, mode: "tcp", proxyProtocol: true }],
      trustedProxies: ["127.0.0.1"],
      backends: undefined,
      pools: {
        a: { proxyProtocol: "v2", backends: [{ url: `tcp://127.0.0.1:${backends[0]!.port}` }] },
        b: { backends: [{ url: `tcp://127.0.0.1:${backends[1]!.port}` }] },
      },
      routes: [
        { name: "ra", match: { sni: "a.test" }, pool: "a" },
        { name: "rb", match: { sni: "b.test" }, pool: "b" },
      ],
    });
    cleanups.push(() => rig.stop());
    const raw = net.connect({ host: "127.0.0.1", port: rig.balancer.port });
    await new Promise((r) => raw.once("connect", r));
    raw.write(encodeProxyHeader(1, { address: "203.0.113.9", port: 5555 }, { address: "198.51.100.2", port: 443 }));
    const t = tls.connect({ socket: raw, servername: "a.test", rejectUnauthorized: false });
    t.on("error", () => {});
    cleanups.push(() => t.destroy());
    await waitFor(() => seen.a!.length > 28 + 5, "pool a's backend to get the header and the ClientHello");
    // Pool a's own v2 header names the client from the incoming header, then the TLS record.
    expect(seen.a!.subarray(0, 28)).toEqual(Buffer.from(encodeProxyHeader(2, { address: "203.0.113.9", port: 5555 }, { address: "198.51.100.2", port: 443 })));
    expect(seen.a![28]).toBe(0x16);
    expect(seen.b!.length).toBe(0);
  });
});

describe("accepting: who and what is closed", () => {
  test("a peer not in trustedProxies is closed before anything is read (HTTP and TCP listeners)", async () => {
    const backend = startRecordingBackend();
    cleanups.push(() => backend.stop());
    const rig = await acceptingRig(backend, { trustedProxies: ["10.0.0.0/8"] });
    const valid = encodeProxyHeader(2, { address: "192.0.2.1", port: 1234 }, { address: "127.0.0.1", port: 80 });
    const r = await talk(rig.balancer.port, [valid, GET("/untrusted")]);
    expect(r).toEqual({ text: "", closed: true });
    expect(backend.requests.length).toBe(0);
    expect(rig.logLines.some((l) => l.includes("not in trustedProxies"))).toBe(true);

    const tcpBackend = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => tcpBackend.stop(true));
    const tcp = await startRig(0, {
      listen: undefined,
      listeners: [{ name: "l4", host: "127.0.0.1", port: 0, mode: "tcp", pool: "raw", proxyProtocol: true }],
      trustedProxies: ["10.0.0.0/8"],
      backends: undefined,
      pools: { raw: { backends: [{ url: `tcp://127.0.0.1:${tcpBackend.port}` }] } },
    });
    cleanups.push(() => tcp.stop());
    expect(await talk(tcp.balancer.port, [valid, "hello"])).toEqual({ text: "", closed: true });
    expect(tcp.balancer.tcpStats?.proxyRefused).toBe(1);
  });

  test("no header, a garbage one, an oversized one, or one too slow: closed without an answer", async () => {
    const backend = startRecordingBackend();
    cleanups.push(() => backend.stop());
    const rig = await acceptingRig(backend, { timeouts: { header: "300ms" } });
    const port = rig.balancer.port;
    expect(await talk(port, [GET("/plain")])).toEqual({ text: "", closed: true });
    expect(await talk(port, ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", GET("/garbage")])).toEqual({ text: "", closed: true });
    expect(await talk(port, [`PROXY UNKNOWN ${"x".repeat(200)}`])).toEqual({ text: "", closed: true });
    const v2 = Buffer.from(encodeProxyHeader(2, { address: "192.0.2.1", port: 1 }, { address: "127.0.0.1", port: 2 }));
    v2.writeUInt16BE(0xf000, 14); // a v2 length past the bound
    expect(await talk(port, [v2])).toEqual({ text: "", closed: true });
    // Slow: half a header, then nothing; the header deadline closes it (no 408: HTTP never began).
    expect(await talk(port, ["PROXY TCP4 192.0.2.1"], { timeoutMs: 10_000 })).toEqual({ text: "", closed: true });
    expect(backend.requests.length).toBe(0);
    // Each counted where the operator looks: /stats proxyErrors and /metrics (socket engine).
    if (rig.balancer.config.engine === "socket") await waitFor(() => rig.balancer.traffic.proxyErrors.SY_PROXY_PROTOCOL_REFUSED === 5, "five PROXY refusals counted");
    // A valid header dribbled a few bytes at a time, then the request, goes through.
    const h = "PROXY TCP4 192.0.2.9 127.0.0.1 4444 80\r\n";
    const pieces = h.match(/.{1,5}/gs)!;
    const ok = await talk(port, [...pieces, GET("/dribbled")], { gapMs: 5, until: answered });
    expect(ok.text).toStartWith("HTTP/1.1 200");
    expect(header("x-forwarded-for", backend.requests.find((q) => q.url === "/dribbled"))).toBe("192.0.2.9");
    // A v2 LOCAL header (a health check of the proxy's own) keeps the peer's address.
    const local = Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00]);
    const l = await talk(port, [local, GET("/local")], { until: answered });
    expect(l.text).toStartWith("HTTP/1.1 200");
    expect(header("x-forwarded-for", backend.requests.find((q) => q.url === "/local"))).toBe("127.0.0.1");
  });
});

describe("accepting on a TCP listener: what is closed", () => {
  test("garbage, oversized and slow headers are closed before dialling and counted; a bare port check is not", async () => {
    let dialled = 0;
    const tcpBackend = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open() { dialled++; }, data() {} } });
    cleanups.push(() => tcpBackend.stop(true));
    const rig = await startRig(0, {
      listen: undefined,
      listeners: [{ name: "l4", host: "127.0.0.1", port: 0, mode: "tcp", pool: "raw", proxyProtocol: true }],
      trustedProxies: ["127.0.0.1"],
      timeouts: { header: "300ms" },
      backends: undefined,
      pools: { raw: { backends: [{ url: `tcp://127.0.0.1:${tcpBackend.port}` }] } },
    });
    cleanups.push(() => rig.stop());
    const port = rig.balancer.port;
    expect(await talk(port, ["SSH-2.0-OpenSSH_9.2\r\n"])).toEqual({ text: "", closed: true });
    expect(await talk(port, [`PROXY TCP4 ${"9".repeat(150)}`])).toEqual({ text: "", closed: true });
    expect(await talk(port, ["PROXY TCP4 192.0.2.1"], { timeoutMs: 10_000 })).toEqual({ text: "", closed: true });
    expect(rig.balancer.tcpStats?.proxyRefused).toBe(3);
    // Connect and close at once (a port check): closed, not counted.
    await new Promise<void>((resolve) => net.connect({ host: "127.0.0.1", port }).once("connect", function (this: net.Socket) { this.end(); resolve(); }));
    await waitFor(() => rig.balancer.tcpStats?.open === 0, "the port check's relay to end");
    expect(rig.balancer.tcpStats?.proxyRefused).toBe(3);
    expect(dialled).toBe(0);
  });
});

describe("sending: HAProxy accept-proxy as a backend behind a pool with proxyProtocol", () => {
  for (const version of ["v1", "v2"]) {
    test.skipIf(programs.skip)(`${version}: HAProxy's %[src] is each client's address, kept-alive connections included`, async () => {
      programs.assertPresent();
      const backend = startRecordingBackend();
      cleanups.push(() => backend.stop());
      const hap = await freePort();
      await haproxy(
        `frontend fe\n  mode http\n  bind 127.0.0.1:${hap} accept-proxy\n  http-request set-header X-Src %[src]\n  http-request set-header X-Src-Port %[src_port]\n  default_backend rec\nbackend rec\n  mode http\n  server r 127.0.0.1:${backend.port}\n`,
        hap,
      );
      const rig = await startRig(0, {
        engine: "socket",
        backends: undefined,
        pools: { behind: { proxyProtocol: version, backends: [{ url: `http://127.0.0.1:${hap}` }] } },
      });
      cleanups.push(() => rig.stop());
      const port = rig.balancer.port;
      // Two clients from two addresses, one after the other, each with two requests on its own
      // kept-alive connection: each request reaches HAProxy as from its own client.
      for (const from of ["127.0.0.2", "127.0.0.3"]) {
        const r = await talk(port, [GET(`/a-${from}`), GET(`/b-${from}`)], { from, until: (t) => (t.match(/ok \d+/g) ?? []).length === 2, gapMs: 50 });
        expect(r.text).toStartWith("HTTP/1.1 200");
      }
      for (const from of ["127.0.0.2", "127.0.0.3"]) {
        for (const p of ["a", "b"]) expect(header("x-src", backend.requests.find((q) => q.url === `/${p}-${from}`))).toBe(from);
      }
      // The port is the client's too: one client connection, one source port.
      const ports = ["a", "b"].map((p) => header("x-src-port", backend.requests.find((q) => q.url === `/${p}-127.0.0.2`)));
      expect(ports[0]).toBe(ports[1]);
    });
  }

  test.skipIf(programs.skip)("HTTP health checks reach an accept-proxy backend with a LOCAL header", async () => {
    programs.assertPresent();
    const backend = startRecordingBackend();
    cleanups.push(() => backend.stop());
    const hap = await freePort();
    await haproxy(
      `frontend fe\n  mode http\n  bind 127.0.0.1:${hap} accept-proxy\n  http-request set-header X-Src %[src]\n  default_backend rec\nbackend rec\n  mode http\n  server r 127.0.0.1:${backend.port}\n`,
      hap,
    );
    const rig = await startRig(0, {
      engine: "socket",
      backends: undefined,
      healthCheck: { path: "/health", interval: "100ms", timeout: "1s", rise: 1, fall: 1 },
      pools: { behind: { proxyProtocol: "v2", backends: [{ name: "hap", url: `http://127.0.0.1:${hap}` }] } },
    });
    cleanups.push(() => rig.stop());
    const b = rig.balancer.pools.get("behind")!.pool.backends[0]!;
    await waitFor(() => backend.requests.filter((q) => q.url === "/health").length >= 2, "two health checks through HAProxy");
    expect(b.lastCheck).toMatchObject({ ok: true });
    const probe = backend.requests.find((q) => q.url === "/health")!;
    expect(header("user-agent", probe)).toBe("switchyard-health-check");
    // LOCAL: HAProxy takes the connection's own source, the proxy's.
    expect(header("x-src", probe)).toBe("127.0.0.1");
  });

  test.skipIf(programs.skip)("a TCP listener sends the header to HAProxy accept-proxy in TCP mode", async () => {
    programs.assertPresent();
    const backend = startRecordingBackend();
    cleanups.push(() => backend.stop());
    const hap = await freePort();
    await haproxy(
      `frontend fe\n  mode http\n  bind 127.0.0.1:${hap} accept-proxy\n  http-request set-header X-Src %[src]\n  default_backend rec\nbackend rec\n  mode http\n  server r 127.0.0.1:${backend.port}\n`,
      hap,
    );
    const rig = await startRig(0, {
      listen: undefined,
      listeners: [{ name: "l4", host: "127.0.0.1", port: 0, mode: "tcp", pool: "hap" }],
      backends: undefined,
      pools: { hap: { proxyProtocol: "v2", backends: [{ url: `tcp://127.0.0.1:${hap}` }] } },
    });
    cleanups.push(() => rig.stop());
    const r = await talk(rig.balancer.port, [GET("/l4")], { from: "127.0.0.2", until: answered });
    expect(r.text).toStartWith("HTTP/1.1 200");
    expect(header("x-src", backend.requests.find((q) => q.url === "/l4"))).toBe("127.0.0.2");
  });
});

describe("a reload turns sending on and off (socket engine)", () => {
  test("kept-alive connections made without the header are not used for it, and those with it are closed when it is off", async () => {
    const { got, port: recPort } = recordingTcp((g) => (g.endsWith("\r\n\r\n") ? "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" : undefined));
    const config = (proxyProtocol?: string) =>
      validateConfig({
        engine: "socket", listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false },
        pools: { p: { ...(proxyProtocol !== undefined ? { proxyProtocol } : {}), backends: [{ name: "rec", url: `http://127.0.0.1:${recPort}` }] } },
      });
    const balancer = await startBalancer(config(), { env: {}, logger: memoryLogger() });
    cleanups.push(() => balancer.stop(false));
    const c = await rawClient(balancer.port);
    cleanups.push(() => c.terminate());
    const ask = async (n: number) => {
      c.send(GET(`/r${n}`));
      await c.waitFor((t) => (t.match(/\r\n\r\nok/g) ?? []).length === n, `answer ${n}`);
    };
    const connOf = (n: number) => got.findIndex((g) => g.includes(`GET /r${n} `));
    await ask(1);
    await balancer.apply(config("v1"));
    await ask(2);
    expect(connOf(2)).not.toBe(connOf(1));
    expect(got[connOf(2)]).toStartWith("PROXY TCP4 127.0.0.1 127.0.0.1 ");
    await ask(3);
    expect(connOf(3)).toBe(connOf(2)); // the same client: its own connection, reused
    await balancer.apply(config());
    await ask(4);
    // Off again: the connection that named a client is not reused; the plain one is.
    expect(connOf(4)).toBe(connOf(1));
    expect(got[connOf(1)]).toStartWith("GET /r1 ");
  });
});

describe("with workers", () => {
  test("each worker reads the header on its listener and sends the pool's on its upstream connections", async () => {
    // A backend that records each connection's bytes and answers every request it sees.
    const { got, port: recPort } = recordingTcp((g) => (g.endsWith("\r\n\r\n") ? "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok 1" : undefined));
    const balancer = await startBalancer(
      validateConfig({
        engine: "socket", workers: 2, admin: false, healthCheck: false, log: { access: false },
        trustedProxies: ["127.0.0.1"],
        listeners: [{ name: "web", host: "127.0.0.1", port: 0, proxyProtocol: true }],
        pools: { behind: { proxyProtocol: "v1", backends: [{ name: "rec", url: `http://127.0.0.1:${recPort}` }] } },
      }),
      { env: {}, logger: memoryLogger() },
    );
    cleanups.push(() => balancer.stop(false));
    const port = Number(new URL(balancer.urls.web!).port);
    // Several connections, so that both workers are likely to take some; each names its own client.
    for (let i = 1; i <= 4; i++) {
      const h = encodeProxyHeader(i % 2 === 0 ? 2 : 1, { address: `192.0.2.${i}`, port: 1000 + i }, { address: "198.51.100.1", port: 443 });
      const r = await talk(port, [h, GET(`/w${i}`)], { until: answered });
      expect(r.text).toStartWith("HTTP/1.1 200");
    }
    for (let i = 1; i <= 4; i++) {
      const conn = got.find((g) => g.includes(`GET /w${i} `));
      expect(conn).toStartWith(`PROXY TCP4 192.0.2.${i} 198.51.100.1 ${1000 + i} 443\r\nGET /w${i} `);
      expect(conn!.toLowerCase()).toContain(`x-forwarded-for: 192.0.2.${i}\r\n`);
    }
  });
});

describe("config", () => {
  const base = { listen: undefined, listeners: [{ name: "web", port: 8080, proxyProtocol: true }], trustedProxies: ["10.0.0.0/8"], backends: [{ url: "http://127.0.0.1:9000" }] };

  test("the fetch engine refuses what it cannot do, saying why", () => {
    expect(() => validateConfig({ ...base, engine: "fetch" })).toThrow(/listeners\[0\]\.proxyProtocol: true on an HTTP listener with engine "fetch"; expected engine "socket" \(Bun\.serve gives no access/);
    expect(() =>
      validateConfig({ engine: "fetch", pools: { api: { proxyProtocol: "v2", backends: [{ url: "http://127.0.0.1:9000" }] } }, routes: [{ name: "r", match: {}, pool: "api" }] }),
    ).toThrow(/pools\.api\.proxyProtocol: "v2" on a pool HTTP routes use with engine "fetch"; expected engine "socket"/);
    // A TCP listener on the fetch engine is fine: the relay reads and writes raw bytes.
    expect(() =>
      validateConfig({ engine: "fetch", trustedProxies: ["10.0.0.0/8"], listeners: [{ name: "l4", port: 9, mode: "tcp", pool: "t", proxyProtocol: true }], pools: { t: { proxyProtocol: "v1", backends: [{ url: "tcp://127.0.0.1:9000" }] } } }),
    ).not.toThrow();
  });

  test("not to https:// backends: the header goes before the TLS handshake", () => {
    expect(() => validateConfig({ pools: { api: { proxyProtocol: "v2", backends: [{ url: "http://127.0.0.1:9000" }, { url: "https://127.0.0.1:9443" }] } } })).toThrow(
      /pools\.api\.backends\[1\]: an https:\/\/ backend in a pool with proxyProtocol; expected http:\/\/ backends/,
    );
  });

  test("a mirror pool cannot send a PROXY header (mirror copies go through fetch)", () => {
    expect(() =>
      validateConfig({
        pools: { main: { backends: [{ url: "http://127.0.0.1:9000" }] }, shadow: { proxyProtocol: "v1", backends: [{ url: "http://127.0.0.1:9001" }] } },
        routes: [{ name: "r", match: {}, pool: "main", mirror: { pool: "shadow" } }],
      }),
    ).toThrow(/routes\[0\]\.mirror\.pool: "shadow" sends a PROXY header \(pools\.shadow\.proxyProtocol\); expected a pool without one/);
  });

  test("accepting needs trustedProxies; a bad version names the field", () => {
    expect(() => validateConfig({ ...base, trustedProxies: [] })).toThrow(/listeners\[0\]\.proxyProtocol: true, but trustedProxies is empty/);
    expect(() => validateConfig({ pools: { api: { proxyProtocol: "v3", backends: [{ url: "http://127.0.0.1:9000" }] } } })).toThrow(/pools\.api\.proxyProtocol.*expected "v1" or "v2"/);
    const c = validateConfig({ ...base, engine: "socket" });
    expect(c.listeners[0]!.proxyProtocol).toBe(true);
    expect(validateConfig({ backends: [{ url: "http://127.0.0.1:9000" }] }).listeners[0]!.proxyProtocol).toBe(false);
    expect(validateConfig({ pools: { api: { proxyProtocol: "v1", backends: [{ url: "http://127.0.0.1:9000" }] } } }).pools.api!.proxyProtocol).toBe("v1");
  });
});
