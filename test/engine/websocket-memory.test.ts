/**
 * WebSocket backpressure, measured: the backend sends 50 MB in 64 KiB messages as fast as it
 * may (sim /ws?send=), the client does not read for 3 s and then reads at full speed. The
 * balancer runs in its own process so that its RSS is its own; a proxy that kept reading the
 * backend while the client did not would hold most of the 50 MB within the first second.
 *
 * Two bounds, because the two phases measure different things. While the client is paused,
 * the growth is what backpressure leaves buffered: 6-9 MB measured on either engine. Once it
 * reads at full speed, 50 MB pass through in about a second, and on the socket engine each
 * read is a fresh Buffer from Bun that lives until the next collection, so the peak is set by
 * when JSC collects, not by what the proxy holds: 17-26 MB of growth over the CI runs, all of
 * it after the pause (fetch engine, whose WebSocket frames stay in native memory: 12-17 MB).
 * That phase is held under 40 MB, less than the stream: a proxy that kept the messages it had
 * relayed, or read ahead of the client, would not pass it.
 */
import { afterEach, expect, test } from "bun:test";
import { startCluster } from "../../sim/cluster.ts";
import { spawnBalancer } from "../helpers/balancer.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const MB = 1024 * 1024;
const SIZE = 50 * MB;

/** A balancer on `engine` in a subprocess; its RSS when idle, and a sampler of its peak. */
function startBalancerOn(engine: string, backendUrl: string) {
  return spawnBalancer({
    engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    log: { access: false }, backends: [{ url: backendUrl }],
  }, cleanups);
}

for (const engine of ["fetch", "socket"]) {
  test(`${engine} engine: 50 MB of messages to a client that stops reading for 3 s: the proxy's RSS grows under 25 MB while it waits, under 40 MB in all`, async () => {
    const cluster = await startCluster({ count: 1, basePort: 0 });
    cleanups.push(() => cluster.stop());
    const b = await startBalancerOn(engine, cluster.backends[0]!.url);
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
    expect(slowPeak - b.base).toBeLessThan(25 * MB);
    ws.resume();
    await finished;
    expect(received).toBe(SIZE);
    const peak = Math.max(slowPeak, await b.peak());
    console.log(`${engine} engine WebSocket RSS: ${(b.base / MB).toFixed(0)} MB idle, ${(slowPeak / MB).toFixed(0)} MB at most while the reader paused for 3 s, peak ${(peak / MB).toFixed(0)} MB relaying 50 MB`);
    expect(peak - b.base).toBeLessThan(40 * MB);
  }, 30_000);
}
