/**
 * TCP listeners that choose a pool by the TLS server name without terminating TLS: a TCP proxy
 * with an SNI chooser in front of two real TLS backends (Bun.listen with tls, certificates from
 * a throwaway CA), each with its own certificate and answer. A handshake that completes through
 * the proxy proves the ClientHello reached the backend untouched: its Finished message covers
 * every handshake byte (RFC 8446 §4.4.4), so a single changed byte fails it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import type { Socket, TCPSocketListener } from "bun";
import { validateConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { PassiveHealth } from "../../src/health/passive.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { CLIENT_HELLO_MAX_BYTES, startTcpProxy, type RelayTarget, type SniRouting, type TcpProxy, type TcpSettings } from "../../src/tcp/proxy.ts";
import { makePki, type Issued, type Pki } from "../helpers/pki.ts";
import { rawClient } from "../helpers/raw.ts";
import { waitFor } from "../helpers/wait.ts";
import { refusedPort } from "./helpers.ts";

let pki: Pki;
let ca: string;
let certA: Issued;
let certB: Issued;
beforeAll(async () => {
  pki = await makePki();
  ca = readFileSync(pki.ca, "utf8");
  certA = await pki.issue("a", ["a.example.com"]);
  certB = await pki.issue("b", ["b.example.com"]);
}, 30_000);
afterAll(() => pki.remove());

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

// ---- backends and pools ---------------------------------------------------------------------

interface TlsBackend {
  readonly port: number;
  /** TLS connections whose handshake completed. */
  readonly handshakes: number;
  readonly open: number;
}

/** A TLS echo that prefixes every answer with its label: "A:hello". */
function startTlsBackend(label: string, cert: Issued): TlsBackend {
  const state = { handshakes: 0, open: 0 };
  const server: TCPSocketListener<undefined> = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: Bun.file(cert.cert), key: Bun.file(cert.key) },
    socket: {
      open() {
        state.open++;
      },
      handshake(_s, success) {
        if (success) state.handshakes++;
      },
      data(s, chunk) {
        s.write(`${label}:${Buffer.from(chunk).toString("latin1")}`);
      },
      close() {
        state.open--;
      },
    },
  });
  cleanups.push(() => server.stop(true));
  return {
    port: server.port,
    get handshakes() {
      return state.handshakes;
    },
    get open() {
      return state.open;
    },
  };
}

interface Setup {
  proxy: TcpProxy;
  config: Config;
  a: TlsBackend;
  b: TlsBackend;
  poolA: LocalPool;
  poolB: LocalPool;
  targetA: RelayTarget;
  targetB: RelayTarget;
  routing: SniRouting;
  logLines: string[];
}

/** A real pool with its own passive health, as the balancer makes one per pool. */
function poolOf(config: Config, ports: number[]): { pool: LocalPool; target: RelayTarget } {
  const pool = new LocalPool(createPolicy("round-robin"), ports.map((port, i) => ({ name: `b${i}-${port}`, url: `tcp://127.0.0.1:${port}` })));
  const passive = new PassiveHealth(pool, config.passive, () => false);
  cleanups.push(() => passive.stop());
  return { pool, target: { pool, passive } };
}

/**
 * The proxy: a.example.com to pool A, b.example.com to pool B, anything else (no name included)
 * closed. `extraA` puts more backends (e.g. a refused port) before A's in pool A.
 */
async function setup(opts: { timeoutMs?: number; extraA?: number[] } = {}): Promise<Setup> {
  const a = startTlsBackend("A", certA);
  const b = startTlsBackend("B", certB);
  const config = validateConfig({
    mode: "tcp", listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false },
    backends: [{ url: `127.0.0.1:${a.port}` }],
  });
  const { pool: poolA, target: targetA } = poolOf(config, [...(opts.extraA ?? []), a.port]);
  const { pool: poolB, target: targetB } = poolOf(config, [b.port]);
  const byName = new Map<string, RelayTarget>([["a.example.com", targetA], ["b.example.com", targetB]]);
  const routing: SniRouting = {
    choose: (name) => (name === undefined ? undefined : byName.get(name)),
    timeoutMs: opts.timeoutMs ?? 10_000,
    maxBytes: CLIENT_HELLO_MAX_BYTES,
  };
  const logger = memoryLogger();
  const proxy = await startTcpProxy({ settings: settingsOf(config), pool: poolA, passive: targetA.passive, logger }, { host: "127.0.0.1", port: 0, sni: routing });
  cleanups.push(() => proxy.stop(true));
  return { proxy, config, a, b, poolA, poolB, targetA, targetB, routing, logLines: logger.lines };
}

// ---- clients --------------------------------------------------------------------------------

interface TlsOutcome {
  /** The handshake completed. */
  secure: boolean;
  /** What came back after sending the message. */
  answer: string;
  /** The certificate's subject CN the client saw. */
  cn?: string;
  error?: string;
}

/**
 * A node:tls client that verifies the backend's certificate against the test CA (for
 * `servername`), sends `message` once the handshake is done and waits for `expect` back.
 * Resolves once the connection is closed or the answer is in.
 */
function tlsExchange(port: number, servername: string | undefined, message = "hello", opts: { verify?: boolean; expect?: string } = {}): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    const out: TlsOutcome = { secure: false, answer: "" };
    const s = tls.connect({
      host: "127.0.0.1", port, ca, rejectUnauthorized: opts.verify ?? true,
      ...(servername !== undefined ? { servername } : {}),
    });
    const done = () => {
      s.destroy();
      resolve(out);
    };
    const timer = setTimeout(() => {
      out.error ??= "no answer within 10 s";
      done();
    }, 10_000);
    s.on("secureConnect", () => {
      out.secure = true;
      out.cn = (s.getPeerCertificate()?.subject as { CN?: string } | undefined)?.CN;
      s.write(message);
    });
    s.on("data", (d: Buffer) => {
      out.answer += d.toString("latin1");
      if (opts.expect !== undefined && out.answer.length >= opts.expect.length) {
        clearTimeout(timer);
        done();
      }
    });
    s.on("error", (e) => (out.error ??= e.message));
    s.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/**
 * A loopback hop between a TLS client and the proxy that passes the client's first TLS record
 * (its ClientHello) on one byte per write, yielding to the event loop between bytes, and
 * everything else as it comes.
 */
function startDribbler(proxyPort: number): { port: number } {
  interface Conn {
    upstream?: Socket<undefined>;
    pending: Uint8Array[];
    /** Bytes of the first record still to dribble; -1 until its header is known. */
    helloLeft: number;
    seen: number[];
    pumping: boolean;
    ended: boolean;
  }
  const pump = async (c: Conn) => {
    if (c.pumping || c.upstream === undefined) return;
    c.pumping = true;
    while (c.pending.length > 0) {
      const chunk = c.pending.shift()!;
      for (let i = 0; i < chunk.length; i++) {
        if (c.helloLeft === 0) {
          c.upstream.write(chunk.subarray(i));
          break;
        }
        const byte = chunk[i]!;
        if (c.seen.length < 5) {
          c.seen.push(byte);
          if (c.seen.length === 5) c.helloLeft = (c.seen[3]! << 8) | c.seen[4]!;
        } else {
          c.helloLeft--;
        }
        c.upstream.write(new Uint8Array([byte]));
        await Bun.sleep(0);
      }
    }
    c.pumping = false;
    if (c.ended) c.upstream.end();
  };
  const server = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(s) {
        const c: Conn = { pending: [], helloLeft: -1, seen: [], pumping: false, ended: false };
        s.data = c;
        c.upstream = (await rawClient(proxyPort, { onData: (chunk) => s.write(chunk), onClose: () => s.end() })).socket;
        void pump(c);
      },
      data(s, chunk) {
        s.data.pending.push(new Uint8Array(chunk));
        void pump(s.data);
      },
      close(s) {
        s.data.ended = true;
        if (!s.data.pumping) s.data.upstream?.end();
      },
    },
  });
  cleanups.push(() => server.stop(true));
  return { port: server.port };
}

// ---- the tests ------------------------------------------------------------------------------

describe("routing by server name", () => {
  test("a.example.com reaches backend A and b.example.com backend B, end to end", async () => {
    const s = await setup();
    const a = await tlsExchange(s.proxy.port, "a.example.com", "hello", { expect: "A:hello" });
    expect(a).toEqual({ secure: true, answer: "A:hello", cn: "a.example.com" });
    const b = await tlsExchange(s.proxy.port, "b.example.com", "there", { expect: "B:there" });
    expect(b).toEqual({ secure: true, answer: "B:there", cn: "b.example.com" });
    expect([s.a.handshakes, s.b.handshakes]).toEqual([1, 1]);
    await waitFor(() => s.proxy.connections === 0, "both relays to end");
    const [backendA] = s.poolA.backends;
    const [backendB] = s.poolB.backends;
    expect([backendA!.acquired, backendA!.inFlight, backendB!.acquired, backendB!.inFlight]).toEqual([1, 0, 1, 0]);
    // Every byte either way counted on the backend of the pool that was chosen.
    expect(backendA!.stats.bytesIn).toBeGreaterThan(0);
    expect(backendB!.stats.bytesOut).toBeGreaterThan(0);
    expect(s.proxy.stats.bytesIn).toBe(backendA!.stats.bytesIn + backendB!.stats.bytesIn);
    expect(s.proxy.stats).toMatchObject({ accepted: 2, sniTimeouts: 0, sniInvalid: 0, sniNotTls: 0, sniNoRoute: 0 });
  });

  test("many bytes both ways through the TLS session", async () => {
    const s = await setup();
    const big = "x".repeat(200_000);
    const r = await tlsExchange(s.proxy.port, "b.example.com", big, { expect: `B:${big}` });
    expect(r.secure).toBe(true);
    // The echo answers chunk by chunk, each prefixed: strip the prefixes and compare.
    expect(r.answer.replaceAll("B:", "")).toBe(big);
  });

  test("an unknown name, and a ClientHello with no name, are closed before any backend is dialled", async () => {
    const s = await setup();
    const c = await tlsExchange(s.proxy.port, "c.example.com");
    expect(c.secure).toBe(false);
    expect(c.answer).toBe("");
    const none = await tlsExchange(s.proxy.port, undefined);
    expect(none.secure).toBe(false);
    await waitFor(() => s.proxy.connections === 0, "both relays to end");
    expect(s.proxy.stats).toMatchObject({ accepted: 2, open: 0, sniNoRoute: 2, rejected: 0 });
    expect([s.a.open, s.b.open, s.a.handshakes, s.b.handshakes]).toEqual([0, 0, 0, 0]);
    expect(s.poolA.backends[0]!.acquired + s.poolB.backends[0]!.acquired).toBe(0);
    // Logged once, then only counted.
    expect(s.logLines.filter((l) => l.includes("no-route"))).toHaveLength(1);
    expect(s.logLines.find((l) => l.includes("no-route"))).toContain('no route for server name "c.example.com"');
  });

  test("a client that sends nothing, or half a ClientHello, is closed after the timeout", async () => {
    const s = await setup({ timeoutMs: 150 });
    const silent = await rawClient(s.proxy.port);
    cleanups.push(() => silent.terminate());
    const half = await rawClient(s.proxy.port);
    cleanups.push(() => half.terminate());
    half.send(new Uint8Array([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]));
    await silent.waitClosed();
    await half.waitClosed();
    expect(silent.received() + half.received()).toBe(0);
    expect(s.proxy.stats).toMatchObject({ accepted: 2, sniTimeouts: 2, sniInvalid: 0 });
    expect(s.poolA.backends[0]!.acquired).toBe(0);
    expect(s.logLines.filter((l) => l.includes("(timeout: no complete ClientHello within 150ms)"))).toHaveLength(1);
  });

  test("a client dribbling its ClientHello one byte at a time still gets through", async () => {
    const s = await setup();
    const hop = startDribbler(s.proxy.port);
    const r = await tlsExchange(hop.port, "a.example.com", "slowly", { expect: "A:slowly" });
    expect(r).toEqual({ secure: true, answer: "A:slowly", cn: "a.example.com" });
  });

  test("a client that is not speaking TLS is closed at its first byte", async () => {
    const s = await setup();
    const c = await rawClient(s.proxy.port);
    cleanups.push(() => c.terminate());
    c.send("GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
    await c.waitClosed();
    expect(c.received()).toBe(0);
    expect(s.proxy.stats).toMatchObject({ sniNotTls: 1, sniTimeouts: 0 });
    expect(s.a.open + s.b.open).toBe(0);
  });

  test("a malformed or oversized ClientHello, or a FIN halfway through one, is counted invalid; a bare FIN is not", async () => {
    const s = await setup();
    const bad = await rawClient(s.proxy.port);
    cleanups.push(() => bad.terminate());
    bad.send(new Uint8Array([22, 3, 1, 0, 0]));
    await bad.waitClosed();
    const halfway = await rawClient(s.proxy.port, { halfOpen: true });
    cleanups.push(() => halfway.terminate());
    halfway.send(new Uint8Array([22, 3, 1, 0, 200, 1]));
    halfway.shutdown();
    await halfway.waitClosed();
    // A ClientHello that says it is 1 MiB long: refused from its first 9 bytes, nothing buffered for it.
    const huge = await rawClient(s.proxy.port);
    cleanups.push(() => huge.terminate());
    huge.send(new Uint8Array([22, 3, 1, 0x40, 0x00, 1, 0x10, 0x00, 0x00]));
    await huge.waitClosed();
    const bare = await rawClient(s.proxy.port, { halfOpen: true });
    cleanups.push(() => bare.terminate());
    bare.shutdown();
    await bare.waitClosed();
    await waitFor(() => s.proxy.connections === 0, "every relay to end");
    expect(s.proxy.stats).toMatchObject({ accepted: 4, open: 0, sniInvalid: 3, sniTimeouts: 0, sniNotTls: 0, sniNoRoute: 0 });
    expect(s.logLines.filter((l) => l.includes("(invalid:"))).toHaveLength(1);
  });

  test("a refused backend in the chosen pool is passed over and the ClientHello goes to the next", async () => {
    const s = await setup({ extraA: [refusedPort()] });
    for (const m of ["one", "two"]) {
      const r = await tlsExchange(s.proxy.port, "a.example.com", m, { expect: `A:${m}` });
      expect(r).toEqual({ secure: true, answer: `A:${m}`, cn: "a.example.com" });
    }
    // Round robin offers the refused backend to one of the two connections; it is then down.
    expect(s.proxy.stats).toMatchObject({ connectFailures: 1, retries: 1, unreachable: 0 });
    expect(s.a.handshakes).toBe(2);
  });

  test("configure() swaps the chooser for connections accepted from then on", async () => {
    const s = await setup();
    const held = await rawClient(s.proxy.port);
    cleanups.push(() => held.terminate());
    // Every name to pool B now; the connection already open keeps the chooser it started with.
    s.proxy.configure(settingsOf(s.config), { sni: { ...s.routing, choose: () => s.targetB } });
    const r = await tlsExchange(s.proxy.port, "a.example.com", "swapped", { verify: false, expect: "B:swapped" });
    expect(r).toMatchObject({ secure: true, answer: "B:swapped", cn: "b.example.com" });
    // Off: no ClientHello is read, every connection goes to the listener's own pool (A).
    s.proxy.configure(settingsOf(s.config), { sni: undefined });
    const plain = await tlsExchange(s.proxy.port, "b.example.com", "plain", { verify: false, expect: "A:plain" });
    expect(plain).toMatchObject({ secure: true, answer: "A:plain", cn: "a.example.com" });
    // Omitted: the current setting (off) stays.
    s.proxy.configure(settingsOf(s.config));
    const still = await tlsExchange(s.proxy.port, "c.example.com", "still", { verify: false, expect: "A:still" });
    expect(still.answer).toBe("A:still");
    expect(s.proxy.stats.sniNoRoute).toBe(0);
  });

  test("a listener cannot both terminate TLS and route by the server name it passes on", async () => {
    const s = await setup();
    const { readTlsMaterial } = await import("../../src/tls/certificates.ts");
    const material = readTlsMaterial({ cert: certA.cert, key: certA.key, sni: [] } as unknown as Parameters<typeof readTlsMaterial>[0]);
    await expect(startTcpProxy({ settings: settingsOf(s.config), pool: s.poolA, passive: s.targetA.passive, logger: memoryLogger() }, { host: "127.0.0.1", port: 0, tls: material, sni: s.routing })).rejects.toThrow(
      /either terminates TLS \(tls\) or routes by the server name/,
    );
  });
});

/** A TCP listener's settings as the listener builds them from a config (src/listener/tcp.ts). */
function settingsOf(c: Config): TcpSettings {
  return { timeouts: { connect: c.timeouts.connect, idle: c.timeouts.idle }, retry: c.retry, hash: c.hash };
}
