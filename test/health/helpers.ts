/**
 * Shared by the health end-to-end tests: a balancer in front of sim backends whose health can
 * be set before the balancer starts, a recorder of state changes with their times, and a
 * collector of measured detection and readmission times, printed once at the end of a file.
 */
import { afterAll } from "bun:test";
import { rigConfig, startRig, type RigConfig, type TestRig } from "../helpers/balancer.ts";
import type { BackendState, StateChange } from "../../src/pool/backend.ts";
import type { Pool } from "../../src/pool/pool.ts";
import type { SimCluster } from "../../sim/cluster.ts";

/** Fast checks so the suite stays short: flips within 3×100ms + 100ms down, 2×100ms up. */
export const FAST_CHECK = { type: "http", path: "/health", interval: "100ms", timeout: "100ms", rise: 2, fall: 3 } as const;
export const INTERVAL = 100;
export const TIMEOUT = 100;
export const RISE = 2;
export const FALL = 3;
/**
 * Fixed allowance added to the upper bound of every window, for timer granularity and the
 * recorder's own hops. Stalls of the whole process (a loaded CI machine: the sims run in this
 * process too) are measured by a StallMeter and added on top; the lower bounds need neither:
 * they prove rise/fall were honoured.
 */
export const LAG = 50;

/**
 * Measures how late this process's timers ran during a period: the sum of every tick's delay
 * beyond its 5 ms. A window assertion adds it to its upper bound, so it fails on a slow monitor
 * but not on a machine that stopped running the test for a while.
 */
export class StallMeter {
  private static readonly TICK = 5;
  private last = performance.now();
  private excess = 0;
  private readonly timer = setInterval(() => this.tick(), StallMeter.TICK);

  private tick(): void {
    const now = performance.now();
    this.excess += Math.max(0, now - this.last - StallMeter.TICK);
    this.last = now;
  }

  /** Stop measuring; the total stall in ms. */
  stop(): number {
    this.tick();
    clearInterval(this.timer);
    return this.excess;
  }
}

export interface HealthRig extends TestRig {
  changes: ChangeRecorder;
}

/**
 * `count` sim backends, `prepare` run on them before the balancer starts (so start-up probes
 * see it), then a balancer on an ephemeral port with `config` merged over a test default
 * (loopback, no admin, no access log, the fast HTTP check).
 */
export async function startHealthRig(
  count: number,
  /** Merged over the default; a function gets the running cluster (for per-backend settings). */
  config: RigConfig = {},
  prepare: (cluster: SimCluster) => void | Promise<void> = () => {},
): Promise<HealthRig> {
  const rig = await startRig(count, (cluster) => ({ log: { access: false }, healthCheck: FAST_CHECK, ...rigConfig(config, cluster) }), prepare);
  const changes = new ChangeRecorder();
  changes.attach(rig.balancer.pool);
  return { ...rig, changes };
}

export interface TimedChange {
  name: string;
  from: BackendState;
  to: BackendState;
  reason: string;
  /** performance.now() when announced. */
  at: number;
}

/** Every state change with its time; await the next one a test expects. */
export class ChangeRecorder {
  readonly all: TimedChange[] = [];
  private waiters: { match: (c: TimedChange) => boolean; resolve: (c: TimedChange) => void }[] = [];

  attach(pool: Pool): void {
    pool.onStateChange((c: StateChange) => {
      const t: TimedChange = { name: c.backend.name, from: c.from, to: c.to, reason: c.reason, at: performance.now() };
      this.all.push(t);
      for (const w of this.waiters.filter((x) => x.match(t))) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(t);
      }
    });
  }

  /** The next change of `name` to `to` announced after this call. */
  next(name: string, to: BackendState, timeoutMs = 5000): Promise<TimedChange> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${name} to become ${to}`));
      }, timeoutMs);
      const done = (c: TimedChange) => {
        clearTimeout(timer);
        resolve(c);
      };
      this.waiters.push({ match: (c) => c.name === name && c.to === to, resolve: done });
    });
  }

  of(name: string): string[] {
    return this.all.filter((c) => c.name === name).map((c) => `${c.from} -> ${c.to}: ${c.reason}`);
  }
}

/** Measured times in ms by label; printed as one table after the file's tests. */
const measured = new Map<string, number[]>();

/** Call at the top level of a test file: prints what record() collected, after its tests. */
export function reportMeasurements(): void {
  afterAll(() => {
    if (measured.size === 0) return;
    const fmt = (x: number) => `${Math.round(x)}ms`;
    const rows = [...measured].map(([k, v]) => {
      const sorted = [...v].sort((a, b) => a - b);
      return `  ${k.padEnd(60)} n=${v.length}  min ${fmt(sorted[0]!)}  median ${fmt(sorted[Math.floor(sorted.length / 2)]!)}  max ${fmt(sorted.at(-1)!)}`;
    });
    console.log(`measured (interval ${INTERVAL}ms, timeout ${TIMEOUT}ms, rise ${RISE}, fall ${FALL}):\n${rows.join("\n")}`);
    measured.clear();
  });
}

export function record(label: string, ms: number): void {
  const list = measured.get(label) ?? [];
  list.push(ms);
  measured.set(label, list);
}

/** GET `url` once and return the body's backend name (the sim answers "backend-N\n" to "/"). */
export async function whoAnswers(url: string): Promise<{ status: number; name: string }> {
  const res = await fetch(url);
  return { status: res.status, name: (await res.text()).trim() };
}
