import { afterEach, describe, expect, test } from "bun:test";
import { BackendStatsPoller, normalize } from "../../src/admin/poller.ts";
import { Backend } from "../../src/pool/backend.ts";
import { startSimBackend, type SimBackend } from "../../sim/backend.ts";
import { waitFor } from "../helpers/wait.ts";

const backend = (name: string, port = 1, statsPath: string | null = "/stats") =>
  new Backend({ name, url: `http://127.0.0.1:${port}`, statsPath: statsPath ?? undefined });

/** A fetch whose answers the test releases by URL; records which URLs are in flight. */
function gatedFetch() {
  const inflight = new Map<string, { resolve: (r: Response) => void; signal: AbortSignal }>();
  const started: string[] = [];
  const fn = ((url: string, init: RequestInit) =>
    new Promise<Response>((resolve, reject) => {
      started.push(url);
      const signal = init.signal!;
      signal.addEventListener("abort", () => {
        inflight.delete(url);
        reject(Object.assign(new Error("aborted"), { name: "AbortError" }));
      });
      inflight.set(url, { resolve, signal });
    })) as unknown as typeof fetch;
  const release = (url: string, body: unknown = { uptimeSeconds: 1, memoryUsage: 1 }) => {
    inflight.get(url)!.resolve(Response.json(body));
    inflight.delete(url);
  };
  return { fn, inflight, started, release };
}

const servers: { stop(): unknown }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe("backend stats poller", () => {
  test("reads the sim's /stats: uptime and memory", async () => {
    const sim: SimBackend = await startSimBackend({ name: "s1" });
    servers.push(sim);
    const b = new Backend({ name: "s1", url: sim.url, statsPath: "/stats" });
    const poller = new BackendStatsPoller();
    await poller.pollAll([b]);
    const r = poller.get(b)!;
    expect(r.error).toBeNull();
    expect(r.uptime).toMatch(/^\d\dh:\d\dm:\d\ds$/);
    expect(r.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(r.memoryUsage).toBeGreaterThan(1024 * 1024);
    expect(r.memory_usage).toMatch(/MB$/);
    expect(poller.counts.ok).toBe(1);
    // A TCP-mode backend (tcp://host:port) that speaks HTTP is asked over HTTP.
    const tcp = new Backend({ name: "s1-tcp", url: sim.url.replace("http:", "tcp:"), statsPath: "/stats" });
    await poller.pollAll([tcp]);
    expect(poller.get(tcp)).toMatchObject({ error: null, uptime: expect.stringMatching(/s$/) });
  });

  test("a backend that never answers does not hold up the others, and times out", async () => {
    const hang = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: () => new Promise<Response>(() => {}) });
    servers.push({ stop: () => hang.stop(true) });
    const sims = await Promise.all([1, 2, 3].map((i) => startSimBackend({ name: `ok${i}` })));
    servers.push(...sims);
    const slow = new Backend({ name: "slow", url: `http://127.0.0.1:${hang.port}`, statsPath: "/stats" });
    const fast = sims.map((s) => new Backend({ name: s.name, url: s.url, statsPath: "/stats" }));
    const poller = new BackendStatsPoller({ workers: 3, timeoutMs: 600 });
    const started = performance.now();
    const all = poller.pollAll([slow, ...fast]);
    await waitFor(() => fast.every((b) => poller.get(b)?.error === null), "the fast backends' figures", 500);
    expect(performance.now() - started).toBeLessThan(500);
    expect(poller.get(slow)).toBeUndefined();
    // While its poll hangs, the next round skips it instead of queueing a second poll.
    expect(poller.enqueue(slow)).toBe(false);
    expect(poller.counts.skipped).toBe(1);
    await all;
    expect(poller.get(slow)!.error).toBe("timed out after 600ms");
    expect(poller.active).toBe(0);
  });

  test("a fixed number of workers; a full queue skips the poll", async () => {
    const f = gatedFetch();
    const poller = new BackendStatsPoller({ workers: 2, queueSize: 1, fetch: f.fn });
    const bs = ["a", "b", "c", "d"].map((n, i) => backend(n, 1000 + i));
    expect(bs.map((b) => poller.enqueue(b))).toEqual([true, true, true, false]);
    await Bun.sleep(0);
    expect(f.started.length).toBe(2);
    expect(poller.active).toBe(2);
    expect(poller.queued).toBe(1);
    expect(poller.counts.skipped).toBe(1);
    f.release(f.started[0]!);
    await waitFor(() => f.started.length === 3, "the queued poll to start");
    expect(poller.active).toBe(2);
    for (const url of [...f.inflight.keys()]) f.release(url);
    await waitFor(() => poller.active === 0, "the workers to finish");
    expect(poller.counts.ok).toBe(3);
    expect(poller.get(bs[3]!)).toBeUndefined();
  });

  test("backends without statsPath are never polled", async () => {
    const f = gatedFetch();
    const poller = new BackendStatsPoller({ fetch: f.fn });
    await poller.pollAll([backend("none", 1, null)]);
    expect(f.started).toEqual([]);
    expect(poller.counts).toEqual({ ok: 0, error: 0, skipped: 0 });
  });

  test("a failed poll keeps the last good figures and says why", async () => {
    let answer: () => Response = () => Response.json({ uptimeSeconds: 42, memoryUsage: 2048 });
    const poller = new BackendStatsPoller({ fetch: (async () => answer()) as unknown as typeof fetch });
    const b = backend("x");
    await poller.pollAll([b]);
    answer = () => new Response("nope", { status: 500 });
    await poller.pollAll([b]);
    expect(poller.get(b)).toMatchObject({ uptimeSeconds: 42, memoryUsage: 2048, error: "status 500" });
    answer = () => new Response("{not json");
    await poller.pollAll([b]);
    expect(poller.get(b)!.error).toBe("body is not JSON");
    answer = () => new Response("x".repeat(100), { headers: { "content-type": "application/json" } });
    const small = new BackendStatsPoller({ maxBodyBytes: 10, fetch: (async () => answer()) as unknown as typeof fetch });
    await small.pollAll([b]);
    expect(small.get(b)!.error).toContain("limit");
  });

  test("stop() aborts running polls and drops queued ones", async () => {
    const f = gatedFetch();
    const poller = new BackendStatsPoller({ workers: 1, fetch: f.fn });
    const [a, b] = [backend("a", 1), backend("b", 2)];
    const done = poller.pollAll([a, b]);
    await Bun.sleep(0);
    poller.stop();
    await done;
    expect(poller.get(a)!.error).toBe("stopped");
    expect(poller.get(b)).toBeUndefined();
    expect(poller.enqueue(a)).toBe(false);
  });

  test("normalize accepts the sim's fields and common variants", () => {
    expect(normalize({ uptime: "01h:02m:03s", memory_usage: "1.5 MB" })).toEqual({
      uptime: "01h:02m:03s", uptimeSeconds: 3723, memoryUsage: 1572864, memory_usage: "1.5 MB",
    });
    expect(normalize({ uptime: 90, memoryUsage: 1048576 })).toEqual({
      uptime: "00h:01m:30s", uptimeSeconds: 90, memoryUsage: 1048576, memory_usage: "1.0 MB",
    });
    expect(normalize({})).toEqual({ uptime: null, uptimeSeconds: null, memoryUsage: null, memory_usage: null });
    expect(() => normalize([1])).toThrow("not a JSON object");
  });
});
