/**
 * The owner's side of `workers` (docs/operations.md, "Workers"): starts N worker processes of this same
 * binary, keeps them told of the backends, takes in what they report, restarts one that dies,
 * and stops them all.
 *
 * - One owner of backend state. The owner's pools, health monitor, passive health and control
 *   stay the only place anything about a backend is decided. Every change (a flip, a drain, an
 *   ejection or its end, a reload's new weights, a pool added or removed) goes to every worker
 *   as a whole set of tables, one per pool, at the end of the turn in which it happened: well
 *   within 50 ms on one machine (the IPC round trip of a 20-backend table measured about
 *   0.1 ms). Each worker answers with the version it applied, so `synced()` can wait for all.
 * - Ports: the owner claims every listener's port (Balancer.portFor) and hands the map to the
 *   workers, which bind each listener on its port beside one another (SO_REUSEPORT).
 * - Passive signals from workers are events naming pool and backend (see WorkerPassive); each
 *   is fed once into that pool's PassiveHealth, so five failures seen by two workers are five
 *   failures, not ten.
 * - Figures: the Summer (reports.ts) adds up the workers' reports into the owner's stats:
 *   totals, each backend of each pool, each route.
 * - Faults: a worker that exits while the balancer runs is logged and started again after a
 *   backoff (100 ms doubling to 10 s; back to 100 ms once one has served for 10 s). The others
 *   keep serving meanwhile.
 *
 * Every timer and child process here is owned: stop() ends them all.
 */
import { join } from "node:path";
import { availableParallelism } from "node:os";
import type { Subprocess } from "bun";
import type { Config } from "../config/schema.ts";
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import type { RouteTraffic } from "../listener/routing.ts";
import type { PassiveSignals } from "../health/passive.ts";
import type { WorkerFigures, WorkersFigures } from "../admin/snapshot.ts";
import type { Logger } from "../log/logger.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import type { TcpStats } from "../tcp/stats.ts";
import { ConfigError } from "../config/load.ts";
import { ListenError, type ListenerName } from "../listen-error.ts";
import type { CodeFrom } from "../errors.ts";
import { Summer } from "./reports.ts";
import { WORKER_COMMAND, type FromWorker, type Ports, type Table, type Tables, type ToWorker } from "./protocol.ts";
import type { RecentFailures } from "../stats/recent-failures.ts";

/** `workers` as configured, made a number: "auto" is the cores this process may use (its CPU affinity). */
export function resolveWorkers(w: number | "auto"): number {
  return w === "auto" ? Math.max(1, availableParallelism()) : w;
}

/** A stable code for failures of the workers themselves (a listen error keeps its own). */
export class WorkerError extends Error {
  constructor(
    readonly code: Extract<CodeFrom<"start">, "SY_WORKER_FAILED" | "SY_WORKER_START_TIMEOUT">,
    message: string,
  ) {
    super(message);
  }
}

/** One of the owner's pools, as the supervisor follows it (PoolRuntime is one). */
export interface OwnedPool {
  readonly name: string;
  readonly pool: Pool;
  readonly passive: PassiveSignals;
}

/** The owner's pools now (PoolSet is one): pools come and go with reloads. */
export interface OwnedPools {
  readonly all: readonly OwnedPool[];
  get(name: string): OwnedPool | undefined;
}

export interface SupervisorOptions {
  count: number;
  pools: OwnedPools;
  traffic: TrafficStats;
  /** The owner's per-route figures: the workers' are summed into them, for the running config's routes. */
  routes?: RouteTraffic;
  tcpStats?: TcpStats;
  logger: Logger;
  /** The owner's list of recent failures: each worker's new ones go into it with its reports. */
  failures?: RecentFailures;
  /** The running config (in force), sent to every worker that starts. */
  config: () => Config;
  /** The directory of the shared rate-limit budgets (BudgetFiles), sent to every worker that starts. */
  budgetDir?: string;
  /** The command that runs one worker; this binary's internal subcommand by default. */
  command?: string[];
  /** How long a worker may take to say it is serving. Default 15 s. */
  startTimeoutMs?: number;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** A worker that served this long before dying starts again after the shortest backoff. */
const HEALTHY_RUN_MS = 10_000;
const PULL_TIMEOUT_MS = 1000;

interface Slot {
  index: number;
  proc: Subprocess | undefined;
  state: WorkerFigures["state"];
  restarts: number;
  servingSince: number;
  applied: number;
  backoff: number;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  lastExit: string | null;
  /** Settles the start of this process: ready, failed or exited first. */
  started: ((error?: Error) => void) | undefined;
  exited: Promise<unknown> | undefined;
  /** A SIGUSR1 came while it was starting: passed on once it is serving (its files may predate the rotation). */
  reopenOwed: boolean;
}

export class WorkerSupervisor {
  private readonly slots: Slot[];
  private readonly summer: Summer;
  private version = 0;
  private lastTables = "";
  private tables: Tables | undefined;
  private publishQueued = false;
  private ports: Ports = {};
  /** Each owner pool followed for state changes, by object (a pool removed and added again is a new one). */
  private readonly following = new Map<Pool, () => void>();
  private stopping = false;
  private pullSeq = 0;
  private readonly pulls = new Map<number, { waiting: Set<number>; done: () => void }>();
  private configSeq = 0;
  /** Configs sent and not yet answered by every worker that was serving: see configure(). */
  private readonly configuring = new Map<number, { waiting: Set<number>; lines: string[] | undefined; errors: string[]; done: () => void }>();
  private syncWaiters: (() => void)[] = [];
  /** Told of each worker's `unlistened` while unlisten() waits. */
  private unlistenWaiter: ((index: number) => void) | undefined;
  /** Processes that have exited (their late messages are ignored). */
  private readonly gone = new WeakSet<Subprocess>();

  constructor(private readonly o: SupervisorOptions) {
    this.slots = Array.from({ length: o.count }, (_, index) => ({
      index, proc: undefined, state: "starting", restarts: 0, servingSince: 0, applied: 0, backoff: BACKOFF_MIN_MS,
      restartTimer: undefined, lastExit: null, started: undefined, exited: undefined, reopenOwed: false,
    }));
    const routes = o.routes;
    this.summer = new Summer({
      traffic: o.traffic, tcpStats: o.tcpStats,
      pools: () => o.pools.all.map((p) => [p.name, p.pool] as const),
      // The HTTP routes (SNI routes choose a TCP listener's pool and count no requests), as one process shows them.
      ...(routes !== undefined ? { routes: { names: () => o.config().routes.filter((r) => r.match?.sni === undefined).map((r) => r.name), of: (name: string) => routes.of(name) } } : {}),
    });
    this.follow();
  }

  /** Follow every pool the owner has now (flips, drains, ejections and their ends: told at the end of this turn), and no other. */
  private follow(): void {
    const now = new Set(this.o.pools.all.map((p) => p.pool));
    for (const [pool, off] of this.following) {
      if (now.has(pool)) continue;
      off();
      this.following.delete(pool);
    }
    for (const pool of now) if (!this.following.has(pool)) this.following.set(pool, pool.onStateChange(() => this.publish()));
  }

  private unfollow(): void {
    for (const off of this.following.values()) off();
    this.following.clear();
  }

  get count(): number {
    return this.slots.length;
  }

  /** Start every worker, each listener on its port in `ports` (claimed by the owner); rejects with the first worker's error. */
  async start(ports: Ports): Promise<void> {
    this.ports = ports;
    this.buildTables();
    try {
      await Promise.all(this.slots.map((s) => this.spawn(s)));
    } catch (e) {
      await this.stop(true, 0);
      throw e;
    }
  }

  /**
   * Tell every worker of the backends as they are now, if anything changed since the last
   * table. Coalesced: several changes in one turn make one table.
   */
  publish(): void {
    if (this.publishQueued || this.stopping) return;
    this.publishQueued = true;
    queueMicrotask(() => {
      this.publishQueued = false;
      if (!this.buildTables()) return;
      for (const s of this.slots) if (s.state === "serving" || s.state === "starting") this.send(s, { t: "tables", tables: this.tables! });
    });
  }

  /**
   * A new running config: proxy settings change in place in every worker (as in one process).
   * The tables go with it, so that a pool the config adds is in every worker before a route
   * sends to it; the pools it drops leave the workers with it. `ports`: every listener's port
   * (the owner claimed those of listeners added or moved); workers that start later get the
   * same. Resolves, with what changed in the listeners (one worker's lines, every worker's
   * errors), once every serving worker has applied it, or after `timeoutMs`.
   */
  configure(config: Config, ports: Ports, timeoutMs = 10_000): Promise<string[]> {
    if (this.stopping) return Promise.resolve([]);
    this.ports = ports;
    this.follow();
    this.buildTables();
    const id = ++this.configSeq;
    const serving = this.slots.filter((s) => s.state === "serving" && s.proc !== undefined);
    const result = new Promise<string[]>((resolve) => {
      const entry = { waiting: new Set(serving.map((s) => s.index)), lines: undefined as string[] | undefined, errors: [] as string[], done: () => {} };
      const timer = setTimeout(() => {
        entry.errors.push(...[...entry.waiting].map((i) => `worker ${i}: did not apply the config within ${timeoutMs}ms`));
        entry.done();
      }, timeoutMs);
      entry.done = () => {
        clearTimeout(timer);
        this.configuring.delete(id);
        resolve([...(entry.lines ?? []), ...entry.errors]);
      };
      this.configuring.set(id, entry);
      if (entry.waiting.size === 0) entry.done();
    });
    for (const s of this.slots) if (s.proc) this.send(s, { t: "config", id, config, tables: this.tables!, ports });
    return result;
  }

  /** Worker `index` has answered config `id` (or is gone). */
  private configured(index: number, id: number, lines: string[], error?: string): void {
    const c = this.configuring.get(id);
    if (!c || !c.waiting.delete(index)) return;
    c.lines ??= lines;
    if (error !== undefined) {
      this.o.logger.error(`worker ${index}: ${error}`);
      c.errors.push(`worker ${index}: ${error}`);
    }
    if (c.waiting.size === 0) c.done();
  }

  /** Backend `b` left pool `pool`: the figures of a later one of the same name start from zero. */
  forget(pool: string, b: Backend): void {
    this.summer.forget(pool, b.name);
  }

  /** Resolves when every serving worker has applied the latest table (or after `timeoutMs`). */
  synced(timeoutMs = 1000): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => this.slots.every((s) => s.state !== "serving" || s.applied >= this.version);
      if (check()) return resolve(true);
      const timer = setTimeout(() => {
        this.syncWaiters = this.syncWaiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.syncWaiters = this.syncWaiters.filter((w) => w !== waiter);
        resolve(true);
      };
      this.syncWaiters.push(waiter);
    });
  }

  /** Ask every serving worker for its figures now; resolves when all answered (at most 1 s). */
  pull(): Promise<void> {
    const serving = this.slots.filter((s) => s.state === "serving");
    if (serving.length === 0) return Promise.resolve();
    const id = ++this.pullSeq;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => finish(), PULL_TIMEOUT_MS);
      const finish = () => {
        clearTimeout(timer);
        this.pulls.delete(id);
        resolve();
      };
      this.pulls.set(id, { waiting: new Set(serving.map((s) => s.index)), done: finish });
      for (const s of serving) this.send(s, { t: "pull", id });
    });
  }

  figures(): WorkersFigures {
    return {
      count: this.slots.length,
      stateVersion: this.version,
      list: this.slots.map((s) => {
        const f = this.summer.figuresOf(s.index);
        return {
          index: s.index, pid: s.proc?.pid ?? null, state: s.state, restarts: s.restarts,
          since: s.servingSince ? new Date(s.servingSince).toISOString() : null, stateVersion: s.applied,
          requests: f?.requests ?? 0, inFlight: f?.inFlight ?? 0, lastExit: s.lastExit,
        };
      }),
    };
  }

  /**
   * A handover's first step (`switchyard upgrade`): every worker stops accepting, and only then
   * does any of them start to drain (stop), which tells its clients to reconnect. Were each to
   * close its listener as it began its own drain, a client told to reconnect by the first could
   * be queued in the listener of the second, and reset when that one closed. Resolves when all
   * have done so, or after `timeoutMs`.
   */
  unlisten(timeoutMs = 1000): Promise<void> {
    const serving = this.slots.filter((s) => s.state === "serving" && s.proc !== undefined);
    if (serving.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const waiting = new Set(serving.map((s) => s.index));
      const timer = setTimeout(() => finish(), timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.unlistenWaiter = undefined;
        resolve();
      };
      this.unlistenWaiter = (index) => {
        waiting.delete(index);
        if (waiting.size === 0) finish();
      };
      for (const s of serving) this.send(s, { t: "unlisten" });
    });
  }

  /**
   * Pass a signal on to every serving worker (SIGUSR1: reopen the access-log files). A worker
   * still starting may not handle the signal yet (its default action ends the process), and it
   * may have opened its files before logrotate moved them: it gets the signal once it is ready.
   * One waiting to be started again opens its files when it starts.
   */
  signal(sig: "SIGUSR1"): void {
    for (const s of this.slots) {
      if (s.proc === undefined || s.proc.exitCode !== null || s.proc.signalCode !== null) continue;
      if (s.state !== "serving") {
        s.reopenOwed = true;
        continue;
      }
      this.kill(s, sig);
    }
  }

  private kill(s: Slot, sig: "SIGUSR1"): void {
    try {
      s.proc?.kill(sig);
    } catch {
      // Gone since: its successor opens the files anew.
    }
  }

  /**
   * Stop every worker. Graceful: each stops accepting and finishes what it holds within
   * `graceMs`, then cuts the rest (handover: a successor serves the port; see stopProxy).
   * force: each cuts its connections at once. Resolves when
   * every worker process has exited; one that does not within `graceMs` + 2 s is killed.
   */
  async stop(force: boolean, graceMs: number, handover = false): Promise<void> {
    this.stopping = true;
    this.unfollow();
    for (const s of this.slots) {
      clearTimeout(s.restartTimer);
      s.restartTimer = undefined;
      if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) {
        s.state = "stopping";
        this.send(s, { t: "stop", force, graceMs, handover });
      } else if (s.state !== "stopping") {
        s.state = "stopped";
      }
    }
    const exits = this.slots.map((s) => s.exited ?? Promise.resolve());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), graceMs + 2000)));
    if ((await Promise.race([Promise.all(exits), late])) === "late") {
      for (const s of this.slots) if (s.proc && s.proc.exitCode === null) s.proc.kill("SIGKILL");
      await Promise.all(exits);
    }
    clearTimeout(timer);
    for (const p of this.pulls.values()) p.done();
    for (const c of [...this.configuring.values()]) c.done();
    for (const w of this.syncWaiters) w();
  }

  /** The tables of the pools as they are now; true when they differ from the last ones sent. */
  private buildTables(): boolean {
    const pools: Record<string, Table> = {};
    for (const p of this.o.pools.all) pools[p.name] = this.tableOf(p.pool);
    const key = JSON.stringify(pools);
    if (key === this.lastTables && this.tables) return false;
    this.lastTables = key;
    this.tables = { version: ++this.version, pools };
    return true;
  }

  /** One pool's table: its backends' config and state, in order, its strategy and panic threshold. */
  private tableOf(pool: Pool): Table {
    const { count } = this.o;
    const backends = pool.backends.map((b) => ({
      spec: {
        // The priority too: each worker's pool decides the tier itself (pool/tiers.ts), from
        // the states mirrored here.
        name: b.name, url: b.url.href, weight: b.weight, priority: b.priority,
        // Each worker counts only its own in-flight work: maxConnections is shared out among
        // them (rounded down, at least 1), so that together they stay within it.
        maxConnections: b.maxConnections === 0 ? 0 : Math.max(1, Math.floor(b.maxConnections / count)),
        slowStart: b.slowStartMs, latencyDecay: b.latencyDecayMs, ...(b.statsPath !== undefined ? { statsPath: b.statsPath } : {}),
        // https:// backends: the worker reads the CA file itself (tls/upstream.ts).
        ...(b.tlsConfig !== undefined ? { tls: b.tlsConfig } : {}),
        ...(b.upstream !== undefined ? { upstream: b.upstream } : {}),
      },
      state: b.mirrorState(),
    }));
    return { strategy: pool.policy.name, panicThreshold: pool.panicThreshold, backends };
  }

  private command(): string[] {
    if (this.o.command) return this.o.command;
    // A compiled binary runs its own entry point; from source, bun runs src/cli.ts.
    const compiled = import.meta.path.startsWith("/$bunfs/");
    return compiled ? [process.execPath, WORKER_COMMAND] : [process.execPath, join(import.meta.dir, "..", "cli.ts"), WORKER_COMMAND];
  }

  private send(s: Slot, m: ToWorker): void {
    try {
      s.proc?.send(m);
    } catch {
      // Exited meanwhile: its exit handler deals with it.
    }
  }

  /** Start one worker process; resolves once it serves, rejects if it fails first. */
  private spawn(s: Slot): Promise<void> {
    s.state = s.restarts > 0 ? "restarting" : "starting";
    s.applied = 0;
    const startedAt = performance.now();
    const proc = Bun.spawn(this.command(), {
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "advanced",
      // A message a process sent just before it exited is not news of the slot's next process.
      ipc: (m, from) => {
        if (s.proc === from && !this.gone.has(from)) this.onMessage(s, m as FromWorker);
      },
    });
    s.proc = proc;
    s.reopenOwed = false;
    const result = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => settle(new WorkerError("SY_WORKER_START_TIMEOUT", `worker ${s.index} did not start serving within ${this.o.startTimeoutMs ?? 15_000}ms`)),
        this.o.startTimeoutMs ?? 15_000,
      );
      const settle = (error?: Error) => {
        if (s.started !== settle) return;
        s.started = undefined;
        clearTimeout(timer);
        if (error) {
          proc.kill("SIGKILL");
          reject(error);
        } else resolve();
      };
      s.started = settle;
    });
    s.exited = proc.exited.then(() => this.onExit(s, proc, performance.now() - startedAt));
    this.send(s, { t: "start", index: s.index, count: this.slots.length, ports: this.ports, config: this.o.config(), tables: this.tables!, budgetDir: this.o.budgetDir });
    return result;
  }

  private onMessage(s: Slot, m: FromWorker): void {
    switch (m.t) {
      case "ready":
        s.state = "serving";
        s.servingSince = Date.now();
        if (s.restarts > 0) this.o.logger.info(`worker ${s.index} (pid ${m.pid}) serving again`);
        s.started?.();
        if (s.reopenOwed) {
          s.reopenOwed = false;
          this.kill(s, "SIGUSR1");
        }
        // The tables may have changed while it started: send the current ones.
        if (s.applied < this.version) this.send(s, { t: "tables", tables: this.tables! });
        return;
      case "failed":
        s.started?.(rebuildError(m.error));
        return;
      case "applied":
        s.applied = m.version;
        for (const w of [...this.syncWaiters]) w();
        return;
      case "report": {
        this.summer.update(s.index, m.report);
        if (m.report.failures !== undefined) this.o.failures?.absorb(m.report.failures);
        if (m.id !== undefined) {
          const p = this.pulls.get(m.id);
          if (p && p.waiting.delete(s.index) && p.waiting.size === 0) p.done();
        }
        return;
      }
      case "passive":
        for (const e of m.events) {
          // A pool or backend gone meanwhile (a reload): nothing left to tell.
          const owned = this.o.pools.get(e.p);
          const b = owned?.pool.get(e.b);
          if (!owned || !b) continue;
          if (e.k === "ok") owned.passive.succeeded(b, 200);
          else if (e.k === "connect") owned.passive.connectFailed(b, e.d);
          else owned.passive.failed(b, e.d);
        }
        return;
      case "log":
        this.o.logger[m.level](`worker ${s.index}: ${m.msg}`);
        return;
      case "unlistened":
        this.unlistenWaiter?.(s.index);
        return;
      case "configured":
        this.configured(s.index, m.id, m.lines, m.error);
        return;
      case "stopped":
        return;
    }
  }

  private onExit(s: Slot, proc: Subprocess, ranMs: number): void {
    this.gone.add(proc);
    if (s.proc !== proc) return;
    const how = proc.signalCode ? `signal ${proc.signalCode}` : `code ${proc.exitCode}`;
    s.lastExit = `${new Date().toISOString()} ${how}`;
    // What it held in flight is no longer in flight; what it counted stays counted.
    this.summer.retire(s.index);
    s.started?.(new WorkerError("SY_WORKER_FAILED", `worker ${s.index} exited (${how}) before it served`));
    for (const p of this.pulls.values()) if (p.waiting.delete(s.index) && p.waiting.size === 0) p.done();
    // A new process of this slot starts with the running config and ports.
    for (const c of [...this.configuring.values()]) if (c.waiting.delete(s.index) && c.waiting.size === 0) c.done();
    if (this.stopping) {
      s.state = "stopped";
      return;
    }
    const served = s.servingSince > 0 && Date.now() - s.servingSince >= HEALTHY_RUN_MS;
    s.backoff = served ? BACKOFF_MIN_MS : s.backoff;
    const wait = s.backoff;
    s.backoff = Math.min(BACKOFF_MAX_MS, s.backoff * 2);
    s.state = "restarting";
    s.servingSince = 0;
    s.restarts++;
    this.o.logger.warn(`worker ${s.index} (pid ${proc.pid}) exited with ${how} after ${Math.round(ranMs)}ms; starting it again in ${wait}ms`);
    s.restartTimer = setTimeout(() => {
      s.restartTimer = undefined;
      if (this.stopping) return;
      this.spawn(s).catch((e: Error) => this.o.logger.error(`worker ${s.index}: ${e.message}`));
    }, wait);
  }
}

/** A worker's start-up failure as the error the single-process balancer would have thrown. */
function rebuildError(e: Extract<FromWorker, { t: "failed" }>["error"]): Error {
  if (e.name === "ListenError" && e.listener && e.address) return new ListenError(e.listener as ListenerName, e.address, e.reason);
  if (e.name === "ConfigError" && e.problems) return new ConfigError(e.problems, "worker");
  return new WorkerError("SY_WORKER_FAILED", `a worker could not start: ${e.message}${e.code ? ` (${e.code})` : ""}`);
}
