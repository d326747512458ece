/**
 * Reload from file on a running balancer: what changes in place, what is refused, what waits
 * for a restart, and --watch following editors that save by rename.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.ts";
import { ControlError } from "../../src/control/control.ts";
import { diffPaths, forDiff, inForce, restartNeeded } from "../../src/control/diff.ts";
import { validateConfig } from "../../src/config/load.ts";
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-reload-"));
let n = 0;

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** A balancer started from a config file it can reload; `write` replaces the file by rename. */
async function startFromFile(count: number, make: (urls: string[]) => Record<string, unknown>, watch = false) {
  const file = join(dir, `switchyard-${++n}.json`);
  let urls: string[] = [];
  const write = (config: Record<string, unknown> | string) => {
    // As editors do: write a temporary file, then rename it over the config.
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, typeof config === "string" ? config : JSON.stringify(config));
    renameSync(tmp, file);
  };
  rig = await startRig(
    count,
    (cluster) => {
      urls = cluster.backends.map((b) => b.url);
      const config = { ...testEngine(), listen: { host: "127.0.0.1", port: 0 }, admin: { host: "127.0.0.1", port: 0 }, healthCheck: false, log: { access: false }, ...make(urls) };
      writeFileSync(file, JSON.stringify(config));
      return config;
    },
    undefined,
    { load: () => loadConfigFile(file), file, watch },
  );
  const base = (more: Record<string, unknown> = {}) => ({ ...testEngine(), listen: { host: "127.0.0.1", port: 0 }, admin: { host: "127.0.0.1", port: 0 }, healthCheck: false, log: { access: false }, ...more });
  return { rig, file, urls, write, base };
}

const names = async (url: string, count: number, init?: RequestInit) => {
  const seen: string[] = [];
  for (let i = 0; i < count; i++) seen.push((await (await fetch(`${url}/`, init)).text()).trim());
  return seen;
};

describe("reload from file", () => {
  test("response header rules change in place (fetch engine)", async () => {
    const { rig: r, urls, write, base } = await startFromFile(1, (u) => ({ backends: [{ name: "a", url: u[0] }] }));
    expect((await fetch(`${r.balancer.url}/`)).headers.get("x-generation")).toBeNull();
    write(base({ responseHeaders: { set: { "x-generation": "2" } }, backends: [{ name: "a", url: urls[0] }] }));
    const report = await r.balancer.reload();
    expect(report.lines).toEqual(['responseHeaders.set.x-generation (unset) -> "2"']);
    expect((await fetch(`${r.balancer.url}/`)).headers.get("x-generation")).toBe("2");
  });

  test("backends, weights, strategy and proxy settings change in place; the pool and its state live on", async () => {
    const { rig: r, urls, write, base } = await startFromFile(3, (u) => ({
      strategy: "round-robin",
      backends: [{ name: "a", url: u[0] }, { name: "b", url: u[1] }],
    }));
    const a = r.balancer.pool.get("a")!;
    await names(r.balancer.url, 4);
    const served = a.stats.requests;
    expect(served).toBe(2);
    const hostSeen = async () => ((await (await fetch(`${r.balancer.url}/echo`)).json()).headers as [string, string][]).find(([k]) => k === "host")?.[1];
    expect(await hostSeen()).toBe(new URL(r.balancer.url).host);

    write(base({
      strategy: "weighted-round-robin",
      preserveHost: false,
      backends: [{ name: "a", url: urls[0], weight: 3 }, { name: "c", url: urls[2] }],
    }));
    const report = await r.balancer.reload({ by: "test", from: "here" });
    expect(report.changed).toBe(true);
    expect(report.version).toBe(2);
    expect(report.restartNeeded).toEqual([]);
    expect(report.lines).toEqual([
      'strategy "round-robin" -> "weighted-round-robin"',
      "preserveHost true -> false",
      "a: weight 1 -> 3",
      `added c (${new URL(urls[2]!).href}, weight 1, no active check)`,
      // Removals last: the new backends are in before the old ones go.
      "removed b (" + new URL(urls[1]!).href + ")",
    ]);
    expect(r.balancer.pool.get("a")).toBe(a);
    expect(a.stats.requests).toBe(served + 1);
    expect(r.balancer.pool.policy.name).toBe("weighted-round-robin");
    expect(r.balancer.config.strategy).toBe("weighted-round-robin");
    // Weights 3:1, smooth: a a c a, then again.
    expect(await names(r.balancer.url, 8)).toEqual(["a", "a", "c", "a", "a", "a", "c", "a"].map((x) => (x === "a" ? "backend-1" : "backend-3")));
    // The new handler sends the backend's own Host.
    expect([new URL(urls[0]!).host, new URL(urls[2]!).host]).toContain((await hostSeen())!);
    expect(r.logLines.some((l) => l.startsWith("info change #1 reload from ") && l.includes("(by test from here)"))).toBe(true);

    // The same file again: nothing to do, same version.
    const again = await r.balancer.reload();
    expect(again).toMatchObject({ changed: false, version: 2, lines: [] });
  });

  test("panicThreshold and the outlier sweep change in place: the pool's threshold, the sweep's interval", async () => {
    const { rig: r, urls, write, base } = await startFromFile(2, (u) => ({ backends: [{ name: "a", url: u[0] }, { name: "b", url: u[1] }] }));
    expect(r.balancer.pool.panicThreshold).toBe(50);
    expect(r.balancer.passive.sweeping).toBe(true);
    write(base({ panicThreshold: 0, passive: { interval: "1s", failurePercentage: {} }, backends: [{ name: "a", url: urls[0] }, { name: "b", url: urls[1] }] }));
    const report = await r.balancer.reload();
    expect(report.restartNeeded).toEqual([]);
    expect(report.lines).toContainEqual(expect.stringContaining("panicThreshold"));
    expect(r.balancer.pool.panicThreshold).toBe(0);
    expect(r.balancer.config.passive.failurePercentage).toEqual({ threshold: 85, minimumHosts: 5, requestVolume: 50 });
    expect(r.balancer.passive.sweeping).toBe(true);
    // With panic mode off, both marked down by an operator's view of health leaves nothing.
    for (const b of r.balancer.pool.backends) b.setHealthy(false, "test");
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(503);
  });

  test("an invalid file is refused: the running config keeps serving and /stats shows the problems", async () => {
    const { rig: r, write, urls, base } = await startFromFile(2, (u) => ({ backends: [{ name: "a", url: u[0] }] }));
    write(base({ backends: [{ name: "a", url: urls[0], wieght: 2 }], retry: { attempts: 0 } }));
    const refused = await r.balancer.reload({ by: "test", from: "here" }).catch((e) => e);
    expect(refused).toBeInstanceOf(ControlError);
    expect(refused.code).toBe("SY_CONFIG_INVALID");
    expect(refused.problems).toEqual([
      "retry.attempts: got 0, expected a whole number of tries, at least 1",
      'backends[0].wieght: unknown option; did you mean "weight"?',
    ]);
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
    const stats = await (await fetch(`${r.balancer.adminUrl}/stats`)).json();
    expect(stats.config).toMatchObject({ version: 1, source: "start", lastReload: { ok: false, by: "test", problems: refused.problems } });
    expect(stats.config.lastReload.error).toContain("2 problems");
    expect(stats.changes.at(-1)).toMatchObject({ ok: false, what: expect.stringMatching(/^reload from /), detail: ["kept the running config", ...refused.problems] });
    expect(r.logLines.filter((l) => l.startsWith("warn change #1 REFUSED reload")).length).toBe(1);

    write("{ not json");
    expect((await r.balancer.reload().catch((e) => e)).problems[0]).toMatch(/^cannot parse JSON/);
    // A token file that cannot be read is refused the same way, before anything changes.
    write(base({ admin: { host: "127.0.0.1", port: 0, tokenFile: join(dir, "no-such-tokens") }, backends: [{ name: "a", url: urls[0], weight: 9 }] }));
    const noTokens = await r.balancer.reload().catch((e) => e);
    expect(noTokens.code).toBe("SY_CONFIG_INVALID");
    expect(noTokens.problems[0]).toMatch(/^admin\.tokenFile: cannot read/);
    expect(r.balancer.pool.get("a")!.weight).toBe(1);

    // Fixed: accepted, and the error is cleared.
    write(base({ backends: [{ name: "a", url: urls[0], weight: 2 }] }));
    await r.balancer.reload();
    const after = await (await fetch(`${r.balancer.adminUrl}/api/config`)).json();
    expect(after.status).toMatchObject({ version: 2, source: "reload", lastReload: { ok: true, error: null, problems: [] } });
  });

  test("a changed listen address and body limit apply at once: the listener is bound anew, the old one closes", async () => {
    // The fetch engine's body limit is Bun.serve's, given when it listens: a new one is bound.
    const { rig: r, write, urls, base } = await startFromFile(1, (u) => ({ engine: "fetch", backends: [{ name: "a", url: u[0] }] }));
    const oldUrl = r.balancer.url;
    const free = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = free.port;
    free.stop(true);
    write(base({ engine: "fetch", listen: { host: "127.0.0.1", port }, limits: { maxBodySize: "1KB", responseBuffer: "1KB" }, backends: [{ name: "a", url: urls[0] }] }));
    const report = await r.balancer.reload();
    expect(report.restartNeeded).toEqual([]);
    expect(report.lines).toContain(`listener default: moved to http://127.0.0.1:${port}`);
    expect(r.balancer.config.limits).toMatchObject({ maxBodySize: 1024, responseBuffer: 1024 });
    expect(r.balancer.url).toBe(`http://127.0.0.1:${port}`);
    expect((await fetch(`${r.balancer.url}/`)).status).toBe(200);
    expect((await fetch(`${r.balancer.url}/`, { method: "POST", body: "x".repeat(2048) })).status).toBe(413);
    // The old listener stops accepting once what it held has finished.
    await waitFor(async () => (await fetch(`${oldUrl}/`).then(() => false, () => true)), "the old listener to close");
    const stats = await (await fetch(`${r.balancer.adminUrl}/stats`)).json();
    expect(stats.config.restartNeeded).toEqual([]);
  });

  test("--watch follows the file through saves by rename, and a bad save is refused", async () => {
    const { rig: r, write, urls, base } = await startFromFile(2, (u) => ({ backends: [{ name: "a", url: u[0] }] }), true);
    const changes = () => r.balancer.changes.recent().filter((c) => c.by === "file watch");
    write(base({ backends: [{ name: "a", url: urls[0] }, { name: "b", url: urls[1] }] }));
    await waitFor(() => r.balancer.pool.get("b") !== undefined, "the watcher to add b");
    // A second save by rename: the watch is on the directory, so it still fires.
    write(base({ backends: [{ name: "a", url: urls[0], weight: 4 }, { name: "b", url: urls[1] }] }));
    await waitFor(() => r.balancer.pool.get("a")!.weight === 4, "the watcher to see the second save");
    write(base({ backends: [{ name: "a", url: 42 }] }));
    await waitFor(() => changes().some((c) => !c.ok), "the bad save to be refused");
    expect(r.balancer.pool.backends.map((b) => b.name)).toEqual(["a", "b"]);
    expect(r.balancer.control.status().lastReload).toMatchObject({ ok: false, by: "file watch" });
    // A burst of writes is one reload.
    expect(changes().filter((c) => c.ok).length).toBe(2);
  });
});

describe("reload with the socket engine and in TCP mode", () => {
  test("socket engine: a removed backend's idle upstream connections close with it; proxy settings change in place", async () => {
    // A keep-alive HTTP backend that counts its open connections.
    let open = 0;
    const counted = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: () => void open++,
        close: () => void open--,
        data: (socket) => void socket.write("HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\ncounted\n"),
      },
    });
    try {
      const { rig: r, write, urls, base } = await startFromFile(1, (u) => ({
        engine: "socket",
        strategy: "round-robin",
        backends: [{ name: "counted", url: `http://127.0.0.1:${counted.port}` }, { name: "sim", url: u[0] }],
      }));
      const seen = await names(r.balancer.url, 4);
      expect(seen.filter((x) => x === "counted").length).toBe(2);
      expect(open).toBeGreaterThan(0);
      write(base({ engine: "socket", strategy: "round-robin", retry: { attempts: 2 }, backends: [{ name: "sim", url: urls[0] }] }));
      const report = await r.balancer.reload();
      expect(report.lines).toContain(`removed counted (http://127.0.0.1:${counted.port}/)`);
      expect(report.lines).toContain("retry.attempts 3 -> 2");
      expect(report.restartNeeded).toEqual([]);
      await waitFor(() => open === 0, "the idle upstream connection to the removed backend to close");
      expect(await names(r.balancer.url, 3)).toEqual(["backend-1", "backend-1", "backend-1"]);
    } finally {
      counted.stop(true);
    }
  });

  test("TCP mode: backends and timeouts change in place", async () => {
    const { rig: r, write, urls, base } = await startFromFile(2, (u) => ({
      mode: "tcp",
      backends: [{ name: "a", url: u[0]!.replace("http://", "") }],
    }));
    const url = r.balancer.url.replace("tcp:", "http:");
    // Each request on a connection of its own: a relayed connection stays with the backend it
    // was given (layer 4), so only new connections show the change.
    const fresh = { headers: { connection: "close" } };
    expect(await names(url, 2, fresh)).toEqual(["backend-1", "backend-1"]);
    write(base({ mode: "tcp", timeouts: { connect: "2s" }, backends: [{ name: "b", url: urls[1]!.replace("http://", "") }] }));
    const report = await r.balancer.reload();
    expect(report.restartNeeded).toEqual([]);
    expect(report.lines[0]).toBe("timeouts.connect 5000 -> 2000");
    expect(await names(url, 2, fresh)).toEqual(["backend-2", "backend-2"]);
  });
});

describe("config diff", () => {
  const c = (more: Record<string, unknown>) => validateConfig({ backends: [{ url: "http://127.0.0.1:1" }], ...more });

  test("leaf paths in words; token values never shown", () => {
    // A top-level option every pool inherits is said once (forDiff), not once more per pool.
    expect(diffPaths(forDiff(c({ retry: { attempts: 3 } })), forDiff(c({ retry: { attempts: 2 } })))).toEqual(["retry.attempts 3 -> 2"]);
    expect(diffPaths(c({ admin: { token: "a".repeat(16) } }), c({ admin: { token: "b".repeat(16) } }))).toEqual(["admin.token changed"]);
  });

  test("what waits for a restart, and the config in force meanwhile", () => {
    // The fetch engine gives Bun.serve its idle timeout and body limit when it listens.
    const running = c({ engine: "fetch", listen: { port: 8000 }, timeouts: { idle: "60s" } });
    const next = c({ mode: "tcp", engine: "fetch", backends: [{ url: "127.0.0.1:1" }], listen: { port: 9000 }, admin: { port: 9091, token: "t".repeat(16) }, timeouts: { idle: "30s", connect: "1s" } });
    // One process binds listeners anew on a reload; the admin listener's address waits.
    expect(restartNeeded(running, next)).toEqual(["admin.port 8081 -> 9091"]);
    const f = inForce(running, next);
    expect(f.listeners[0]).toMatchObject({ mode: "tcp", port: 9000 });
    expect(f.admin).toEqual({ host: "127.0.0.1", port: 8081, allowedHosts: [], token: "t".repeat(16) });
    expect(f.timeouts).toMatchObject({ idle: 30_000, connect: 1000, shutdownGrace: 10_000 });
    // With workers alike: the owner claims the new port and every worker binds the listener
    // anew there (test/workers/pools.test.ts); only the number of workers waits.
    const w = (more: Record<string, unknown>) => c({ workers: 2, engine: "fetch", ...more });
    const [wr, wn] = [w({ listen: { port: 8000 }, timeouts: { idle: "60s" } }), w({ workers: 3, listen: { port: 9000 }, timeouts: { idle: "30s" } })];
    expect(restartNeeded(wr, wn)).toEqual(["workers 2 -> 3"]);
    const wf = inForce(wr, wn);
    expect(wf.workers).toBe(2);
    expect(wf.listeners[0]).toMatchObject({ port: 9000 });
    expect(wf.timeouts.idle).toBe(30_000);
  });

  test("on the socket engine (the default) the idle timeout and body limit apply at once", () => {
    const running = c({ timeouts: { idle: "60s" }, limits: { maxBodySize: "1MB" } });
    const next = c({ timeouts: { idle: "30s" }, limits: { maxBodySize: "2MB" } });
    expect(restartNeeded(running, next)).toEqual([]);
    const f = inForce(running, next);
    expect(f.timeouts.idle).toBe(30_000);
    expect(f.limits.maxBodySize).toBe(2 * 1024 * 1024);
  });
});
