/**
 * Graceful shutdown as a user meets it: the CLI in a subprocess, keep-alive
 * clients sending request after request, and SIGTERM in the middle. In HTTP mode no request a
 * client sent may go unanswered: answers during the grace period carry Connection: close, and
 * idle keep-alive connections are closed between requests. In TCP mode, which sees no
 * requests, open connections keep flowing through the grace period.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startCluster, type SimCluster } from "../sim/cluster.ts";
import { serveProcess, type Serving } from "./helpers/balancer.ts";
import { rawClient, type RawClient } from "./helpers/raw.ts";
import { waitFor } from "./helpers/wait.ts";

let proc: Serving["proc"] | undefined;
let cluster: SimCluster | undefined;
const sockets: RawClient[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  if (proc && proc.exitCode === null) proc.kill("SIGKILL");
  proc = undefined;
  await cluster?.stop();
  cluster = undefined;
});

/** Start the balancer from `config` (over the rig's defaults) and return its proxy port once it listens. */
async function serve(config: Record<string, unknown>): Promise<number> {
  const serving = serveProcess({ config });
  proc = serving.proc;
  return serving.proxyPort();
}

interface KeepAlive {
  /** Responses read whole. */
  answered: number;
  /** Of those, read after SIGTERM was sent. */
  answeredAfterSignal: number;
  /** The last response said Connection: close. */
  toldToClose: boolean;
  /** A request was written and the connection closed before its answer. */
  lost: boolean;
  /** An error (reset, broken pipe) on the connection. */
  error: string | undefined;
  closed: boolean;
}

/**
 * A keep-alive client: one connection, GET `path` again as soon as each answer is in, until an
 * answer says Connection: close (then it closes its side) or the connection closes. `once`:
 * one request, then stay idle.
 */
async function keepAlive(port: number, path: string, signalled: () => boolean, once = false): Promise<KeepAlive> {
  const r: KeepAlive = { answered: 0, answeredAfterSignal: 0, toldToClose: false, lost: false, error: undefined, closed: false };
  let outstanding = false;
  let buf = "";
  const send = () => {
    outstanding = true;
    s.send(`GET ${path} HTTP/1.1\r\nHost: shutdown.test\r\n\r\n`);
  };
  const s: RawClient = await rawClient(port, { keep: false, onData, onError, onClose });
  sockets.push(s);
  send();
  return r;

  function onData(d: Uint8Array): void {
    buf += Buffer.from(d).toString("latin1");
    for (;;) {
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = buf.slice(0, end);
      const length = Number(head.match(/content-length: *(\d+)/i)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      buf = buf.slice(end + 4 + length);
      outstanding = false;
      r.answered++;
      if (signalled()) r.answeredAfterSignal++;
      if (/\r\nconnection: *close/i.test(head)) {
        r.toldToClose = true;
        s.end();
        return;
      }
      if (!once) send();
    }
  }
  function onError(e: Error): void {
    r.error = (e as NodeJS.ErrnoException).code ?? e.message;
  }
  function onClose(e?: Error): void {
    if (e) onError(e);
    if (outstanding) r.lost = true;
    r.closed = true;
  }
}

// With workers, SIGTERM reaches the owner, which drains every worker the same way.
describe.each([["fetch", 1], ["socket", 1], ["fetch", 2], ["socket", 2]] as const)("SIGTERM with keep-alive clients, engine %s, workers %d", (engine, workers) => {
  test("every request sent is answered, answers say Connection: close, idle connections are closed", async () => {
    cluster = await startCluster({ count: 2, basePort: 0, latency: { min: 2, max: 20 } });
    const port = await serve({ engine, workers, timeouts: { shutdownGrace: "20s" }, backends: cluster.backends.map((b) => ({ url: b.url })) });
    let signalled = false;
    const idle = await keepAlive(port, "/", () => signalled, true);
    const clients = await Promise.all(Array.from({ length: 16 }, () => keepAlive(port, "/delay/10", () => signalled)));
    await waitFor(() => idle.answered === 1 && clients.every((c) => c.answered >= 3), "every client to be answered a few times");

    proc!.kill("SIGTERM");
    signalled = true;
    await waitFor(() => idle.closed && clients.every((c) => c.closed), "every connection to close", 10_000);
    expect(await proc!.exited).toBe(0);

    for (const c of clients) {
      expect(c).toMatchObject({ lost: false, error: undefined, toldToClose: true });
    }
    // The idle connection was closed by the proxy between requests, without an error.
    expect(idle).toMatchObject({ answered: 1, lost: false, error: undefined });
  });
});

describe.each([1, 2])("SIGTERM in TCP mode, workers %d", (workers) => {
  test("open connections keep flowing through the grace period, new ones are refused", async () => {
    cluster = await startCluster({ count: 2, basePort: 0 });
    const port = await serve({
      mode: "tcp",
      workers,
      timeouts: { shutdownGrace: "1500ms" },
      backends: cluster.backends.map((b) => ({ url: b.url.replace("http://", "tcp://") })),
    });
    let signalled = false;
    const clients = await Promise.all(Array.from({ length: 16 }, () => keepAlive(port, "/delay/5", () => signalled)));
    await waitFor(() => clients.every((c) => c.answered >= 2), "every client to be answered");

    proc!.kill("SIGTERM");
    signalled = true;
    // A layer-4 proxy cannot tell requests apart: each connection keeps working until the grace
    // period ends, and only then is closed.
    await waitFor(() => clients.every((c) => c.answeredAfterSignal >= 3), "answers after SIGTERM on every open connection");
    const refused = await rawClient(port).then(
      (s) => {
        sockets.push(s);
        return "accepted";
      },
      (e: NodeJS.ErrnoException) => e.code ?? "error",
    );
    expect(refused).toBe("ECONNREFUSED");
    expect(await proc!.exited).toBe(0);
    await waitFor(() => clients.every((c) => c.closed), "the connections to be closed at the end of the grace period");
  });
});
