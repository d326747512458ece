/**
 * WebSocket through both HTTP engines, against the sim's /ws echo endpoint (sim/websocket.ts):
 * echo, subprotocols and forwarded fields, close codes both ways, the backend chosen and
 * retried until its 101, one in-flight unit for the WebSocket's whole life, the count in the
 * stats, a backend that dies (1011), 1,000 at once, and 1001 at shutdown.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

const rigs: TestRig[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.readyState <= 1 && ws.close();
  for (const r of rigs.splice(0)) await r.stop();
});

async function rig(engine: string, count: number, config: Record<string, unknown> = {}): Promise<TestRig> {
  const r = await startRig(count, { engine, ...config });
  rigs.push(r);
  return r;
}

/** A client WebSocket with a queue of what it received and its close event. */
interface Client {
  ws: WebSocket;
  next(): Promise<string | Buffer>;
  closed: Promise<{ code: number; reason: string }>;
}

function connect(url: string, protocols?: string[]): Promise<Client> {
  const ws = new WebSocket(url, protocols);
  sockets.push(ws);
  const inbox: (string | Buffer)[] = [];
  const waiting: ((m: string | Buffer) => void)[] = [];
  ws.onmessage = (e) => {
    const w = waiting.shift();
    if (w) w(e.data);
    else inbox.push(e.data);
  };
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.addEventListener("close", (e) => r({ code: e.code, reason: e.reason })));
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve({ ws, closed, next: () => (inbox.length ? Promise.resolve(inbox.shift()!) : new Promise((r) => waiting.push(r))) });
    ws.onerror = (e) => reject(new Error(`WebSocket failed: ${(e as ErrorEvent).message}`));
  });
}

const wsUrl = (r: TestRig, path = "/ws") => r.balancer.url.replace(/^http/, "ws") + path;
const openSockets = (r: TestRig) => r.balancer.pool.backends.reduce((n, b) => n + b.stats.webSockets, 0);

for (const engine of ["fetch", "socket"]) {
  describe(`${engine} engine`, () => {
    test("echoes text and binary, with the backend's subprotocol and the forwarded fields", async () => {
      const r = await rig(engine, 1);
      const c = await connect(wsUrl(r, "/ws?x=1"), ["chat.v2", "chat.v1"]);
      expect(c.ws.protocol).toBe("chat.v2");
      c.ws.send("hello");
      expect(await c.next()).toBe("hello");
      c.ws.send(new Uint8Array([1, 2, 3, 250]));
      const bin = await c.next();
      expect([...new Uint8Array(bin as Buffer)]).toEqual([1, 2, 3, 250]);
      c.ws.send("!headers");
      const seen = JSON.parse((await c.next()) as string);
      expect(seen.path).toBe("/ws?x=1");
      expect(seen.protocol).toBe("chat.v2, chat.v1");
      expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(seen.headers.via).toContain("1.1 switchyard");
      expect(seen.headers.upgrade).toBe("websocket");
      c.ws.close(1000);
      expect((await c.closed).code).toBe(1000);
      await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 0, "the lease to be released");
      await waitFor(() => r.access.some((l) => l.includes(" 101 ")), "the access-log line");
    });

    test("a close code from the backend reaches the client", async () => {
      const r = await rig(engine, 1);
      const c = await connect(wsUrl(r));
      c.ws.send("!close 4002 done here");
      expect(await c.closed).toEqual({ code: 4002, reason: "done here" });
      await waitFor(() => openSockets(r) === 0, "the count to drop");
    });

    test("a close code from the client reaches the backend; a Close without one too", async () => {
      const r = await rig(engine, 1);
      const backend = r.cluster.backends[0]!;
      const c = await connect(wsUrl(r));
      c.ws.close(4001, "bye");
      await c.closed;
      await waitFor(() => backend.lastSocketClose !== undefined, "the backend to see the close");
      expect(backend.lastSocketClose).toEqual({ code: 4001, reason: "bye" });
      const d = await connect(wsUrl(r));
      d.ws.close();
      await d.closed;
      await waitFor(() => backend.lastSocketClose?.code !== 4001, "the backend to see the second close");
      // No code (1005) cannot be sent (RFC 6455 §7.4.1): the fetch engine, which speaks
      // WebSocket to each side, sends 1000; the socket engine's tunnel passes the frame as it
      // was, without a code, and the backend reports 1005 as the RFC says.
      expect(backend.lastSocketClose!.code).toBe(engine === "fetch" ? 1000 : 1005);
      await waitFor(() => openSockets(r) === 0 && backend.openSockets === 0, "both to close");
    });

    test("a WebSocket is one request in flight for its whole life, and /stats counts it", async () => {
      const r = await rig(engine, 2, { strategy: "least-connections", admin: { host: "127.0.0.1", port: 0 } });
      const a = await connect(wsUrl(r));
      a.ws.send("!headers");
      const first = JSON.parse((await a.next()) as string).name;
      const busy = r.balancer.pool.backends.find((b) => b.name === first)!;
      expect(busy.inFlight).toBe(1);
      expect(busy.stats.webSockets).toBe(1);
      // Least-connections sends the next ones to the other backend while this one is open.
      for (let i = 0; i < 3; i++) {
        const res = await fetch(r.balancer.url + "/");
        expect((await res.text()).trim()).not.toBe(first);
      }
      const b = await connect(wsUrl(r));
      b.ws.send("!headers");
      expect(JSON.parse((await b.next()) as string).name).not.toBe(first);
      expect(openSockets(r)).toBe(2);
      const stats = (await (await fetch(`${r.balancer.adminUrl}/stats`)).json()) as { totals: { webSockets: number }; backends: { name: string; webSockets: number }[] };
      expect(stats.totals.webSockets).toBe(2);
      expect(stats.backends.map((x) => x.webSockets)).toEqual([1, 1]);
      const metrics = await (await fetch(`${r.balancer.adminUrl}/metrics`)).text();
      expect(metrics).toContain(`switchyard_backend_websockets{pool="default",backend="${first}"} 1`);
      a.ws.close();
      b.ws.close();
      await waitFor(() => openSockets(r) === 0 && r.balancer.pool.backends.every((x) => x.inFlight === 0), "both to close");
      expect(busy.stats.webSocketsTotal).toBe(1);
    });

    test("the backend is retried until one switches protocols", async () => {
      const r = await rig(engine, 2, { strategy: "round-robin" });
      await r.cluster.backends[0]!.stop();
      for (let i = 0; i < 2; i++) {
        const c = await connect(wsUrl(r));
        c.ws.send("!headers");
        expect(JSON.parse((await c.next()) as string).name).toBe(r.cluster.backends[1]!.name);
        c.ws.close();
      }
    });

    test("a handshake the backend refuses reaches the client with the backend's status", async () => {
      const r = await rig(engine, 1);
      const res = await fetch(r.balancer.url + "/not-a-socket", {
        headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" },
      });
      expect(res.status).toBe(404);
      await res.arrayBuffer();
    });

    test("a backend that dies closes the client with 1011", async () => {
      const r = await rig(engine, 1);
      const c = await connect(wsUrl(r));
      c.ws.send("ping");
      expect(await c.next()).toBe("ping");
      await r.cluster.backends[0]!.stop();
      const closed = await c.closed;
      expect(closed.code).toBe(1011);
      await waitFor(() => openSockets(r) === 0 && r.balancer.pool.backends[0]!.inFlight === 0, "the lease to be released");
    });

    test("1,000 WebSockets at once", async () => {
      const r = await rig(engine, 2, { log: { access: false } });
      const clients = await Promise.all(Array.from({ length: 1000 }, () => connect(wsUrl(r))));
      expect(openSockets(r)).toBe(1000);
      clients.forEach((c, i) => c.ws.send(`m${i}`));
      const got = await Promise.all(clients.map((c) => c.next()));
      expect(got).toEqual(clients.map((_, i) => `m${i}`));
      const counts = r.balancer.pool.backends.map((b) => b.stats.webSockets);
      expect(counts[0]! + counts[1]!).toBe(1000);
      expect(Math.abs(counts[0]! - counts[1]!)).toBeLessThanOrEqual(2);
      for (const c of clients) c.ws.close();
      await Promise.all(clients.map((c) => c.closed));
      await waitFor(() => openSockets(r) === 0 && r.balancer.pool.backends.every((b) => b.inFlight === 0), "every count to drop", 15_000);
    }, 60_000);

    test("a graceful stop waits for open WebSockets, then closes them with 1001", async () => {
      const r = await rig(engine, 1, { timeouts: { shutdownGrace: "300ms" } });
      const c = await connect(wsUrl(r));
      c.ws.send("x");
      expect(await c.next()).toBe("x");
      let stopped = false;
      const stopping = r.balancer.stop(true).then(() => (stopped = true));
      // Still relaying during the grace period.
      c.ws.send("y");
      expect(await c.next()).toBe("y");
      expect(stopped).toBe(false);
      expect((await c.closed).code).toBe(1001);
      await stopping;
      await waitFor(() => r.cluster.backends[0]!.openSockets === 0, "the backend's side to close");
    });
  });
}
