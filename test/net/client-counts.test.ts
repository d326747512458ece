/**
 * limits.maxConnectionsPerClient: connections one client address may hold open to a listener.
 * The counter alone; then real clients (from 127.0.0.1 and 127.0.0.2) against the socket
 * engine's HTTP listener, a listener taking PROXY headers (the named client is counted, never
 * the peer), and a TCP listener (refused before any dial); reloads; a connection that times out
 * gives its count back; and what `check` says.
 *
 * HTTP listeners need the socket engine (the fetch engine is refused at load, tested here), so
 * those tests name it; the TCP ones run on whichever engine SWITCHYARD_TEST_ENGINE names.
 */
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { LocalClientCounts } from "../../src/net/client-counts.ts";
import { validateConfig } from "../../src/config/load.ts";
import { configWarnings } from "../../src/config/expand.ts";
import { encodeProxyHeader } from "../../src/net/proxy-protocol.ts";
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { startEchoServer } from "../tcp/helpers.ts";
import { rawClient } from "../helpers/raw.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("LocalClientCounts", () => {
  test("counts per address, refuses at the bound, forgets an address at zero", () => {
    const c = new LocalClientCounts(2);
    expect(c.admit("a")).toBe(true);
    expect(c.admit("a")).toBe(true);
    expect(c.admit("a")).toBe(false);
    expect(c.of("a")).toBe(2);
    expect(c.admit("b")).toBe(true);
    c.release("a");
    expect(c.admit("a")).toBe(true);
    c.release("a");
    c.release("a");
    c.release("b");
    expect(c.clients).toBe(0);
    // A release with nothing counted changes nothing (and never goes below zero).
    c.release("a");
    expect(c.of("a")).toBe(0);
  });

  test("no bound still counts, so that a bound set later finds the connections open", () => {
    const c = new LocalClientCounts(undefined);
    for (let i = 0; i < 5; i++) expect(c.admit("a")).toBe(true);
    c.setMax(3);
    expect(c.admit("a")).toBe(false);
    for (let i = 0; i < 2; i++) c.release("a");
    expect(c.admit("a")).toBe(false);
    c.release("a");
    expect(c.admit("a")).toBe(true);
    expect(c.of("a")).toBe(3);
  });
});

describe("config", () => {
  const base = { backends: [{ url: "http://127.0.0.1:9" }] };

  test("a bad bound names the field", () => {
    for (const bad of [0, -1, 1.5, "2"]) {
      expect(() => validateConfig({ ...base, limits: { maxConnectionsPerClient: bad } })).toThrow(/limits\.maxConnectionsPerClient: .*expected a whole number of connections, at least 1/);
    }
    expect(validateConfig({ ...base, limits: { maxConnectionsPerClient: 4 } }).limits.maxConnectionsPerClient).toBe(4);
    expect(validateConfig(base).limits.maxConnectionsPerClient).toBeUndefined();
  });

  test("refused with the fetch engine for an HTTP listener, saying why; TCP listeners take it on either engine", () => {
    expect(() => validateConfig({ ...base, engine: "fetch", limits: { maxConnectionsPerClient: 2 } })).toThrow(
      /limits\.maxConnectionsPerClient: 2 with engine "fetch" and an HTTP listener; expected engine "socket" \(Bun\.serve tells the proxy nothing when a connection opens or closes/,
    );
    const tcp = { engine: "fetch", mode: "tcp", backends: [{ url: "tcp://127.0.0.1:9" }], limits: { maxConnectionsPerClient: 2 } };
    expect(validateConfig(tcp).limits.maxConnectionsPerClient).toBe(2);
  });

  test("check has nothing to warn of with workers: they share one count (net/shared-client-counts.ts)", () => {
    const bounded = { ...base, limits: { maxConnectionsPerClient: 8 } };
    expect(configWarnings(validateConfig({ ...bounded, workers: 4 }))).toEqual([]);
    expect(configWarnings(validateConfig(bounded))).toEqual([]);
    expect(configWarnings(validateConfig({ ...base, workers: 4 }))).toEqual([]);
  });
});

/** A client connection from a loopback address of its own choosing, read as latin1 text. */
interface Conn {
  text(): string;
  readonly closed: boolean;
  send(data: string | Uint8Array): void;
  end(): void;
  waitFor(cond: (t: string) => boolean, what: string): Promise<void>;
  waitClosed(): Promise<void>;
}

async function connectFrom(port: number, from: string): Promise<Conn> {
  const s = net.connect({ host: "127.0.0.1", port, localAddress: from });
  let text = "";
  let closed = false;
  s.on("data", (d) => (text += d.toString("latin1")));
  s.on("close", () => (closed = true));
  s.on("error", () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  const conn: Conn = {
    text: () => text,
    get closed() {
      return closed;
    },
    send: (d) => void s.write(d),
    end: () => void s.end(),
    waitFor: (cond, what) => waitFor(() => cond(text), what),
    waitClosed: () => waitFor(() => closed, "the connection to close"),
  };
  cleanups.push(() => s.destroy());
  return conn;
}

const GET = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
/** A whole 200 answer arrived (the sim's body is short; its Content-Length frames it). */
const answered = (t: string) => {
  const m = /^HTTP\/1\.1 200[^]*?content-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(t);
  return m !== null && t.length >= m[0].length + Number(m[1]);
};

/** A kept-alive connection from `from` with one request answered. */
async function served(port: number, from: string, first: string | Uint8Array = ""): Promise<Conn> {
  const c = await connectFrom(port, from);
  c.send(typeof first === "string" ? first + GET : Buffer.concat([first, Buffer.from(GET)]));
  await c.waitFor(answered, `a 200 on a connection from ${from}`);
  expect(c.closed).toBe(false);
  return c;
}

/** A connection from `from` (after `first`, a PROXY header) that gets 429 before any request and is closed. */
async function refused(port: number, from: string, first?: Uint8Array): Promise<Conn> {
  const c = await connectFrom(port, from);
  if (first !== undefined) c.send(first);
  await c.waitClosed();
  const t = c.text();
  expect(t).toStartWith("HTTP/1.1 429 Too Many Requests\r\n");
  expect(t.toLowerCase()).toContain("\r\nretry-after: 1\r\n");
  expect(t.toLowerCase()).toContain("\r\nconnection: close\r\n");
  expect(t).toContain('"error":"SY_TOO_MANY_CLIENT_CONNECTIONS"');
  return c;
}

/** Connects from `from` until one is admitted (a closed connection's count is given back as its close is handled). */
async function admittedAgain(port: number, from: string, first: string | Uint8Array = ""): Promise<Conn> {
  let admitted: Conn | undefined;
  await waitFor(async () => {
    const c = await connectFrom(port, from);
    c.send(typeof first === "string" ? first + GET : Buffer.concat([first, Buffer.from(GET)]));
    await waitFor(() => c.closed || answered(c.text()), "an answer or a close");
    if (!answered(c.text())) return false;
    admitted = c;
    return true;
  }, `a connection from ${from} to be admitted again`);
  return admitted!;
}

async function httpRig(limits: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<TestRig> {
  const rig = await startRig(1, { engine: "socket", limits, ...extra });
  cleanups.push(() => rig.stop());
  return rig;
}

describe("HTTP listener (socket engine)", () => {
  test("a third connection of one address gets 429 and is closed; another address is not affected; a close gives the count back", async () => {
    const rig = await httpRig({ maxConnectionsPerClient: 2 });
    const port = rig.balancer.port;
    const a1 = await served(port, "127.0.0.1");
    await served(port, "127.0.0.1");
    await refused(port, "127.0.0.1");
    // Another client is counted apart.
    const b1 = await served(port, "127.0.0.2");
    await served(port, "127.0.0.2");
    await refused(port, "127.0.0.2");
    expect(rig.balancer.traffic.proxyErrors.SY_TOO_MANY_CLIENT_CONNECTIONS).toBe(2);
    // The first refusal is logged, the second only counted.
    expect(rig.logLines.filter((l) => l.includes("limits.maxConnectionsPerClient"))).toHaveLength(1);
    // Kept-alive connections still serve.
    b1.send(GET);
    await b1.waitFor((t) => t.split("HTTP/1.1 200").length === 3, "a second answer on a kept-alive connection");
    a1.end();
    await a1.waitClosed();
    await admittedAgain(port, "127.0.0.1");
    await refused(port, "127.0.0.1");
  });

  test("with workers, the bound is the balancer's: a client's connections over both workers count together", async () => {
    const rig = await httpRig({ maxConnectionsPerClient: 3 }, { workers: 2 });
    const port = rig.balancer.port;
    const open = [await served(port, "127.0.0.1"), await served(port, "127.0.0.1"), await served(port, "127.0.0.1")];
    // Wherever the kernel puts each of these, both workers see the three open.
    for (let i = 0; i < 8; i++) await refused(port, "127.0.0.1");
    await served(port, "127.0.0.2");
    open[0]!.end();
    await open[0]!.waitClosed();
    await admittedAgain(port, "127.0.0.1");
    for (let i = 0; i < 4; i++) await refused(port, "127.0.0.1");
  });

  test("a connection closed by the header timeout (never sent a byte) gives its count back", async () => {
    const rig = await httpRig({ maxConnectionsPerClient: 1 }, { timeouts: { header: "300ms" } });
    const port = rig.balancer.port;
    const silent = await connectFrom(port, "127.0.0.1");
    await refused(port, "127.0.0.1");
    await silent.waitClosed();
    expect(silent.text()).toStartWith("HTTP/1.1 408");
    await admittedAgain(port, "127.0.0.1");
  });

  test("a client that drops its connection halfway through a request head gives its count back", async () => {
    const rig = await httpRig({ maxConnectionsPerClient: 1 });
    const port = rig.balancer.port;
    const dropping = await rawClient(port);
    dropping.send("GET / HTTP/1.1\r\nHost: exa");
    await refused(port, "127.0.0.1");
    dropping.terminate();
    await admittedAgain(port, "127.0.0.1");
  });

  test("a reload lowers and raises the bound for new connections; open ones stay counted", async () => {
    const config = (max: number) => validateConfig({
      engine: "socket", listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: true },
      backends: rig.cluster.backends.map((b) => ({ name: b.name, url: b.url })), limits: { maxConnectionsPerClient: max },
    });
    const rig = await httpRig({ maxConnectionsPerClient: 2 });
    const port = rig.balancer.port;
    const open = [await served(port, "127.0.0.1"), await served(port, "127.0.0.1")];
    await refused(port, "127.0.0.1");
    expect((await rig.balancer.apply(config(3))).lines).toEqual(["limits.maxConnectionsPerClient 2 -> 3"]);
    open.push(await served(port, "127.0.0.1"));
    await refused(port, "127.0.0.1");
    await rig.balancer.apply(config(1));
    // Three open, bound 1: closing two still leaves the client at the bound.
    for (const c of open.splice(0, 2)) {
      c.end();
      await c.waitClosed();
    }
    await refused(port, "127.0.0.1");
    open[0]!.end();
    await open[0]!.waitClosed();
    await admittedAgain(port, "127.0.0.1");
    await refused(port, "127.0.0.1");
  });

  test("with PROXY protocol, the client the header names is counted, never the peer", async () => {
    const rig = await httpRig({ maxConnectionsPerClient: 2 }, { listen: undefined, listeners: [{ name: "web", host: "127.0.0.1", port: 0, proxyProtocol: true }], trustedProxies: ["127.0.0.1"] });
    const port = rig.balancer.port;
    const named = (address: string, sport: number) => encodeProxyHeader(1, { address, port: sport }, { address: "127.0.0.1", port });
    // Five connections from the one peer 127.0.0.1, for two clients.
    const x1 = await served(port, "127.0.0.1", named("203.0.113.7", 40001));
    await served(port, "127.0.0.1", named("203.0.113.7", 40002));
    await served(port, "127.0.0.1", named("203.0.113.8", 40003));
    await served(port, "127.0.0.1", named("203.0.113.8", 40004));
    await refused(port, "127.0.0.1", named("203.0.113.7", 40005));
    await refused(port, "127.0.0.1", named("203.0.113.8", 40006));
    x1.end();
    await x1.waitClosed();
    await admittedAgain(port, "127.0.0.1", named("203.0.113.7", 40007));
  });
});

/** Connects from 127.0.0.1 until one is relayed (a closed relay's count is given back as its close is handled). */
async function relayedAgain(port: number): Promise<void> {
  await waitFor(async () => {
    const c = await connectFrom(port, "127.0.0.1");
    c.send("again");
    await waitFor(() => c.closed || c.text() === "again", "an echo or a close");
    return c.text() === "again";
  }, "a connection from 127.0.0.1 to be relayed again");
}

describe("TCP listener", () => {
  test("a third connection of one address is closed before any dial, and counted; a close gives the count back", async () => {
    const echo = startEchoServer();
    cleanups.push(() => echo.stop());
    const rig = await startRig(0, { mode: "tcp", backends: [{ url: `tcp://127.0.0.1:${echo.port}` }], limits: { maxConnectionsPerClient: 2 } });
    cleanups.push(() => rig.stop());
    const port = rig.balancer.port;
    const relayed = async (from: string, word: string) => {
      const c = await connectFrom(port, from);
      c.send(word);
      await c.waitFor((t) => t === word, `the echo of ${word}`);
      return c;
    };
    const a1 = await relayed("127.0.0.1", "a1");
    await relayed("127.0.0.1", "a2");
    const third = await connectFrom(port, "127.0.0.1");
    await third.waitClosed();
    expect(third.text()).toBe("");
    expect(echo.accepted).toBe(2);
    await relayed("127.0.0.2", "b1");
    expect(echo.accepted).toBe(3);
    const stats = rig.balancer.tcpStats!;
    expect(stats.clientConnectionsRefused).toBe(1);
    expect(stats.rejected).toBe(0);
    expect(rig.logLines.filter((l) => l.includes("limits.maxConnectionsPerClient"))).toHaveLength(1);
    a1.end();
    await a1.waitClosed();
    await relayedAgain(port);
    // Nothing here changes the backend's health.
    const backend = rig.balancer.pools.get("default")!.pool.backends[0]!;
    expect(backend.state()).toBe("up");
    expect(backend.stats.connectFailures).toBe(0);
  });

  test("with workers, the bound is the balancer's: a client's connections over both workers count together", async () => {
    const echo = startEchoServer();
    cleanups.push(() => echo.stop());
    const rig = await startRig(0, { mode: "tcp", workers: 2, backends: [{ url: `tcp://127.0.0.1:${echo.port}` }], limits: { maxConnectionsPerClient: 2 } });
    cleanups.push(() => rig.stop());
    const port = rig.balancer.port;
    const relayed = async (word: string) => {
      const c = await connectFrom(port, "127.0.0.1");
      c.send(word);
      await c.waitFor((t) => t === word, `the echo of ${word}`);
      return c;
    };
    const first = await relayed("a1");
    await relayed("a2");
    for (let i = 0; i < 8; i++) {
      const c = await connectFrom(port, "127.0.0.1");
      await c.waitClosed();
      expect(c.text()).toBe("");
    }
    expect(echo.accepted).toBe(2);
    first.end();
    await first.waitClosed();
    await relayedAgain(port);
    expect(echo.accepted).toBe(3);
  });

  test("a relay closed by timeouts.idle gives its count back", async () => {
    const echo = startEchoServer();
    cleanups.push(() => echo.stop());
    const rig = await startRig(0, { mode: "tcp", backends: [{ url: `tcp://127.0.0.1:${echo.port}` }], limits: { maxConnectionsPerClient: 1 }, timeouts: { idle: "300ms" } });
    cleanups.push(() => rig.stop());
    const port = rig.balancer.port;
    const idle = await connectFrom(port, "127.0.0.1");
    idle.send("x");
    await idle.waitFor((t) => t === "x", "the echo");
    const third = await connectFrom(port, "127.0.0.1");
    await third.waitClosed();
    expect(rig.balancer.tcpStats!.clientConnectionsRefused).toBe(1);
    await idle.waitClosed();
    expect(rig.balancer.tcpStats!.idleTimeouts).toBe(1);
    const again = await connectFrom(port, "127.0.0.1");
    again.send("y");
    await again.waitFor((t) => t === "y", "the echo on a connection admitted again");
  });

  test("a reload raises and lowers the bound; a PROXY-named client is counted, not the peer", async () => {
    const echo = startEchoServer();
    cleanups.push(() => echo.stop());
    const tcp = (max: number) => ({
      ...testEngine(), admin: false, healthCheck: false, log: { access: true },
      listeners: [{ name: "t", host: "127.0.0.1", port: 0, mode: "tcp", pool: "echo", proxyProtocol: true }],
      trustedProxies: ["127.0.0.1"],
      pools: { echo: { backends: [{ url: `tcp://127.0.0.1:${echo.port}` }] } },
      limits: { maxConnectionsPerClient: max },
    });
    const rig = await startRig(0, { ...tcp(1), listen: undefined, backends: undefined });
    cleanups.push(() => rig.stop());
    const port = rig.balancer.port;
    const named = (address: string) => encodeProxyHeader(2, { address, port: 40000 }, { address: "127.0.0.1", port });
    const relayed = async (address: string) => {
      const c = await connectFrom(port, "127.0.0.1");
      c.send(Buffer.concat([named(address), Buffer.from("hi")]));
      await c.waitFor((t) => t === "hi", `the echo for ${address}`);
      return c;
    };
    const closedUnserved = async (address: string) => {
      const c = await connectFrom(port, "127.0.0.1");
      c.send(named(address));
      await c.waitClosed();
      expect(c.text()).toBe("");
    };
    // One peer, two named clients: each has its own count.
    await relayed("203.0.113.7");
    await relayed("203.0.113.8");
    await closedUnserved("203.0.113.7");
    expect((await rig.balancer.apply(validateConfig(tcp(2)))).lines).toEqual(["limits.maxConnectionsPerClient 1 -> 2"]);
    await relayed("203.0.113.7");
    await closedUnserved("203.0.113.7");
    await rig.balancer.apply(validateConfig(tcp(1)));
    await closedUnserved("203.0.113.8");
    expect(rig.balancer.tcpStats!.clientConnectionsRefused).toBe(3);
    expect(echo.accepted).toBe(3);
  });
});
