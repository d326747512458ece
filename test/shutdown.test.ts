/**
 * Graceful shutdown as a user meets it: the CLI in a subprocess, keep-alive
 * clients sending request after request, and SIGTERM in the middle. In HTTP mode no request a
 * client sent may go unanswered: answers during the grace period carry Connection: close, and
 * idle keep-alive connections are closed between requests. In TCP mode, which sees no
 * requests, open connections keep flowing through the grace period.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Socket } from "node:net";
import type { Subprocess } from "bun";
import { startCluster, type SimCluster } from "../sim/cluster.ts";
import { waitFor } from "./helpers/wait.ts";

const CLI = join(import.meta.dir, "../src/cli.ts");
const dir = mkdtempSync(join(tmpdir(), "switchyard-shutdown-"));
let proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let cluster: SimCluster | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  if (proc && proc.exitCode === null) proc.kill("SIGKILL");
  proc = undefined;
  await cluster?.stop();
  cluster = undefined;
});

/** Start the balancer from `config` and return its proxy port once it listens. */
async function serve(config: Record<string, unknown>): Promise<number> {
  const file = join(dir, `${crypto.randomUUID()}.json`);
  writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false }, ...config }));
  proc = Bun.spawn([process.execPath, CLI, "serve", "--config", file], { stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let out = "";
  for (;;) {
    const m = out.match(/proxy listening on \w+:\/\/[\d.]+:(\d+)/);
    if (m) {
      // Keep draining stdout so that the child never blocks on a full pipe.
      void (async () => {
        while (!(await reader.read()).done);
      })();
      return Number(m[1]);
    }
    const { done, value } = await reader.read();
    if (done) throw new Error(`exited before listening: ${out}${await new Response(proc.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
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
function keepAlive(port: number, path: string, signalled: () => boolean, once = false): KeepAlive {
  const r: KeepAlive = { answered: 0, answeredAfterSignal: 0, toldToClose: false, lost: false, error: undefined, closed: false };
  const s = connect(port, "127.0.0.1");
  sockets.push(s);
  let outstanding = false;
  let buf = "";
  const send = () => {
    outstanding = true;
    s.write(`GET ${path} HTTP/1.1\r\nHost: shutdown.test\r\n\r\n`);
  };
  s.on("connect", send);
  s.on("data", (d: Buffer) => {
    buf += d.toString("latin1");
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
  });
  s.on("error", (e: NodeJS.ErrnoException) => (r.error = e.code ?? e.message));
  s.on("close", () => {
    if (outstanding) r.lost = true;
    r.closed = true;
  });
  return r;
}

// With workers, SIGTERM reaches the owner, which drains every worker the same way.
describe.each([["fetch", 1], ["socket", 1], ["fetch", 2], ["socket", 2]] as const)("SIGTERM with keep-alive clients, engine %s, workers %d", (engine, workers) => {
  test("every request sent is answered, answers say Connection: close, idle connections are closed", async () => {
    cluster = await startCluster({ count: 2, basePort: 0, latency: { min: 2, max: 20 } });
    const port = await serve({ engine, workers, timeouts: { shutdownGrace: "20s" }, backends: cluster.backends.map((b) => ({ url: b.url })) });
    let signalled = false;
    const idle = keepAlive(port, "/", () => signalled, true);
    const clients = Array.from({ length: 16 }, () => keepAlive(port, "/delay/10", () => signalled));
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
    const clients = Array.from({ length: 16 }, () => keepAlive(port, "/delay/5", () => signalled));
    await waitFor(() => clients.every((c) => c.answered >= 2), "every client to be answered");

    proc!.kill("SIGTERM");
    signalled = true;
    // A layer-4 proxy cannot tell requests apart: each connection keeps working until the grace
    // period ends, and only then is closed.
    await waitFor(() => clients.every((c) => c.answeredAfterSignal >= 3), "answers after SIGTERM on every open connection");
    const refused = await new Promise<string>((resolve) => {
      const s = connect(port, "127.0.0.1", () => resolve("accepted"));
      sockets.push(s);
      s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
    });
    expect(refused).toBe("ECONNREFUSED");
    expect(await proc!.exited).toBe(0);
    await waitFor(() => clients.every((c) => c.closed), "the connections to be closed at the end of the grace period");
  });
});
