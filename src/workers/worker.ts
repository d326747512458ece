/**
 * One worker process: serves every proxy listener of the config, each on the port the owner
 * claimed for it (shared with the other workers through SO_REUSEPORT), with the engine the
 * config names, and nothing else. It never probes, never decides health, drain or ejection: it
 * holds a copy of each of the owner's pools (WorkerPools), made to match every table the owner
 * sends (Backend.mirror), and what live traffic says about a backend goes to the owner as events
 * naming pool and backend (WorkerPassive), where passive health counts it once. Its figures
 * (totals, per pool and backend, per route) go to the owner on a short timer and on request.
 *
 * Signals: the owner orchestrates shutdown, so SIGINT/SIGTERM/SIGHUP/SIGUSR2 (a Ctrl-C reaches the whole
 * process group) are ignored here; SIGUSR1 reopens this worker's access-log files (the owner passes
 * its own on, and one reaching the whole group reopens them once more, harmlessly). If the owner goes away (the IPC channel closes) the worker
 * drains and exits on its own.
 */
import type { Config } from "../config/schema.ts";
import { LocalPool } from "../pool/pool.ts";
import { Backend, backendSpec, type BackendOptions } from "../pool/backend.ts";
import { createPolicy } from "../policy/policy.ts";
import type { PassiveSignals } from "../health/passive.ts";
import { TrafficStats } from "../stats/traffic.ts";
import { TcpStats } from "../tcp/stats.ts";
import type { AccessLog } from "../log/access.ts";
import { AccessLogs } from "../log/access-logs.ts";
import { Tracing } from "../tracing/tracer.ts";
import type { Logger } from "../log/logger.ts";
import { ListenerSet } from "../listener/listener-set.ts";
import { RouteTraffic, type PoolHandle, type PoolSource } from "../listener/routing.ts";
import { MirrorFactory } from "../listener/route-modifiers.ts";
import { GuardState } from "../guard/build.ts";
import { activity, reportOf, sameActivity } from "./reports.ts";
import type { FromWorker, PassiveEvent, Ports, Table, Tables, ToWorker } from "./protocol.ts";
import { RecentFailures } from "../stats/recent-failures.ts";
import { shareClientCounts } from "../net/shared-client-counts.ts";

/** How often figures go to the owner when they moved, ms. Also bounds how late a run of good answers is told. */
export const REPORT_MS = 100;

/**
 * Passive signals as events for the owner, each naming its pool and backend. A failure is sent
 * at the next turn of the event loop; good answers only matter as the end of a run of failures,
 * so a run of them is one "ok", sent before the next failure of that backend or with the next
 * report. One outbox per worker; `of(pool)` is what that pool's copy reports through.
 */
export class WorkerPassive {
  private events: PassiveEvent[] = [];
  /** Per pool, the backends with a run of good answers not yet told. */
  private readonly okSince = new Map<string, Set<string>>();
  private scheduled = false;

  constructor(private readonly send: (events: PassiveEvent[]) => void) {}

  /** The signals of pool `pool`'s copy. */
  of(pool: string): PassiveSignals {
    let ok = this.okSince.get(pool);
    if (ok === undefined) this.okSince.set(pool, (ok = new Set()));
    const okSince = ok;
    return {
      connectFailed: (backend: Backend, detail: string) => this.push(okSince, { p: pool, b: backend.name, k: "connect", d: detail }),
      // As PassiveHealth.succeeded: a 5xx answer is a failure.
      succeeded: (backend: Backend, status: number) => {
        if (status >= 500) this.push(okSince, { p: pool, b: backend.name, k: "fail", d: `status ${status}` });
        else okSince.add(backend.name);
      },
      failed: (backend: Backend, detail: string) => this.push(okSince, { p: pool, b: backend.name, k: "fail", d: detail }),
    };
  }

  private push(okSince: Set<string>, e: PassiveEvent): void {
    if (okSince.delete(e.b)) this.events.push({ p: e.p, b: e.b, k: "ok" });
    this.events.push(e);
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  }

  /** Send what is queued, runs of good answers included. */
  flush(): void {
    this.scheduled = false;
    for (const [p, okSince] of this.okSince) {
      for (const b of okSince) this.events.push({ p, b, k: "ok" });
      okSince.clear();
    }
    if (this.events.length === 0) return;
    const events = this.events;
    this.events = [];
    this.send(events);
  }
}

/** The backends a worker's pool holds, made to match a table from the owner. */
export function applyTable(pool: LocalPool, table: Table, onRemove: (b: Backend) => void): void {
  if (pool.policy.name !== table.strategy) pool.setPolicy(createPolicy(table.strategy));
  pool.setPanicThreshold(table.panicThreshold);
  const names = new Set(table.backends.map((e) => e.spec.name));
  for (const b of [...pool.backends]) {
    const entry = table.backends.find((e) => e.spec.name === b.name);
    // Gone, or a new address under the same name: a different backend.
    if (!names.has(b.name) || (entry && new URL(entry.spec.url).href !== b.url.href)) {
      pool.remove(b.name);
      onRemove(b);
    }
  }
  for (const e of table.backends) {
    const spec = backendSpec(e.spec as BackendOptions);
    const b = pool.get(e.spec.name) ?? pool.add(new Backend(spec));
    b.configure(spec);
    b.mirror(e.state);
  }
  pool.order(table.backends.map((e) => e.spec.name));
}

/** One pool's copy in a worker: its backends, and where what traffic says of them goes. */
interface PoolCopy {
  readonly pool: LocalPool;
  readonly passive: PassiveSignals;
}

/**
 * A worker's copies of the owner's pools, by name, each made to match its table. It is the
 * PoolSource this worker's listeners resolve pool names through. A pool the tables drop leaves
 * the map (requests in flight finish on the objects they hold, and its idle upstream
 * connections close); routers built for an older config keep the copy they were given.
 */
export class WorkerPools implements PoolSource {
  private readonly copies = new Map<string, PoolCopy>();

  constructor(private readonly passive: WorkerPassive) {}

  /** Never refused: a name the tables do not hold yet (a config that came first) gets an empty copy, which the next tables fill or drop. */
  handle(name: string): PoolHandle {
    return this.copy(name);
  }

  *entries(): Generator<[string, LocalPool]> {
    for (const [name, c] of this.copies) yield [name, c.pool];
  }

  get(name: string): LocalPool | undefined {
    return this.copies.get(name)?.pool;
  }

  /** Make every copy match `tables`: new pools added, known ones updated, the rest dropped. */
  apply(tables: Tables, onRemove: (b: Backend) => void): void {
    for (const [name, table] of Object.entries(tables.pools)) applyTable(this.copy(name).pool, table, onRemove);
    for (const [name, c] of this.copies) {
      if (name in tables.pools) continue;
      this.copies.delete(name);
      for (const b of c.pool.backends) onRemove(b);
    }
  }

  private copy(name: string): PoolCopy {
    let c = this.copies.get(name);
    if (c === undefined) this.copies.set(name, (c = { pool: new LocalPool(createPolicy("round-robin")), passive: this.passive.of(name) }));
    return c;
  }
}

/** Run as a worker until told to stop (or the owner goes away). Returns the exit code. */
export function runWorker(): Promise<number> {
  const send = (m: FromWorker) => {
    try {
      process.send?.(m);
    } catch {
      // The owner has gone: the disconnect handler stops this worker.
    }
  };
  if (typeof process.send !== "function") {
    console.error("switchyard: this command is internal: the balancer starts it for `workers`");
    return Promise.resolve(2);
  }
  // SIGUSR2 (upgrade, `systemctl kill -s USR2` without --kill-whom=main) would end a worker by default.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR2"] as const) process.on(sig, () => {});

  const logger: Logger = {
    info: (msg) => send({ t: "log", level: "info", msg }),
    warn: (msg) => send({ t: "log", level: "warn", msg }),
    error: (msg) => send({ t: "log", level: "error", msg }),
  };
  const traffic = new TrafficStats();
  const passive = new WorkerPassive((events) => send({ t: "passive", events }));
  const pools = new WorkerPools(passive);
  /** TCP listeners' totals, all of them together (a reload may add the first). */
  const tcpStats = new TcpStats();
  let running: Config | undefined;
  let listeners: ListenerSet | undefined;
  const accessLogs = new AccessLogs({ onDrop: (n) => traffic.countAccessLogDrop(n), onError: (msg) => logger.warn(msg), sharedStdout: true });
  // SIGUSR1 (the owner passes on its own, for logrotate): this worker appends to the access-log
  // files itself, so it opens them anew itself.
  process.on("SIGUSR1", () => void accessLogs.reopen());
  /** Every worker exports its own spans (the owner forwards no request). */
  const tracing = new Tracing(traffic.tracing);
  let reportTimer: ReturnType<typeof setInterval> | undefined;
  let lastActivity: number[] = [];
  const routes = new RouteTraffic();
  const mirrors = new MirrorFactory();
  const guards = new GuardState();
  /** This worker's failed requests; each report carries those new since the last (failuresSent). */
  const failures = new RecentFailures();
  let failuresSent = 0;
  /** Every listener binds the port the owner claimed for it (SO_REUSEPORT), by its key (listener.ts portKey). */
  let ports: Ports = {};
  /** The listeners' last apply, settled: the next waits for it. */
  let applying: Promise<unknown> = Promise.resolve();
  /** Set when this worker starts to stop (see buildProxy). */
  const lifecycle = { draining: false };

  const accessLogFor = (c: Config): AccessLog | undefined => accessLogs.for(c);
  const report = (id?: number) => {
    passive.flush();
    const r = reportOf(traffic, pools.entries(), routes.entries(), tcpStats);
    if (failures.seq !== failuresSent) {
      r.failures = failures.since(failuresSent);
      failuresSent = failures.seq;
    }
    send({ t: "report", report: r, ...(id !== undefined ? { id } : {}) });
  };

  return new Promise<number>((resolve) => {
    let stopping: Promise<void> | undefined;
    /** As one process stops (stopProxy): graceful within graceMs, then cut; force cuts now, even mid-drain. */
    const stop = (force: boolean, graceMs: number, handover = false): Promise<void> => {
      // Every fetch-engine answer from now on carries Connection: close (the socket engine does so in its drain).
      lifecycle.draining = true;
      if (force) return listeners?.stop(false, 0, false) ?? Promise.resolve();
      stopping ??= listeners?.stop(true, graceMs, handover) ?? Promise.resolve();
      return stopping;
    };
    const finish = async (force: boolean, graceMs: number, handover = false) => {
      await stop(force, graceMs, handover);
      clearInterval(reportTimer);
      await accessLogs.close();
      await tracing.stop();
      await guards.stop();
      report();
      send({ t: "stopped" });
      resolve(0);
    };

    process.on("disconnect", () => {
      // The owner is gone: nobody will tell us of backends any more. Finish what is in flight.
      void finish(false, running?.timeouts.shutdownGrace ?? 0);
    });

    process.on("message", (raw: unknown) => {
      const m = raw as ToWorker;
      switch (m.t) {
        case "start": {
          running = m.config;
          // Rate limits spend the budgets every worker shares, not this process's own.
          if (m.budgetDir !== undefined) guards.rateLimits.local.sharedIn(m.budgetDir);
          // So do the per-client bounds (limits.maxConnectionsPerClient, maxInFlightPerClient): one count over all workers.
          if (m.budgetDir !== undefined) shareClientCounts({ dir: m.budgetDir, index: m.index, count: m.count });
          pools.apply(m.tables, () => {});
          send({ t: "applied", version: m.tables.version });
          ports = m.ports;
          listeners = new ListenerSet({
            pools, traffic, routes, mirrors, guards, failures, tcpTotals: () => tcpStats, logger,
            accessLog: accessLogFor, lifecycle, tracer: (c) => tracing.tracerFor(c),
            // The owner claimed every listener's port (and sends the new ones with a config).
            portFor: (key, _host, port) => ports[key] ?? port,
          });
          const started = listeners.apply(m.config);
          applying = started.catch(() => {});
          started.then(ready, (e: unknown) => failed(e));
          return;
        }
        case "tables":
          pools.apply(m.tables, (b) => listeners?.closeIdle(b));
          send({ t: "applied", version: m.tables.version });
          return;
        case "config": {
          const prev = running;
          running = m.config;
          // The pools first, so that every pool the new routes name is held.
          pools.apply(m.tables, (b) => listeners?.closeIdle(b));
          send({ t: "applied", version: m.tables.version });
          routes.keep(m.config.routes.map((r) => r.name));
          mirrors.keep(m.config.routes.map((r) => r.name));
          guards.keep(m.config.routes.map((r) => r.name));
          // Changed in place, as in one process: new routers for new requests, TCP's settings
          // for new connections, listeners added or moved (bound anew, on the port the owner
          // claimed, before the old one closes) or removed (what they hold finishes). After the
          // apply before it (the start's included): two must never bind at once.
          const set = listeners;
          const applied = set === undefined ? Promise.resolve([]) : applying.then(() => {
            ports = m.ports;
            return set.apply(m.config, prev);
          });
          applying = applied.catch(() => {});
          applied.then(
            (lines) => {
              guards.committed();
              send({ t: "configured", id: m.id, lines });
            },
            (e: unknown) => send({ t: "configured", id: m.id, lines: [], error: (e as Error).message }),
          );
          return;
        }
        case "pull":
          report(m.id);
          return;
        case "unlisten":
          // The fetch engine cannot stop accepting apart from its connections (Bun.serve): it
          // stops as it always does, with `stop`. TCP mode's stop closes its listener first anyway.
          listeners?.closeListeners();
          send({ t: "unlistened" });
          return;
        case "stop":
          void finish(m.force, m.graceMs, m.handover);
          return;
      }
    });

    function ready(): void {
      reportTimer = setInterval(() => {
        const now = activity(traffic, pools.entries(), tcpStats);
        passive.flush();
        if (sameActivity(now, lastActivity)) return;
        lastActivity = now;
        report();
      }, REPORT_MS);
      send({ t: "ready", pid: process.pid });
    }

    function failed(e: unknown): void {
      const err = e as { name?: string; code?: string; message?: string; problems?: string[]; listener?: string; address?: string; reason?: string };
      send({
        t: "failed",
        error: {
          name: err.constructor?.name ?? "Error", code: err.code, message: err.message ?? String(e), problems: err.problems,
          listener: err.listener, address: err.address, reason: err.reason,
        },
      });
      // No exit here: it could cut the message off. The owner ends this process once it has read it.
    }
  });
}
