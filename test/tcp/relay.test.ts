/**
 * TCP mode end to end: a real balancer (the rig with mode "tcp") in front of real
 * Bun.listen backends on loopback.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Balancer } from "../../src/balancer.ts";
import { startTcpProxy } from "../../src/tcp/proxy.ts";
import type { Backend } from "../../src/pool/backend.ts";
import {
  payloadHash, refusedPort, startBlackhole, startEarlyFinServer, startEchoServer,
  startSummaryServer, streamThrough,
} from "./helpers.ts";
import { waitFor } from "../helpers/wait.ts";
import { startRig } from "../helpers/balancer.ts";
import { rawClient, type RawClient } from "../helpers/raw.ts";

/** The raw client, half-open: a FIN from either side leaves the other direction flowing. */
const connectClient = (port: number) => rawClient(port, { halfOpen: true });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function track<T extends { stop(): unknown }>(x: T): T {
  cleanups.push(() => x.stop());
  return x;
}

async function tcpBalancer(backends: { url: string; disabled?: boolean }[], extra: Record<string, unknown> = {}): Promise<Balancer> {
  const rig = await startRig(0, { mode: "tcp", strategy: "round-robin", ...extra, backends });
  cleanups.push(() => rig.stop());
  return rig.balancer;
}

describe("relay", () => {
  test("100 MB each way through one connection comes back byte-identical", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}` }]);
    const size = 100 * 1024 * 1024;
    const r = await streamThrough(lb.port, size, { timeoutMs: 30_000 });
    expect(r.received).toBe(size);
    expect(r.receivedHash).toBe(r.sentHash);
    expect(r.sentHash).toBe(payloadHash(size));
    const b = lb.pool.backends[0]!;
    await waitFor(() => b.inFlight === 0, "the lease to be released");
    expect(b.stats.bytesIn).toBe(size);
    expect(b.stats.bytesOut).toBe(size);
    expect(b.acquired).toBe(1);
  }, 30_000);

  test("many small connections at once each get their own bytes back", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `tcp://127.0.0.1:${echo.port}` }]);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => streamThrough(lb.port, 1000 + i * 997)));
    for (const r of results) expect(r.receivedHash).toBe(r.sentHash);
    await waitFor(() => lb.pool.backends[0]!.inFlight === 0, "every lease released");
    expect(lb.pool.backends[0]!.acquired).toBe(50);
    await waitFor(() => echo.open === 0, "every backend connection closed");
  });

  test("half-close: the client's FIN reaches the backend and its reply still comes back", async () => {
    const summary = track(startSummaryServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${summary.port}` }]);
    const size = 3 * 1024 * 1024 + 17;
    const r = await streamThrough(lb.port, size, { halfClose: true, expect: 0 });
    expect(r.closedByPeer).toBe(true);
    // The summary server answered after our FIN: "<bytes> <sha256>\n".
    expect(r.received).toBe(`${size} ${payloadHash(size)}\n`.length);
    await waitFor(() => lb.pool.backends[0]!.inFlight === 0, "the lease to be released");
    expect(lb.pool.backends[0]!.stats.bytesIn).toBe(size);
  });

  test("half-close: the reply names the exact bytes and hash the backend got", async () => {
    const summary = track(startSummaryServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${summary.port}` }]);
    const c = await connectClient(lb.port);
    c.send("part one, ");
    c.send("part two");
    c.socket.shutdown();
    await c.waitClosed();
    const body = "part one, part two";
    const sha = new Bun.CryptoHasher("sha256").update(body).digest("hex");
    expect(c.text()).toBe(`${body.length} ${sha}\n`);
  });

  test("half-close the other way: after the backend's FIN the client can still send", async () => {
    const early = track(startEarlyFinServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${early.port}` }]);
    const c = await connectClient(lb.port);
    await waitFor(() => c.ended, "the backend's FIN to reach the client");
    expect(c.text()).toBe("hello\n");
    expect(c.closed).toBe(false);
    c.send("still talking");
    await waitFor(() => early.received === "still talking".length, "the client's bytes to arrive after the backend's FIN");
    c.socket.shutdown();
    await c.waitClosed();
    await waitFor(() => lb.pool.backends[0]!.inFlight === 0 && early.open === 0, "both sides closed");
  });

  test("the client closing mid-stream closes the backend connection and releases the lease", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}` }]);
    const c = await connectClient(lb.port);
    c.send("ping");
    await c.waitBytes(4);
    c.socket.terminate();
    await waitFor(() => echo.open === 0, "the backend connection to close");
    await waitFor(() => lb.pool.backends[0]!.inFlight === 0, "the lease to be released");
  });

  test("a backend that goes away closes the client after what it sent", async () => {
    let sock: import("bun").Socket<undefined> | undefined;
    const server = Bun.listen({
      hostname: "127.0.0.1", port: 0,
      socket: { open(s) { sock = s; }, data() {} },
    });
    cleanups.push(() => server.stop(true));
    const lb = await tcpBalancer([{ url: `127.0.0.1:${server.port}` }]);
    const c = await connectClient(lb.port);
    await waitFor(() => sock !== undefined, "the backend to accept");
    sock!.write("last words");
    sock!.terminate();
    // What the backend sent before its reset arrives, then a FIN (as Envoy's FlushWrite close).
    await c.waitEof();
    expect(c.text()).toBe("last words");
    await waitFor(() => lb.pool.backends[0]!.inFlight === 0, "the lease to be released");
  });
});

describe("choosing backends", () => {
  test("a refused backend: the client notices nothing, the backend is marked down", async () => {
    const echo = track(startEchoServer());
    const dead = refusedPort();
    const lb = await tcpBalancer([{ url: `127.0.0.1:${dead}` }, { url: `127.0.0.1:${echo.port}` }]);
    const [down, up] = lb.pool.backends as [Backend, Backend];
    // Round-robin starts with the first: the refused one.
    for (let i = 0; i < 4; i++) {
      const r = await streamThrough(lb.port, 64 * 1024 + i);
      expect(r.receivedHash).toBe(r.sentHash);
    }
    expect(down.isHealthy).toBe(false);
    expect(down.stats.connectFailures).toBe(1);
    expect(down.inFlight).toBe(0);
    expect(up.acquired).toBe(4);
    expect(echo.accepted).toBe(4);
  });

  test("bytes sent while the first backend is being dialled reach the second", async () => {
    const echo = track(startEchoServer());
    const hole = await startBlackhole();
    cleanups.push(() => hole.close());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${hole.port}` }, { url: `127.0.0.1:${echo.port}` }], {
      timeouts: { connect: "200ms" },
    });
    const [slow, ok] = lb.pool.backends as [Backend, Backend];
    // 1 MB sent at once: more than the proxy buffers while dialling, so the client is paused.
    const started = performance.now();
    const r = await streamThrough(lb.port, 1024 * 1024);
    expect(r.receivedHash).toBe(r.sentHash);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(slow.stats.connectFailures).toBe(1);
    // A slow connect is not a refusal: the backend stays up (it counts toward ejection instead).
    expect(slow.isHealthy).toBe(true);
    expect(slow.inFlight).toBe(0);
    expect(ok.stats.bytesIn).toBe(1024 * 1024);
  });

  test("a FIN that arrives while dialling is passed on after the buffered bytes", async () => {
    const summary = track(startSummaryServer());
    const hole = await startBlackhole();
    cleanups.push(() => hole.close());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${hole.port}` }, { url: `127.0.0.1:${summary.port}` }], {
      timeouts: { connect: "150ms" },
    });
    const c = await connectClient(lb.port);
    c.send("said before any backend answered");
    c.socket.shutdown();
    await c.waitClosed();
    const body = "said before any backend answered";
    expect(c.text()).toBe(`${body.length} ${new Bun.CryptoHasher("sha256").update(body).digest("hex")}\n`);
    expect(lb.pool.backends[0]!.stats.connectFailures).toBe(1);
  });

  test("least-connections counts open connections: new ones go to the idle backend", async () => {
    const a = track(startEchoServer("a"));
    const b = track(startEchoServer("b"));
    const lb = await tcpBalancer(
      [{ url: `127.0.0.1:${a.port}` }, { url: `127.0.0.1:${b.port}`, disabled: true }],
      { strategy: "least-connections" },
    );
    const [ba, bb] = lb.pool.backends as [Backend, Backend];
    const held: RawClient[] = [];
    const open = async () => {
      const c = await connectClient(lb.port);
      cleanups.push(() => c.socket.terminate());
      c.send("x");
      await c.waitBytes(1);
      held.push(c);
    };
    await open();
    await open();
    expect([a.open, b.open]).toEqual([2, 0]);
    expect(ba.inFlight).toBe(2);
    bb.setEnabled(true);
    await open();
    await open();
    // A has 2 open, B had none: both new connections go to B (round-robin would split them).
    expect([a.open, b.open]).toEqual([2, 2]);
    expect([ba.inFlight, bb.inFlight]).toEqual([2, 2]);
    for (const c of held) c.socket.end();
    await waitFor(() => ba.inFlight === 0 && bb.inFlight === 0, "every lease released");
    expect([ba.acquired, bb.acquired]).toEqual([2, 2]);
  });

  test("consistent-hash by client address: every connection from one address goes to one backend, and on when it leaves", async () => {
    const servers = ["a", "b", "c"].map((n) => track(startEchoServer(n)));
    const lb = await tcpBalancer(servers.map((s) => ({ url: `127.0.0.1:${s.port}` })), { strategy: "consistent-hash", hash: { key: "ip" } });
    const openOne = async () => {
      const c = await connectClient(lb.port);
      cleanups.push(() => c.socket.terminate());
      c.send("x");
      await c.waitBytes(1);
      c.socket.end();
    };
    for (let i = 0; i < 6; i++) await openOne();
    const first = lb.pool.backends.filter((b) => b.acquired > 0);
    expect(first.map((b) => b.acquired)).toEqual([6]);
    first[0]!.setEnabled(false);
    for (let i = 0; i < 6; i++) await openOne();
    const second = lb.pool.backends.filter((b) => b.acquired > 0 && b !== first[0]);
    expect(second.map((b) => b.acquired)).toEqual([6]);
  });

  test("no backend available: the client is closed at once", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}`, disabled: true }]);
    const c = await connectClient(lb.port);
    await c.waitEof();
    expect(c.received()).toBe(0);
    expect(echo.accepted).toBe(0);
  });

  test("every backend refused: the client is closed, each backend tried once", async () => {
    const lb = await tcpBalancer([{ url: `127.0.0.1:${refusedPort()}` }, { url: `127.0.0.1:${refusedPort()}` }]);
    const c = await connectClient(lb.port);
    c.send("hello?");
    await c.waitEof();
    expect(c.received()).toBe(0);
    for (const b of lb.pool.backends) {
      expect(b.stats.connectFailures).toBe(1);
      expect(b.inFlight).toBe(0);
    }
    // Refusals mark backends down within passive.maxEjectedPercent (50% of 2) and never the
    // last serving one: one is down, the other heard it as a gateway failure.
    expect(lb.pool.backends.map((b) => b.isHealthy).sort()).toEqual([false, true]);
    expect(lb.pool.backends.find((b) => b.isHealthy)!.consecutiveFailures).toBe(1);
  });
});

describe("figures", () => {
  test("listener totals and per-backend counters (a second listener on the same context)", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${refusedPort()}` }, { url: `127.0.0.1:${echo.port}` }]);
    // The balancer is a BalancerContext: a second TCP listener shares its pool and health.
    const second = await startTcpProxy({ settings: { timeouts: lb.config.timeouts, retry: lb.config.retry, hash: lb.config.hash }, pool: lb.pool, passive: lb.passive, logger: lb.logger }, { host: "127.0.0.1", port: 0, stats: lb.tcpStats });
    cleanups.push(() => second.stop(true));
    const [refused, ok] = lb.pool.backends as [Backend, Backend];
    const a = await streamThrough(second.port, 1000);
    const b = await streamThrough(second.port, 2000, { expect: 2000 });
    expect(a.receivedHash).toBe(a.sentHash);
    expect(b.receivedHash).toBe(b.sentHash);
    await waitFor(() => second.connections === 0, "both relays to end");
    expect({ ...second.stats }).toEqual({
      accepted: 2, open: 0, rejected: 0, unreachable: 0, connectFailures: 1, localErrors: 0, connectTimeouts: 0,
      retries: 1, idleTimeouts: 0, resets: 0, sniTimeouts: 0, sniInvalid: 0, sniNotTls: 0, sniNoRoute: 0, proxyRefused: 0, clientConnectionsRefused: 0,
      bytesIn: 3000, bytesOut: 3000,
    });
    expect([refused.acquired, refused.inFlight, refused.stats.connectFailures]).toEqual([1, 0, 1]);
    expect([ok.acquired, ok.inFlight, ok.stats.bytesIn, ok.stats.bytesOut, ok.stats.retries]).toEqual([2, 0, 3000, 3000, 1]);
    expect(ok.stats.latency.count).toBe(2);
  });
});

describe("timeouts and stop", () => {
  test("idle timeout closes a relay through which nothing moves, not one that is busy", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}` }], { timeouts: { idle: "300ms" } });
    const idle = await connectClient(lb.port);
    const busy = await connectClient(lb.port);
    cleanups.push(() => busy.socket.terminate());
    idle.send("once");
    await idle.waitBytes(4);
    const started = performance.now();
    // The busy one sends every 100 ms for 900 ms: three idle windows.
    for (let i = 1; i <= 9; i++) {
      busy.send("z");
      await busy.waitBytes(i);
      await Bun.sleep(100);
      if (i === 5) expect(idle.ended || idle.closed).toBe(true);
    }
    expect(busy.ended || busy.closed).toBe(false);
    expect(performance.now() - started).toBeGreaterThan(800);
    await waitFor(() => echo.open === 1, "the idle relay's backend connection to close");
    expect(lb.pool.backends[0]!.inFlight).toBe(1);
  });

  test("graceful stop refuses new connections and waits for open ones", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}` }], { timeouts: { shutdownGrace: "10s" } });
    const c = await connectClient(lb.port);
    c.send("a");
    await c.waitBytes(1);
    let stopped = false;
    const stopping = lb.stop(true).then(() => (stopped = true));
    await expect(connectClient(lb.port)).rejects.toThrow();
    // Still relaying while the stop waits.
    c.send("b");
    await c.waitBytes(2);
    expect(stopped).toBe(false);
    c.socket.shutdown();
    await stopping;
    expect(c.text()).toBe("ab");
    await waitFor(() => echo.open === 0, "the backend connection to close");
  });

  test("a stop that outlasts shutdownGrace closes what is still open", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}` }], { timeouts: { shutdownGrace: "200ms" } });
    const c = await connectClient(lb.port);
    c.send("a");
    await c.waitBytes(1);
    await lb.stop(true);
    await c.waitClosed();
    await waitFor(() => echo.open === 0, "the backend connection to close");
    expect(lb.pool.backends[0]!.inFlight).toBe(0);
  });

  test("stop(false) resets every connection at once", async () => {
    const echo = track(startEchoServer());
    const lb = await tcpBalancer([{ url: `127.0.0.1:${echo.port}` }], { timeouts: { shutdownGrace: "10s" } });
    const clients = await Promise.all([connectClient(lb.port), connectClient(lb.port)]);
    for (const c of clients) c.send("a");
    await Promise.all(clients.map((c) => c.waitBytes(1)));
    const started = performance.now();
    await lb.stop(false);
    expect(performance.now() - started).toBeLessThan(1000);
    await Promise.all(clients.map((c) => c.waitClosed()));
    await waitFor(() => echo.open === 0, "backend connections to close");
    expect(lb.pool.backends[0]!.inFlight).toBe(0);
  });
});
