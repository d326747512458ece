/**
 * The one test rig: a balancer on an ephemeral loopback port, in this process (startRig, and
 * recordingRig in front of a recording backend) or in a process of its own (spawnBalancer,
 * serveProcess), with the same defaults. Every variant honours SWITCHYARD_TEST_ENGINE.
 *
 * What a test varies is config, merged over the defaults: `engine`, `mode: "tcp"`, `admin`
 * ({ host: "127.0.0.1", port: 0 } turns it on), `workers`, checks, limits; backends are the sims
 * the rig starts (`count`) or the test's own (`backends`, with count 0). BalancerOptions (the
 * fourth argument of startRig) add a config file to follow (`file`, `watch`, `load`), `env`, a
 * `predecessor`. Two suites name a preset over startRig: test/admin/helpers.ts (startStack:
 * admin on, fast checks, the sims' /stats) and test/health/helpers.ts (startHealthRig: fast
 * checks and a recorder of state changes).
 *
 * Raw bytes to and from it go through test/helpers/raw.ts.
 */
import { afterEach } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { validateConfig } from "../../src/config/load.ts";
import { startBalancer, type Balancer, type BalancerOptions } from "../../src/balancer.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import type { AccessEntry } from "../../src/log/access.ts";
import { startCluster, type SimCluster } from "../../sim/cluster.ts";
import { startRecordingBackend, type RecordingBackend } from "./recording-backend.ts";
import { waitFor } from "./wait.ts";

export interface TestRig {
  balancer: Balancer;
  cluster: SimCluster;
  logLines: string[];
  /** Access-log lines as written (text format unless the config says json). */
  access: string[];
  stop(): Promise<void>;
}

export type RigConfig = Record<string, unknown> | ((cluster: SimCluster) => Record<string, unknown>);

/** Resolve a RigConfig against the running cluster. */
export function rigConfig(config: RigConfig, cluster: SimCluster): Record<string, unknown> {
  return typeof config === "function" ? config(cluster) : config;
}

/**
 * Start `count` sim backends on ephemeral ports and a balancer in front of them.
 * `config` (or a function of the cluster giving it) is merged over a test default: loopback,
 * ephemeral port, no admin, no active checks, access log kept in memory.
 */
export async function startRig(
  count: number,
  config: RigConfig = {},
  /** Run on the backends before the balancer starts, so that its start-up probes see it. */
  prepare: (cluster: SimCluster) => void | Promise<void> = () => {},
  /** More balancer options (env, load, file, watch); the logger and access log are the rig's. */
  options: Omit<BalancerOptions, "logger" | "accessLogSink"> = {},
): Promise<TestRig> {
  const cluster: SimCluster = count > 0 ? await startCluster({ count, basePort: 0 }) : { backends: [], stop: async () => {} };
  const access: string[] = [];
  const logger = memoryLogger();
  try {
    await prepare(cluster);
    const balancer = await startBalancer(
      validateConfig({
        // SWITCHYARD_TEST_ENGINE=fetch runs every rig-based suite on the fetch engine
        // (`bun run test:fetch`); a test that names its engine keeps it.
        ...rigDefaults(),
        log: { access: true },
        backends: cluster.backends.map((b) => ({ name: b.name, url: b.url })),
        ...rigConfig(config, cluster),
      }),
      { env: {}, ...options, logger, accessLogSink: { write: (l) => void access.push(l), flush: () => {} } },
    );
    return {
      balancer, cluster, logLines: logger.lines, access,
      async stop() {
        await balancer.stop(false);
        await cluster.stop();
      },
    };
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

/**
 * What every rig starts from: the engine SWITCHYARD_TEST_ENGINE names, loopback on an ephemeral
 * port, no admin port, no active checks, no access log (startRig keeps it, in memory).
 */
export function rigDefaults(): Record<string, unknown> {
  return { ...testEngine(), listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false } };
}

/**
 * `{ engine }` from SWITCHYARD_TEST_ENGINE, or nothing: `bun run test:fetch` runs the rig-based
 * suites again on the fetch engine. Tests that write config files put it in them too.
 */
export function testEngine(): { engine?: string } {
  const engine = process.env.SWITCHYARD_TEST_ENGINE;
  return engine ? { engine } : {};
}

export type { AccessEntry };

/**
 * A test file's balancer in front of one recording backend (test/helpers/recording-backend.ts),
 * on `engine`, started per test by `start(config)` and stopped after each (an afterEach this
 * registers). `rig()` is the current one.
 */
export function recordingRig(engine: "socket" | "fetch"): {
  start(config?: Record<string, unknown>): Promise<{ port: number; backend: RecordingBackend }>;
  rig(): TestRig;
} {
  let rig: TestRig | undefined;
  let backend: RecordingBackend | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
    backend?.stop();
    backend = undefined;
  });
  return {
    async start(config = {}) {
      backend = startRecordingBackend();
      rig = await startRig(0, { engine, backends: [{ name: "rec", url: backend.url }], ...config });
      return { port: rig.balancer.port, backend };
    },
    rig() {
      if (rig === undefined) throw new Error("no rig: call start() first");
      return rig;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// In a process of its own

/** VmRSS of a process in bytes, from /proc (Linux). */
export async function rss(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(await Bun.file(`/proc/${pid}/status`).text())?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

export interface BalancerProcess {
  pid: number;
  port: number;
  /** RSS once it listens, before any traffic. */
  base: number;
  /** The highest RSS seen so far (sampled every 20 ms, and read once more now). */
  peak(): Promise<number>;
}

/**
 * The balancer alone (no CLI) in a subprocess, from `config` merged over the rig's defaults
 * (test/helpers/fixtures/balancer-process.ts, which serves any mode), with its RSS sampled: the
 * memory tests read that process's memory. Everything it starts is handed to `cleanups`: the
 * process is killed and the sampler stopped when the test ends.
 */
export async function spawnBalancer(config: Record<string, unknown>, cleanups: (() => unknown)[]): Promise<BalancerProcess> {
  const proc = Bun.spawn([process.execPath, `${import.meta.dir}/fixtures/balancer-process.ts`, JSON.stringify({ ...rigDefaults(), ...config })], {
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
  const base = await rss(proc.pid);
  let peak = base;
  const sampler = setInterval(() => void rss(proc.pid).then((r) => (peak = Math.max(peak, r)), () => {}), 20);
  cleanups.push(() => clearInterval(sampler));
  return { pid: proc.pid, port: Number(out.trim()), base, peak: async () => Math.max(peak, await rss(proc.pid)) };
}

/** The CLI, for `switchyard serve` in a subprocess. */
export const CLI = join(import.meta.dir, "../../src/cli.ts");

export interface ServeOptions {
  /** Written to a fresh config file, merged over the rig's defaults. */
  config?: Record<string, unknown>;
  /** A config file the test wrote itself (used as it is). */
  file?: string;
  /** More arguments after `serve --config <file>` (--pid-file, --watch...). */
  args?: string[];
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Rewrites the command line: `ulimit` through sh, a namespace through unshare. */
  wrap?: (argv: string[]) => string[];
  /** Where the child's stderr goes: collected into output() (default), or this process's. */
  stderr?: "pipe" | "inherit";
}

/** A `switchyard serve` process and everything it (and its successors, which share its stdout) wrote. */
export interface Serving {
  proc: Subprocess<"ignore", "pipe", "pipe" | "inherit">;
  /** The config file it was started with. */
  file: string;
  /** Its stdout (and its stderr unless inherited) so far. */
  output(): string;
  /** The first capture of `re` in the output, once it appears (fails early if the process exits first). */
  waitForLine(re: RegExp, what: string, timeoutMs?: number): Promise<string>;
  /** The proxy's port, once it listens. */
  proxyPort(timeoutMs?: number): Promise<number>;
  /** The admin API's URL, once it listens. */
  adminUrl(timeoutMs?: number): Promise<string>;
}

/**
 * `switchyard serve --config <file>` in a subprocess, for what needs the whole program in a
 * process of its own: signals, upgrades, sd_notify, descriptor limits. Its output is read as it
 * comes (a child never blocks on a full pipe). When `cleanups` is given, the process is killed
 * and awaited (and a config file this wrote removed) when the test ends.
 */
export function serveProcess(opts: ServeOptions, cleanups?: (() => unknown)[]): Serving {
  let file = opts.file;
  let dir: string | undefined;
  if (file === undefined) {
    dir = mkdtempSync(join(tmpdir(), "switchyard-rig-"));
    file = join(dir, "switchyard.json");
    writeFileSync(file, JSON.stringify({ ...rigDefaults(), ...opts.config }));
  }
  const argv = [process.execPath, CLI, "serve", "--config", file, ...(opts.args ?? [])];
  const proc = Bun.spawn(opts.wrap ? opts.wrap(argv) : argv, {
    stdin: "ignore", stdout: "pipe", stderr: opts.stderr ?? "pipe",
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  let out = "";
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of proc.stdout) out += decoder.decode(chunk, { stream: true });
  })();
  if (proc.stderr instanceof ReadableStream) {
    const stderr = proc.stderr;
    void (async () => {
      const d = new TextDecoder();
      for await (const chunk of stderr) out += d.decode(chunk, { stream: true });
    })();
  }
  cleanups?.push(async () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    await proc.exited;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const serving: Serving = {
    proc: proc as Serving["proc"],
    file,
    output: () => out,
    async waitForLine(re, what, timeoutMs = 15_000) {
      await waitFor(() => re.test(out) || proc.exitCode !== null, what, timeoutMs, 20);
      const m = re.exec(out);
      if (!m) throw new Error(`switchyard serve exited ${proc.exitCode} before ${what}: ${out}`);
      return m[1] ?? m[0];
    },
    async proxyPort(timeoutMs) {
      return Number(await serving.waitForLine(/proxy listening on \w+:\/\/[\d.]+:(\d+)/, "the proxy to listen", timeoutMs));
    },
    adminUrl: (timeoutMs) => serving.waitForLine(/admin listening on (\S+)/, "the admin port to listen", timeoutMs),
  };
  return serving;
}
