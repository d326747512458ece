/**
 * WebSocket backpressure, measured: the backend sends 50 MB in 64 KiB messages as fast as it
 * may (sim /ws?send=), the client does not read for 3 s and then reads at full speed. The
 * balancer runs in its own process so that its RSS is its own; a proxy that kept reading the
 * backend while the client did not would hold most of the 50 MB within the first second.
 */
import { afterEach, expect, test } from "bun:test";
import { startCluster } from "../../sim/cluster.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const MB = 1024 * 1024;
const SIZE = 50 * MB;

async function rss(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(await Bun.file(`/proc/${pid}/status`).text())?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for ${pid}`);
  return Number(kb) * 1024;
}

/** A balancer on `engine` in a subprocess; its RSS when idle, and a sampler of its peak. */
async function spawnBalancer(engine: string, backendUrl: string): Promise<{ port: number; base: number; peak: () => Promise<number> }> {
  const config = {
    engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    log: { access: false }, backends: [{ url: backendUrl }],
  };
  const proc = Bun.spawn([process.execPath, `${import.meta.dir}/../tcp/fixtures/tcp-balancer.ts`, JSON.stringify(config)], {
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
    if (done) throw new Error(`the balancer exited before printing its port: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const base = await rss(proc.pid);
  let peak = base;
  const sampler = setInterval(() => void rss(proc.pid).then((r) => (peak = Math.max(peak, r)), () => {}), 20);
  cleanups.push(() => clearInterval(sampler));
  return { port: Number(out.trim()), base, peak: async () => Math.max(peak, await rss(proc.pid)) };
}

for (const engine of ["fetch", "socket"]) {
  test(`${engine} engine: 50 MB of messages to a client that stops reading for 3 s keeps the proxy's RSS growth under 25 MB`, async () => {
    const cluster = await startCluster({ count: 1, basePort: 0 });
    cleanups.push(() => cluster.stop());
    const b = await spawnBalancer(engine, cluster.backends[0]!.url);
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/ws?send=${SIZE}&size=65536`) as WebSocket & { pause(): boolean; resume(): boolean };
    cleanups.push(() => ws.close());
    let received = 0;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        if (e.data === "done") done();
      } else received += (e.data as Buffer).byteLength;
    };
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (e) => reject(new Error((e as ErrorEvent).message));
    });
    // The slow reader: Bun's client stops reading its socket, so TCP pushes back on the proxy.
    ws.pause();
    await Bun.sleep(3000);
    const slowPeak = await b.peak();
    ws.resume();
    await finished;
    expect(received).toBe(SIZE);
    const peak = Math.max(slowPeak, await b.peak());
    console.log(`${engine} engine WebSocket RSS: ${(b.base / MB).toFixed(0)} MB idle, peak ${(peak / MB).toFixed(0)} MB relaying 50 MB to a reader that paused for 3 s`);
    expect(peak - b.base).toBeLessThan(25 * MB);
  }, 30_000);
}
