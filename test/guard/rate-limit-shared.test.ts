/**
 * The rate-limit budgets workers share without Redis (src/guard/rate-limit-shared.ts): the
 * table's decisions against LocalBuckets on one clock, two mappings of one file spending one
 * budget, what is made and removed as configs change, processes racing on one key, and
 * `workers: 2` end to end.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { configWarnings } from "../../src/config/expand.ts";
import { RouteRateLimitSchema, type RouteRateLimit } from "../../src/guard/rate-limit-config.ts";
import { LocalBuckets } from "../../src/guard/rate-limit.ts";
import { BudgetFiles, budgetFileName, SharedBuckets } from "../../src/guard/rate-limit-shared.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { rigDefaults } from "../helpers/balancer.ts";
import { supervisorOf } from "../workers/helpers.ts";

/** The balancer's budget directory (it owns one only with workers). */
function budgetDirOf(b: Balancer): string {
  const dir = (b as unknown as { budgets?: BudgetFiles }).budgets?.dir;
  if (dir === undefined) throw new Error("no budget files: not running with workers");
  return dir;
}

const conf = (x: unknown): RouteRateLimit => v.parse(RouteRateLimitSchema, x);
const configWith = (routes: unknown[], extra: Record<string, unknown> = {}) =>
  validateConfig({ backends: [{ url: "http://127.0.0.1:9" }], routes, ...extra });

const owned: BudgetFiles[] = [];
function files(): BudgetFiles {
  const f = new BudgetFiles();
  owned.push(f);
  return f;
}
/** The budget of route `name` with limit `c`, mapped once more (as another worker would). */
function mapped(f: BudgetFiles, name: string, c: RouteRateLimit): SharedBuckets {
  return new SharedBuckets(join(f.dir, budgetFileName(name, c)), c);
}
afterAll(() => {
  for (const f of owned) f.remove();
});

describe("the shared table", () => {
  test("decides as LocalBuckets does, request by request, on the same clock", () => {
    const c = conf({ rate: "100/s", burst: 5 });
    const f = files();
    f.make(configWith([{ name: "api", pool: "default", rateLimit: c }]));
    const shared = mapped(f, "api", c);
    const local = new LocalBuckets({ count: 100, periodMs: 1000 }, 5, 1000);
    // Arrivals every 0–19 ms for a few seconds, over three keys: a burst, refusals, recovery.
    let now = performance.now();
    let differ = 0;
    for (let i = 0; i < 3000; i++) {
      now += (i * 7919) % 20;
      const key = `k${i % 3}`;
      const a = shared.take(key, now);
      const b = local.take(key, now);
      // The table keeps TATs in whole µs: a wait may differ by that rounding, a decision not.
      if ((a === 0) !== (b === 0)) differ++;
      else if (a !== 0) expect(Math.abs(a - b)).toBeLessThan(0.01);
    }
    expect(differ).toBe(0);
  });

  test("two mappings of one file (two workers) spend one budget", () => {
    const c = conf({ rate: "1/m", burst: 10, key: "route" });
    const f = files();
    f.make(configWith([{ name: "api", pool: "default", rateLimit: c }]));
    const one = mapped(f, "api", c);
    const two = mapped(f, "api", c);
    const now = performance.now();
    const allowed = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? one : two).take("", now)).filter((w) => w === 0).length;
    expect(allowed).toBe(10);
    // The next comes back after one interval (60 s), for both.
    expect(one.take("", now)).toBeCloseTo(60_000, 0);
    expect(two.take("", now + 60_001)).toBe(0);
  });

  test("a limited key stays limited among new keys; a flood past the table's size gets its budgets, in a table that stays its size", () => {
    const c = conf({ rate: "1/h", burst: 1, maxKeys: 500 });
    const f = files();
    f.make(configWith([{ name: "api", pool: "default", rateLimit: c }]));
    const b = mapped(f, "api", c);
    const now = performance.now();
    expect(b.take("victim", now)).toBe(0);
    expect(b.take("victim", now)).toBeGreaterThan(0);
    // 100 new keys: well within the table; the limited key stays limited.
    for (let i = 0; i < 100; i++) expect(b.take(`new-${i}`, now + i)).toBe(0);
    expect(b.take("victim", now + 200)).toBeGreaterThan(0);
    // A flood far past it: every new key gets its budget (it has a full one), and the table
    // stays its size (the file is fixed). Every key, but for the rare one whose 24-bit tag is
    // that of a limited key in its 16-slot window: it waits as that key does (at most
    // PROBE / 2^24, about 1e-6, per new key; 20,000 keys fail this 2% of the time if it asks for
    // none: seen once in CI, 3599284 ms for flood-i). More than 5 would be a broken table, not
    // that chance (expected 0.02; five is a chance of about 1e-13).
    let refused = 0;
    for (let i = 0; i < 20_000; i++) if (b.take(`flood-${i}`, now + 300 + i) !== 0) refused++;
    expect(refused).toBeLessThanOrEqual(5);
  });

  test("a TAT the 40-bit clock wrapped past counts as past, not as far ahead", () => {
    const c = conf({ rate: "10/s", burst: 1 });
    const f = files();
    f.make(configWith([{ name: "api", pool: "default", rateLimit: c }]));
    const b = mapped(f, "api", c);
    const now = performance.now();
    // Idle for half the span (2^39 µs, 6.4 days), and for just under the whole (12.7 days less
    // a second): the stored TAT reads as passed either way, so the key has its budget.
    for (const idleMs of [2 ** 39 / 1000, 2 ** 40 / 1000 - 1000]) {
      const key = `k${idleMs}`;
      expect(b.take(key, now)).toBe(0);
      expect(b.take(key, now)).toBeGreaterThan(0);
      expect(b.take(key, now + idleMs)).toBe(0);
    }
  });

  test("a file that is not a budget, or of another size, is refused naming it", () => {
    const c = conf({ rate: "1/s", maxKeys: 1000 });
    const f = files();
    f.make(configWith([{ name: "api", pool: "default", rateLimit: c }]));
    expect(() => new SharedBuckets(join(f.dir, budgetFileName("api", c)), conf({ rate: "1/s", maxKeys: 5000 }))).toThrow("a budget file of another size");
    const other = join(f.dir, "not-one");
    Bun.write(other, new Uint8Array(4096));
    expect(() => new SharedBuckets(other, c)).toThrow("not a rate-limit budget file");
  });
});

describe("the files, as configs change", () => {
  test("one per limited route without a store; another spec is another file; pruned once unused", () => {
    const f = files();
    const a = conf({ rate: "10/s" });
    const a2 = conf({ rate: "20/s" });
    const one = configWith([
      { name: "a", pool: "default", rateLimit: a },
      { name: "b", pool: "default" },
    ]);
    f.make(one);
    expect(readdirSync(f.dir)).toEqual([budgetFileName("a", a)]);
    const two = configWith([{ name: "a", pool: "default", rateLimit: a2 }]);
    f.make(two);
    expect(readdirSync(f.dir).sort()).toEqual([budgetFileName("a", a), budgetFileName("a", a2)].sort());
    f.prune(two);
    expect(readdirSync(f.dir)).toEqual([budgetFileName("a", a2)]);
    // With a Redis store, nothing is kept here.
    const three = configWith([{ name: "a", pool: "default", rateLimit: a2 }], { rateLimit: { store: { redis: "redis://127.0.0.1:6379" } } });
    f.make(three);
    f.prune(three);
    expect(readdirSync(f.dir)).toEqual([]);
    f.remove();
    expect(existsSync(f.dir)).toBe(false);
  });

  test("a directory left by an owner that died without stopping is removed by the next one", async () => {
    const gone = Bun.spawn(["true"]);
    await gone.exited;
    const base = existsSync("/dev/shm") ? "/dev/shm" : (await import("node:os")).tmpdir();
    const orphan = join(base, `switchyard-budgets-${gone.pid}-test`);
    const mine = join(base, `switchyard-budgets-${process.pid}-kept`);
    (await import("node:fs")).mkdirSync(orphan, { recursive: true });
    (await import("node:fs")).mkdirSync(mine, { recursive: true });
    files();
    expect(existsSync(orphan)).toBe(false);
    expect(existsSync(mine)).toBe(true);
    rmSync(mine, { recursive: true, force: true });
  });

  test("check no longer warns that workers keep N budgets", () => {
    const routes = [{ name: "api", pool: "default", rateLimit: { rate: "10/s" } }];
    expect(configWarnings(configWith(routes, { workers: 4 }))).toEqual([]);
  });
});

describe("processes racing on one key", () => {
  test("three processes taking 2,000 each from one budget of 1,000 let exactly 1,000 through", async () => {
    const c = conf({ rate: "1/h", burst: 1000, key: "route" });
    const f = files();
    f.make(configWith([{ name: "api", pool: "default", rateLimit: c }]));
    const path = join(f.dir, budgetFileName("api", c));
    const script = `
      import { SharedBuckets } from ${JSON.stringify(join(import.meta.dir, "../../src/guard/rate-limit-shared.ts"))};
      const b = new SharedBuckets(${JSON.stringify(path)}, ${JSON.stringify(c)});
      let n = 0;
      for (let i = 0; i < 2000; i++) if (b.take("", performance.now()) === 0) n++;
      console.log(n);
    `;
    const procs = [0, 1, 2].map(() => Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "inherit" }));
    const counts = await Promise.all(procs.map(async (p) => Number((await new Response(p.stdout).text()).trim())));
    expect(await Promise.all(procs.map((p) => p.exited))).toEqual([0, 0, 0]);
    // One interval is 3.6 s: nothing comes back during the run.
    expect(counts.reduce((a, b) => a + b, 0)).toBe(1000);
  }, 30_000);
});

describe("workers: 2 end to end", () => {
  let backend: ReturnType<typeof Bun.serve> | undefined;
  let b: Balancer | undefined;
  beforeAll(() => {
    backend = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
  });
  afterEach(async () => {
    await b?.stop();
    b = undefined;
  });
  afterAll(() => backend?.stop(true));

  test("the workers spend one budget; another rate starts afresh; stop removes the files", async () => {
    const config = (rate: string) =>
      validateConfig({
        ...rigDefaults(),
        workers: 2,
        backends: [{ name: "b", url: `http://127.0.0.1:${backend!.port}` }],
        routes: [{ name: "api", pool: "default", rateLimit: { rate, burst: 10, key: ["route", "header:x-k"] } }],
      });
    b = await startBalancer(config("1/m"), { env: {}, logger: memoryLogger() });
    const dir = budgetDirOf(b);
    // The budget files; the listener's client counts (net/shared-client-counts.ts) live beside them.
    const budgets = () => readdirSync(dir).filter((n) => n.endsWith(".budget"));
    expect(budgets()).toHaveLength(1);
    // Each request on a connection of its own, so that the kernel spreads them over both workers.
    const once = async (k: string) => {
      const r = await fetch(`${b!.url}/`, { headers: { "x-k": k, connection: "close" }, keepalive: false });
      await r.arrayBuffer();
      return r.status;
    };
    const run = async () => {
      const got = await Promise.all(Array.from({ length: 30 }, () => once("load")));
      return [got.filter((s) => s === 200).length, got.filter((s) => s === 429).length];
    };
    expect(await run()).toEqual([10, 20]);
    // Both workers decided some of them (with a budget each, 20 would have gone through).
    const sup = supervisorOf(b);
    await sup.pull();
    for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
    // The same limit, applied again: the spent budget stays spent.
    await b.apply(config("1/m"));
    expect(await once("load")).toBe(429);
    // Another rate: a fresh budget, in a new file; the old one is removed once every worker has the new config.
    await b.apply(config("2/m"));
    expect(await run()).toEqual([10, 20]);
    expect(budgets()).toHaveLength(1);
    await b.stop();
    b = undefined;
    expect(existsSync(dir)).toBe(false);
  }, 30_000);
});
