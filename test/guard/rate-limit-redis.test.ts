/**
 * Rate limits shared through a real Redis (rateLimit.store.redis): one budget across two
 * balancers, the script reloaded after a flush, and Redis stopped under load and started again
 * with failOpen true and false. Both engines.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { RedisStore, StoreState } from "../../src/guard/rate-limit-redis.ts";
import { rigDefaults } from "../helpers/balancer.ts";
import { requirePrograms } from "../helpers/system.ts";
import { waitFor } from "../helpers/wait.ts";
import { refusedPort } from "../tcp/helpers.ts";

const redis = requirePrograms("the rate-limit store tests", { "redis-server": "redis-server", "redis-cli": "redis-tools" });

/** A Redis server on `port` (a free one by default), no persistence; stopped by PID. */
async function startRedis(port = refusedPort()): Promise<{ port: number; proc: Subprocess }> {
  const proc = Bun.spawn(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
    { stdout: "ignore", stderr: "pipe" },
  );
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`redis-server on port ${port} exited with ${proc.exitCode}`);
    return Bun.spawnSync(["redis-cli", "-p", String(port), "ping"]).stdout.toString().trim() === "PONG";
  }, `redis-server on port ${port} to answer PING`, 5000);
  return { port, proc };
}

async function stopRedis(r: { proc: Subprocess }): Promise<void> {
  r.proc.kill();
  await r.proc.exited;
}

let backend: ReturnType<typeof Bun.serve> | undefined;
let server: { port: number; proc: Subprocess } | undefined;
const balancers: Balancer[] = [];

beforeAll(async () => {
  if (redis.skip) return;
  redis.assertPresent();
  backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  server = await startRedis();
});

afterEach(async () => {
  for (const b of balancers.splice(0)) await b.stop(false);
});

afterAll(async () => {
  backend?.stop(true);
  if (server !== undefined) await stopRedis(server);
});

async function start(engine: string, rateLimit: Record<string, unknown>, settings: Record<string, unknown> = {}): Promise<Balancer> {
  const b = await startBalancer(
    validateConfig({
      ...rigDefaults(),
      engine,
      rateLimit: { store: { redis: `redis://127.0.0.1:${server!.port}`, timeout: 500 }, ...settings },
      backends: [{ name: "b", url: `http://127.0.0.1:${backend!.port}` }],
      routes: [{ name: "api", pool: "default", rateLimit }],
    }),
    { env: {}, logger: memoryLogger() },
  );
  balancers.push(b);
  const store = b["guards"].rateLimits.store!;
  await waitFor(() => store.current === StoreState.Up, "the balancer to connect to Redis", 5000);
  return b;
}

async function status(b: Balancer, headers: Record<string, string> = {}): Promise<number> {
  const r = await fetch(`${b.url}/x`, { headers });
  await r.arrayBuffer();
  return r.status;
}

for (const engine of ["socket", "fetch"]) {
  describe.skipIf(redis.skip)(`rate limits in Redis (${engine} engine)`, () => {
    test("two balancers spend one budget per key", async () => {
      const key = `k-${engine}-${Math.random()}`;
      const rl = { rate: "1/m", burst: 4, key: "header:x-key" };
      const [a, b] = [await start(engine, rl), await start(engine, rl)];
      const got: number[] = [];
      for (let i = 0; i < 3; i++) got.push(await status(a, { "x-key": key }), await status(b, { "x-key": key }));
      expect(got.filter((s) => s === 200).length).toBe(4);
      expect(got.filter((s) => s === 429).length).toBe(2);
      // Another key has its own budget.
      expect(await status(a, { "x-key": `${key}-other` })).toBe(200);
      const r = await fetch(`${b.url}/x`, { headers: { "x-key": key } });
      expect(r.status).toBe(429);
      expect(r.headers.get("ratelimit-policy")).toBe('"api";q=1;w=60');
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
      expect((await r.json()).error).toBe("SY_RATE_LIMITED");
      // One round trip per decision (4 on a), and one EVAL more if Redis did not know the script yet.
      const store = a["guards"].rateLimits.store!;
      expect(store.roundTrips).toBeGreaterThanOrEqual(4);
      expect(store.roundTrips).toBeLessThanOrEqual(5);
    });

    test("after SCRIPT FLUSH the script is loaded again (EVAL) and decisions go on", async () => {
      const key = `f-${engine}-${Math.random()}`;
      const a = await start(engine, { rate: "1/m", burst: 1, key: "header:x-key" });
      expect(await status(a, { "x-key": key })).toBe(200);
      expect(Bun.spawnSync(["redis-cli", "-p", String(server!.port), "script", "flush"]).stdout.toString().trim()).toBe("OK");
      expect(await status(a, { "x-key": key })).toBe(429);
      expect(await status(a, { "x-key": `${key}-2` })).toBe(200);
    });
  });
}

describe.skipIf(redis.skip)("workers", () => {
  test("with workers: 2 and the store, the workers spend one budget", async () => {
    const b = await startBalancer(
      validateConfig({
        ...rigDefaults(),
        workers: 2,
        rateLimit: { store: { redis: `redis://127.0.0.1:${server!.port}` }, failOpen: false },
        backends: [{ name: "b", url: `http://127.0.0.1:${backend!.port}` }],
        routes: [{ name: "api", pool: "default", rateLimit: { rate: "1/m", burst: 10, key: ["route", "header:x-k"] } }],
      }),
      { env: {}, logger: memoryLogger() },
    );
    balancers.push(b);
    // Each request on a connection of its own, so that the kernel spreads them over both workers.
    const once = async (k: string) => {
      const r = await fetch(`${b.url}/`, { headers: { "x-k": k, connection: "close" }, keepalive: false });
      await r.arrayBuffer();
      return r.status;
    };
    // Both workers answer from Redis (failOpen false: 503 until a worker is connected).
    await waitFor(async () => (await Promise.all(Array.from({ length: 12 }, () => once(`probe-${Math.random()}`)))).every((s) => s === 200), "both workers to reach Redis", 10_000);
    const got = await Promise.all(Array.from({ length: 30 }, () => once("load")));
    expect(got.filter((s) => s === 200).length).toBe(10);
    expect(got.filter((s) => s === 429).length).toBe(20);
  }, 30_000);
});

describe.skipIf(redis.skip)("the store's script", () => {
  test("a rate far above any load never refuses; a burst of 50 at 100/s lets 50 through at once", async () => {
    const store = new RedisStore(`redis://127.0.0.1:${server!.port}`, 1000, memoryLogger());
    try {
      await waitFor(() => store.current === StoreState.Up, "the store to connect", 5000);
      const id = Math.random();
      // An interval of 1e-6 ms: below what a Unix-epoch double in ms can add (the script counts from 2023).
      const tiny = await Promise.all(Array.from({ length: 200 }, () => store.take(`tiny-${id}`, String(1000 / 999_999_999), String(1000))));
      expect(tiny.every((r) => r === 0)).toBe(true);
      const burst = await Promise.all(Array.from({ length: 60 }, () => store.take(`burst-${id}`, "10", "500")));
      const allowed = burst.filter((r) => r === 0).length;
      // Pipelined in one tick: 50, and one more for each 10 ms the 60 took inside Redis.
      expect(allowed).toBeGreaterThanOrEqual(50);
      expect(allowed).toBeLessThanOrEqual(51);
      expect(burst.filter((r) => r > 0).every((r) => r <= 10)).toBe(true);
    } finally {
      store.stop();
    }
  });
});

describe.skipIf(redis.skip)("Redis stopped under load and started again", () => {
  for (const failOpen of [true, false]) {
    test(`failOpen ${failOpen}: ${failOpen ? "let through" : "503 SY_AUTH_UNAVAILABLE"} while it is down; limits again once it is back`, async () => {
      const own = await startRedis();
      const b = await startBalancer(
        validateConfig({
          ...rigDefaults(),
          rateLimit: { store: { redis: `redis://127.0.0.1:${own.port}`, timeout: 300 }, failOpen },
          backends: [{ name: "b", url: `http://127.0.0.1:${backend!.port}` }],
          routes: [{ name: "api", pool: "default", rateLimit: { rate: "1/m", burst: 2, key: "route" } }],
        }),
        { env: {}, logger: memoryLogger() },
      );
      balancers.push(b);
      const store = b["guards"].rateLimits.store!;
      await waitFor(() => store.current === StoreState.Up, "the balancer to connect to Redis", 5000);
      // Load: 8 clients in a loop, counting statuses, through the outage.
      const counts = new Map<number, number>();
      let running = true;
      const seen: number[] = [];
      const loop = async () => {
        while (running) {
          const s = await status(b).catch(() => 0);
          counts.set(s, (counts.get(s) ?? 0) + 1);
          seen.push(s);
        }
      };
      const loops = Array.from({ length: 8 }, loop);
      await waitFor(() => (counts.get(429) ?? 0) > 20, "the limit to refuse under load", 5000);
      expect(counts.get(200)).toBe(2);
      await stopRedis(own);
      const down = failOpen ? 200 : 503;
      await waitFor(() => (counts.get(down) ?? 0) > (failOpen ? 22 : 20), `${down} answers while Redis is down`, 5000);
      expect(store.unavailable).toBeGreaterThan(0);
      const restarted = await startRedis(own.port);
      try {
        await waitFor(() => store.current === StoreState.Up, "the balancer to reconnect to Redis", 10_000);
        const mark = seen.length;
        // A fresh Redis has no budgets: 2 more through, then refusals again.
        await waitFor(() => seen.slice(mark).filter((s) => s === 429).length > 20, "the limit to refuse again", 5000);
        // From then on, with the budget spent and Redis up, every answer is a refusal.
        const settled = seen.length;
        await waitFor(() => seen.length >= settled + 50, "50 more answers", 5000);
        running = false;
        await Promise.all(loops);
        expect(seen.slice(settled).every((s) => s === 429)).toBe(true);
        // Never a client error, never a 502.
        expect([...counts.keys()].sort()).toEqual(failOpen ? [200, 429] : [200, 429, 503]);
      } finally {
        running = false;
        await Promise.all(loops);
        await stopRedis(restarted);
      }
    }, 30_000);
  }
});

describe.skipIf(redis.skip)("a reload that changes the store", () => {
  test("the old store serves the config in force until the new one is; a reload that fails keeps it", async () => {
    const other = await startRedis();
    try {
      const b = await start("socket", { rate: "1/m", burst: 1, key: "route" });
      const old = b["guards"].rateLimits.store!;
      const configWith = (port: number, routeExtra: Record<string, unknown> = {}) =>
        validateConfig({
          ...rigDefaults(),
          rateLimit: { store: { redis: `redis://127.0.0.1:${port}`, timeout: 500 } },
          backends: [{ name: "b", url: `http://127.0.0.1:${backend!.port}` }],
          routes: [{ name: "api", pool: "default", rateLimit: { rate: "1/m", burst: 1, key: "route" }, ...routeExtra }],
        });
      // Refused while its guards are built (the users file is gone by then): the store it would
      // have replaced goes on serving the config in force.
      const users = `/tmp/switchyard-users-${process.pid}-${Math.random()}`;
      await Bun.write(users, `alice:${await Bun.password.hash("pw", "bcrypt")}\n`);
      const failing = configWith(other.port, { basicAuth: { usersFile: users } });
      await Bun.file(users).delete();
      await expect(b.apply(failing)).rejects.toThrow();
      expect(old.current).toBe(StoreState.Up);
      expect(await status(b)).toBe(200);
      expect(await status(b)).toBe(429);
      // Applied: the new store is in force, the old one stopped.
      await b.apply(configWith(other.port));
      const next = b["guards"].rateLimits.store!;
      expect(next).not.toBe(old);
      expect(old.current).toBe(StoreState.Stopped);
      await waitFor(() => next.current === StoreState.Up, "the new store to connect");
      expect(await status(b)).toBe(200);
    } finally {
      await stopRedis(other);
    }
  });
});
