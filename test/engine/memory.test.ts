/**
 * The socket engine's memory under backpressure, both ways: a 200 MB download to a client that
 * reads slowly, and a 200 MB upload to a backend that reads slowly. The balancer runs in its
 * own process so its RSS is its own; a proxy that buffered instead of pausing the faster side
 * would hold most of the 200 MB within the first second, long before the slow side caught up.
 */
import { afterEach, expect, test } from "bun:test";
import { startCluster } from "../../sim/cluster.ts";
import { spawnBalancer } from "../helpers/balancer.ts";
import { rawClient } from "../helpers/raw.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const MB = 1024 * 1024;
const SIZE = 200 * MB;

/** A socket-engine balancer in a subprocess, and a sampler of its peak RSS. */
function startSocketBalancer(backendUrl: string) {
  return spawnBalancer({
    engine: "socket", listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    log: { access: false }, limits: { maxBodySize: "300MB" }, retry: { perTryTimeout: "30s", timeout: "30s" },
    backends: [{ url: backendUrl }],
  }, cleanups);
}

test("a 200 MB download to a client reading at 1 MB/s keeps the proxy under 150 MB RSS", async () => {
  const cluster = await startCluster({ count: 1, basePort: 0 });
  cleanups.push(() => cluster.stop());
  const b = await startSocketBalancer(cluster.backends[0]!.url);
  let received = 0;
  let headEnd = -1;
  let fast = false;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  // Reads 100 KB every 100 ms (1 MB/s) for the first 3 s, then as fast as it can, to finish.
  const client = await rawClient(b.port, {
    keep: false,
    onData(chunk, s) {
      if (headEnd === -1) {
        const text = Buffer.from(chunk).toString("latin1");
        headEnd = text.indexOf("\r\n\r\n");
        received += chunk.length - headEnd - 4;
      } else received += chunk.length;
      if (!fast) {
        s.pause();
        setTimeout(() => s.resume(), (chunk.length / (100 * 1024)) * 100);
      }
    },
    onClose: () => done(),
  });
  const socket = client.socket;
  client.send(`GET /bytes/${SIZE} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
  await Bun.sleep(3000);
  const slowPeak = await b.peak();
  fast = true;
  socket.resume();
  await finished;
  // The body came chunked: its framing adds a few bytes per 64 KB chunk.
  expect(received).toBeGreaterThanOrEqual(SIZE);
  const peak = Math.max(slowPeak, await b.peak());
  console.log(`socket engine RSS: peak ${(peak / MB).toFixed(0)} MB relaying 200 MB to a reader at 1 MB/s then full speed`);
  expect(peak).toBeLessThan(150 * MB);
}, 30_000);

test("a 200 MB upload to a backend reading at 1 MB/s keeps the proxy under 150 MB RSS", async () => {
  // A backend that reads slowly for 3 s, then at full speed, and answers with the byte count.
  let got = -1;
  let slow = true;
  const backend = Bun.listen<undefined>({
    hostname: "127.0.0.1", port: 0,
    socket: {
      data(s, chunk) {
        if (got === -1) {
          // The first read starts with the request head: count only what follows it.
          const headEnd = Buffer.from(chunk).indexOf("\r\n\r\n");
          got = chunk.length - headEnd - 4;
        } else got += chunk.length;
        if (slow) {
          s.pause();
          setTimeout(() => s.resume(), (chunk.length / (100 * 1024)) * 100);
        }
        // Head and body: answer once everything declared has come.
        if (got >= SIZE) s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${String(got).length}\r\n\r\n${got}`);
      },
    },
  });
  cleanups.push(() => backend.stop(true));
  const b = await startSocketBalancer(`http://127.0.0.1:${backend.port}`);
  let answer = "";
  let drained!: () => void;
  let closed!: () => void;
  const gone = new Promise<void>((r) => (closed = r));
  const client = await rawClient(b.port, {
    keep: false,
    onData: (c) => void (answer += Buffer.from(c).toString()),
    onDrain: () => drained?.(),
    onClose: () => closed(),
  });
  client.write(`POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: ${SIZE}\r\nConnection: close\r\n\r\n`);
  const piece = new Uint8Array(MB).fill(7);
  const startedAt = performance.now();
  let slowPeak = 0;
  for (let sent = 0; sent < SIZE; ) {
    let off = 0;
    while (off < piece.length) {
      const n = client.write(piece.subarray(off));
      off += Math.max(0, n);
      if (off < piece.length) await new Promise<void>((r) => (drained = r));
    }
    sent += piece.length;
    if (slow && performance.now() - startedAt > 3000) {
      slowPeak = await b.peak();
      slow = false;
    }
  }
  await gone;
  expect(answer).toContain(`\r\n\r\n${SIZE}`);
  const peak = Math.max(slowPeak, await b.peak());
  console.log(`socket engine RSS: peak ${(peak / MB).toFixed(0)} MB relaying a 200 MB upload to a backend at 1 MB/s then full speed`);
  expect(peak).toBeLessThan(150 * MB);
}, 30_000);
