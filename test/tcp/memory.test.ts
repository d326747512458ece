/**
 * Backpressure keeps memory bounded: the balancer runs in a subprocess (so that its RSS is its
 * own), an echo backend answers as fast as it can, and the client pushes 200 MB while reading
 * slowly. A proxy that buffered instead of pausing would hold most of the 200 MB.
 */
import { afterEach, expect, test } from "bun:test";
import { startEchoServer, streamThrough } from "./helpers.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** VmRSS of a process in bytes, from /proc (Linux). */
async function rss(pid: number): Promise<number> {
  const status = await Bun.file(`/proc/${pid}/status`).text();
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

test("a slow reader keeps the proxy's memory bounded (200 MB pushed, RSS stays low)", async () => {
  const echo = startEchoServer();
  cleanups.push(() => echo.stop());
  const config = {
    mode: "tcp", listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    backends: [{ url: `127.0.0.1:${echo.port}` }],
  };
  const proc = Bun.spawn([process.execPath, `${import.meta.dir}/fixtures/tcp-balancer.ts`, JSON.stringify(config)], {
    stdin: "pipe", stdout: "pipe", stderr: "inherit",
  });
  cleanups.push(async () => {
    proc.kill();
    await proc.exited;
  });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the balancer process exited before printing its port: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(out.trim());
  expect(port).toBeGreaterThan(0);

  const baseline = await rss(proc.pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    rss(proc.pid).then((r) => (peak = Math.max(peak, r)), () => {});
  }, 20);
  cleanups.push(() => clearInterval(sampler));

  const size = 200 * 1024 * 1024;
  // 1 MB per 10 ms: about 100 MB/s, several times slower than the echo path can go.
  const r = await streamThrough(port, size, { readBudgetPer10ms: 1024 * 1024, timeoutMs: 25_000 });
  clearInterval(sampler);
  peak = Math.max(peak, await rss(proc.pid));
  expect(r.received).toBe(size);
  expect(r.receivedHash).toBe(r.sentHash);
  console.log(`tcp proxy RSS: baseline ${(baseline / 2 ** 20).toFixed(0)} MB, peak ${(peak / 2 ** 20).toFixed(0)} MB while relaying 200 MB to a slow reader`);
  expect(peak).toBeLessThan(300 * 1024 * 1024);
  expect(peak - baseline).toBeLessThan(150 * 1024 * 1024);
}, 30_000);
