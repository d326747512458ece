/**
 * The accuracy test: three Switchyard processes share one Redis; 300 requests/s are
 * offered against a 100/s limit for 10 s; the total let through is within ±5% of 1,000.
 */
import { afterAll, expect, test } from "bun:test";
import { spawnBalancer } from "../helpers/balancer.ts";
import { requirePrograms } from "../helpers/system.ts";
import { waitFor } from "../helpers/wait.ts";
import { refusedPort } from "../tcp/helpers.ts";

const redis = requirePrograms("the rate-limit accuracy test", { "redis-server": "redis-server", "redis-cli": "redis-tools" });
const cleanups: (() => unknown)[] = [];

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

test.skipIf(redis.skip)("3 processes, one Redis, 300/s offered against 100/s for 10 s: 1,000 ± 5% let through", async () => {
  redis.assertPresent();
  const port = refusedPort();
  const proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"], { stdout: "ignore", stderr: "pipe" });
  cleanups.push(async () => {
    proc.kill();
    await proc.exited;
  });
  await waitFor(() => Bun.spawnSync(["redis-cli", "-p", String(port), "ping"]).stdout.toString().trim() === "PONG", "redis-server to answer PING", 5000);
  const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  cleanups.push(() => backend.stop(true));

  const config = {
    rateLimit: { store: { redis: `redis://127.0.0.1:${port}` }, failOpen: false },
    backends: [{ name: "b", url: `http://127.0.0.1:${backend.port}` }],
    routes: [{ name: "api", pool: "default", rateLimit: { rate: "100/s", burst: 10, key: "header:x-key" } }],
  };
  const procs = await Promise.all([0, 1, 2].map(() => spawnBalancer(config, cleanups)));
  // Each process answers from Redis (not 503) before the load starts.
  for (const p of procs) {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${p.port}/`, { headers: { "x-key": `probe-${Math.random()}` } })).status === 200, `process ${p.pid} to reach Redis`, 10_000);
  }

  const counts = new Map<number, number>();
  const inFlight: Promise<void>[] = [];
  const rate = 300;
  const seconds = 10;
  const t0 = performance.now();
  let sent = 0;
  while (sent < rate * seconds) {
    const due = Math.min(rate * seconds, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
    for (; sent < due; sent++) {
      const p = procs[sent % 3]!;
      inFlight.push(
        fetch(`http://127.0.0.1:${p.port}/`, { headers: { "x-key": "load" } })
          .then(async (r) => {
            await r.arrayBuffer();
            counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
          })
          .catch(() => void counts.set(0, (counts.get(0) ?? 0) + 1)),
      );
    }
    await Bun.sleep(2);
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - t0) / 1000;
  const allowed = counts.get(200) ?? 0;
  console.log(`rate-limit accuracy: ${sent} offered over ${elapsed.toFixed(2)} s to 3 processes, ${allowed} let through, statuses ${JSON.stringify([...counts])}`);
  expect([...counts.keys()].sort()).toEqual([200, 429]);
  // GCRA: burst + rate × time (1,010). A burst of 1 would leave no tolerance for the arrivals'
  // jitter: each let-through request then wastes the gap to the next arrival, and 832 got
  // through in a trial run (83/s), as GCRA with no tolerance should.
  expect(Math.abs(allowed - 1000)).toBeLessThanOrEqual(50);
}, 60_000);
