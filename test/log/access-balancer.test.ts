/**
 * Lines the access log could not write are counted where operators look: /stats
 * (totals.accessLogDropped) and /metrics (switchyard_access_log_dropped_total), summed over the
 * workers. /dev/full makes every write fail for real (ENOSPC), so every line is dropped. And a
 * log.file that cannot be opened refuses the config that names it; one that takes nothing (a
 * FIFO whose reader never reads) holds up neither requests nor the shutdown.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBalancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { startCluster } from "../../sim/cluster.ts";
import { testEngine } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

const engine = testEngine().engine ?? "socket";

describe.skipIf(!existsSync("/dev/full"))(`dropped access-log lines are counted (${engine} engine)`, () => {
  for (const workers of [1, 2]) {
    test(`in /stats and /metrics (workers: ${workers})`, async () => {
      const cluster = await startCluster({ count: 1, basePort: 0 });
      const balancer = await startBalancer(
        validateConfig({
          engine, workers, listen: { host: "127.0.0.1", port: 0 }, admin: { host: "127.0.0.1", port: 0 }, healthCheck: false,
          backends: [{ name: "b1", url: cluster.backends[0]!.url }], log: { format: "combined", file: "/dev/full" },
        }),
        { logger: silentLogger },
      );
      try {
        const n = 25;
        for (let i = 0; i < n; i++) await (await fetch(`${balancer.url}/?i=${i}`, { headers: { connection: "close" } })).text();
        const dropped = async () => (await (await fetch(`${balancer.adminUrl}/stats`)).json()).totals.accessLogDropped as number;
        await waitFor(async () => (await dropped()) === n, `${n} lines dropped in /stats`, 10_000);
        const metrics = await (await fetch(`${balancer.adminUrl}/metrics`)).text();
        expect(metrics).toContain("# TYPE switchyard_access_log_dropped_total counter\n");
        expect(metrics).toContain(`\nswitchyard_access_log_dropped_total ${n}\n`);
      } finally {
        await balancer.stop(false);
        await cluster.stop();
      }
    }, 30_000);
  }
});

describe("a log.file that cannot be opened", () => {
  const config = (file?: string) => validateConfig({
    engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    backends: [{ url: "http://127.0.0.1:9" }], log: file === undefined ? {} : { file },
  });
  test("is refused at start-up and on a reload, naming the option and the path; the running config stays", async () => {
    await expect(startBalancer(config("/nonexistent-switchyard/a.log"), { logger: silentLogger })).rejects.toThrow('log.file: cannot open "/nonexistent-switchyard/a.log" for appending: ENOENT');
    const balancer = await startBalancer(config(), { logger: silentLogger });
    try {
      await expect(balancer.apply(config("/nonexistent-switchyard/b.log"))).rejects.toThrow('log.file: cannot open "/nonexistent-switchyard/b.log"');
      expect(balancer.config.log.file).toBeUndefined();
    } finally {
      await balancer.stop(false);
    }
  });
});

describe("a log.file that takes nothing", () => {
  test("requests are answered, lines past log.maxBuffer are dropped and counted, and stop() ends", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-fifo-"));
    const fifo = join(dir, "access.log");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    // A reader that opens the FIFO and never reads: writes block once its 64 KiB are full. It
    // opens it read-write (which does not wait for a writer), and is waited for: the proxy opens
    // the file without blocking, and a FIFO no one reads yet is refused (the next test).
    const reader = Bun.spawn(["sh", "-c", `exec 3<>"${fifo}"; exec sleep 60`]);
    await waitFor(() => existsSync(`/proc/${reader.pid}/fd/3`), "the reader to hold the FIFO open");
    const cluster = await startCluster({ count: 1, basePort: 0 });
    try {
      const balancer = await startBalancer(
        validateConfig({
          engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
          backends: [{ name: "b1", url: cluster.backends[0]!.url }], log: { format: "combined", file: fifo, maxBuffer: "16KB" },
        }),
        { logger: silentLogger },
      );
      const agent = "a".repeat(2000);
      const n = 200;
      for (let i = 0; i < n; i++) {
        const r = await fetch(`${balancer.url}/?i=${i}`, { headers: { "user-agent": agent } });
        expect(r.status).toBe(200);
        await r.text();
      }
      // 200 lines of 2 KB: at most 64 KiB in the pipe and 16 KB queued, the rest dropped.
      await waitFor(() => balancer.traffic.accessLogDropped > n / 2, "lines dropped");
      await balancer.stop(false);
      expect(balancer.traffic.accessLogDropped).toBeLessThanOrEqual(n);
    } finally {
      reader.kill();
      await reader.exited;
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a FIFO nobody reads yet is refused at start, naming log.file, instead of blocking the process", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-fifo-"));
    const fifo = join(dir, "access.log");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    try {
      const started = performance.now();
      const config = validateConfig({
        engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
        backends: [{ name: "b1", url: "http://127.0.0.1:9" }], log: { file: fifo },
      });
      await expect(startBalancer(config, { logger: silentLogger })).rejects.toThrow("log.file");
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
