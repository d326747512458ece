import { describe, expect, test } from "bun:test";
import { Sampler } from "../../src/admin/sampler.ts";
import { clock, fakeSource, serve } from "./fixtures.ts";
import { waitFor } from "../helpers/wait.ts";

function setup(opts: ConstructorParameters<typeof Sampler>[1] = {}) {
  const src = fakeSource([
    { name: "a", url: "http://127.0.0.1:1" },
    { name: "b", url: "http://127.0.0.1:2" },
  ]);
  const c = clock();
  const sampler = new Sampler(src, { now: c.now, ...opts });
  return { src, c, sampler };
}

describe("sampler", () => {
  test("requests/s, error shares and percentiles over the window come from counter deltas", () => {
    const { src, c, sampler } = setup({ windowSize: 10 });
    // Before the window: slow requests that must not show in the window's percentiles.
    for (let i = 0; i < 100; i++) serve(src, "a", 200, 2000);
    sampler.sample();
    for (let s = 0; s < 10; s++) {
      c.advance(1000);
      for (let i = 0; i < 4; i++) serve(src, "a", 200, 2);
      serve(src, "a", 502, 2);
      serve(src, "b", 200, 20);
      sampler.sample();
    }
    const w = sampler.window()!;
    expect(w.seconds).toBe(10);
    expect(w.total.rate).toBe(6);
    const a = w.backends.get(src.pool.get("a")!)!;
    expect(a.rate).toBe(5);
    expect(a.errorRate).toEqual({ "4xx": 0, "5xx": 0.2, proxy: 0 });
    expect(a.latencyMs!.p99).toBeLessThanOrEqual(2.5);
    expect(w.backends.get(src.pool.get("b")!)!.latencyMs!.p50).toBeGreaterThan(15);
    // All time still holds the slow ones.
    expect(src.pool.get("a")!.stats.latency.quantile(0.5)).toBeGreaterThan(1000);
  });

  test("each sample makes one chart point with per-second figures per backend", () => {
    const { src, c, sampler } = setup();
    expect(sampler.sample()).toBeUndefined();
    c.advance(2000);
    for (let i = 0; i < 10; i++) serve(src, "b", 200, 8);
    src.pool.get("a")!.acquire();
    const p = sampler.sample()!;
    expect(p.total.rps).toBe(5);
    expect(p.backends.b!.rps).toBe(5);
    expect(p.backends.a!.rps).toBe(0);
    expect(p.backends.a!.p50).toBeNull();
    expect(p.backends.a!.inFlight).toBe(1);
    expect(p.total.inFlight).toBe(1);
    expect(p.backends.b!.p50).toBeGreaterThan(6);
    const h = sampler.history();
    expect(h.t).toEqual([c.now()]);
    expect(h.backends.b!.rps).toEqual([5]);
  });

  test("history is bounded: the oldest points are overwritten", () => {
    const { src, c, sampler } = setup({ historySize: 300 });
    for (let i = 0; i < 1000; i++) {
      c.advance(1000);
      serve(src, "a", 200, 1);
      sampler.sample();
    }
    expect(sampler.historyLength).toBe(300);
    const h = sampler.history();
    expect(h.t.length).toBe(300);
    expect(h.t[299]).toBe(c.now());
    expect(h.t[0]).toBe(c.now() - 299_000);
    expect(h.backends.a!.rps.length).toBe(300);
    expect(h.total.rps.every((x) => x === 1)).toBe(true);
  });

  test("a backend added later is padded to the same length; a removed one is dropped", () => {
    const { src, c, sampler } = setup();
    sampler.sample();
    c.advance(1000);
    sampler.sample();
    src.pool.add({ name: "late", url: "http://127.0.0.1:9" });
    c.advance(1000);
    sampler.sample();
    c.advance(1000);
    serve(src, "late", 200, 1);
    sampler.sample();
    let h = sampler.history();
    expect(h.backends.late!.rps).toEqual([null, null, 1]);
    expect(h.backends.a!.rps.length).toBe(3);
    src.pool.remove("a");
    c.advance(1000);
    sampler.sample();
    h = sampler.history();
    expect(h.backends.a).toBeUndefined();
    expect(h.backends.late!.rps.length).toBe(4);
  });

  test("runs while held, stops by itself when nobody watches, and stop() is final", async () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:1" }]);
    const sampler = new Sampler(src, { intervalMs: 40, idleStopMs: 0 });
    let ticks = 0;
    sampler.onSample(() => ticks++);
    expect(sampler.running).toBe(false);
    const release = sampler.hold();
    expect(sampler.running).toBe(true);
    await waitFor(() => ticks >= 3, "three ticks");
    release();
    await waitFor(() => !sampler.running, "the sampler to stop by itself", 1000);
    const after = ticks;
    await Bun.sleep(120);
    expect(ticks).toBe(after);
    sampler.touch();
    expect(sampler.running).toBe(true);
    sampler.stop();
    expect(sampler.running).toBe(false);
    sampler.touch();
    sampler.hold();
    expect(sampler.running).toBe(false);
  });

  test("memory stays flat over millions of requests", () => {
    const { src, c, sampler } = setup({ historySize: 300 });
    const a = src.pool.get("a")!;
    const heap = () => {
      Bun.gc(true);
      return process.memoryUsage().heapUsed;
    };
    const run = (requests: number) => {
      for (let i = 0; i < requests; i++) {
        const ms = (i % 997) * 0.37;
        a.stats.countRequest();
        a.stats.countResponse("GET", 200, ms);
        src.traffic.record("GET", 200, ms);
        if (i % 2000 === 0) {
          c.advance(1000);
          sampler.sample();
        }
      }
    };
    run(400_000); // warm up: the rings fill
    const before = heap();
    run(2_000_000);
    const grown = heap() - before;
    expect(a.stats.latency.count).toBe(2_400_000);
    expect(sampler.historyLength).toBe(300);
    expect(grown).toBeLessThan(4 * 1024 * 1024);
  });
});
