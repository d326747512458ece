/**
 * Backpressure keeps memory bounded: the balancer runs in a subprocess (so that its RSS is its
 * own), an echo backend answers as fast as it can, and the client pushes 200 MB while reading
 * slowly. A proxy that buffered instead of pausing would hold most of the 200 MB.
 */
import { afterEach, expect, test } from "bun:test";
import { startEchoServer, streamThrough } from "./helpers.ts";
import { spawnBalancer } from "../helpers/balancer.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

test("a slow reader keeps the proxy's memory bounded (200 MB pushed, RSS stays low)", async () => {
  const echo = startEchoServer();
  cleanups.push(() => echo.stop());
  const config = {
    mode: "tcp", listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    backends: [{ url: `127.0.0.1:${echo.port}` }],
  };
  const b = await spawnBalancer(config, cleanups);
  const port = b.port;
  expect(port).toBeGreaterThan(0);
  const baseline = b.base;

  const size = 200 * 1024 * 1024;
  // 1 MB per 10 ms: about 100 MB/s, several times slower than the echo path can go.
  const r = await streamThrough(port, size, { readBudgetPer10ms: 1024 * 1024, timeoutMs: 25_000 });
  const peak = await b.peak();
  expect(r.received).toBe(size);
  expect(r.receivedHash).toBe(r.sentHash);
  console.log(`tcp proxy RSS: baseline ${(baseline / 2 ** 20).toFixed(0)} MB, peak ${(peak / 2 ** 20).toFixed(0)} MB while relaying 200 MB to a slow reader`);
  expect(peak).toBeLessThan(300 * 1024 * 1024);
  expect(peak - baseline).toBeLessThan(150 * 1024 * 1024);
}, 30_000);
