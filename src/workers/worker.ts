/**
 * One worker process: serves the proxy port (shared with the other workers through
 * SO_REUSEPORT) with the engine the config names, and nothing else. It never probes, never
 * decides health, drain or ejection: its pool is a copy of the owner's, replaced by every table
 * the owner sends (Backend.mirror), and what live traffic says about a backend goes to the owner
 * as events (WorkerPassive), where passive health counts it once. Its figures go to the owner
 * on a short timer and on request.
 *
 * Signals: the owner orchestrates shutdown, so SIGINT/SIGTERM/SIGHUP/SIGUSR2 (a Ctrl-C reaches the whole
 * process group) are ignored here. If the owner goes away (the IPC channel closes) the worker
 * drains and exits on its own.
 */
import type { Config } from "../config/schema.ts";
import { LocalPool } from "../pool/pool.ts";
import { Backend, backendSpec, type BackendOptions } from "../pool/backend.ts";
import { createPolicy } from "../policy/policy.ts";
import type { PassiveSignals } from "../health/passive.ts";
import { TrafficStats } from "../stats/traffic.ts";
import { TcpStats } from "../tcp/stats.ts";
import { createAccessLog, type AccessLog } from "../log/access.ts";
import type { Logger } from "../log/logger.ts";
import { ListenerSet } from "../listener/listener-set.ts";
import { RouteTraffic, type PoolSource } from "../listener/routing.ts";
import { MirrorFactory } from "../listener/route-modifiers.ts";
import { activity, reportOf, sameActivity } from "./reports.ts";
import type { FromWorker, PassiveEvent, Table, ToWorker } from "./protocol.ts";

/** How often figures go to the owner when they moved, ms. Also bounds how late a run of good answers is told. */
export const REPORT_MS = 100;

/**
 * Passive signals as events for the owner. A failure is sent at the next turn of the event
 * loop; good answers only matter as the end of a run of failures, so a run of them is one "ok",
 * sent before the next failure of that backend or with the next report.
 */
export class WorkerPassive implements PassiveSignals {
  private events: PassiveEvent[] = [];
  private readonly okSince = new Set<string>();
  private scheduled = false;

  constructor(private readonly send: (events: PassiveEvent[]) => void) {}

  connectFailed(backend: Backend, detail: string): void {
    this.push({ b: backend.name, k: "connect", d: detail });
  }

  succeeded(backend: Backend, status: number): void {
    // As PassiveHealth.succeeded: a 5xx answer is a failure.
    if (status >= 500) this.push({ b: backend.name, k: "fail", d: `status ${status}` });
    else this.okSince.add(backend.name);
  }

  failed(backend: Backend, detail: string): void {
    this.push({ b: backend.name, k: "fail", d: detail });
  }

  private push(e: PassiveEvent): void {
    if (this.okSince.delete(e.b)) this.events.push({ b: e.b, k: "ok" });
    this.events.push(e);
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  }

  /** Send what is queued, runs of good answers included. */
  flush(): void {
    this.scheduled = false;
    for (const b of this.okSince) this.events.push({ b, k: "ok" });
    this.okSince.clear();
    if (this.events.length === 0) return;
    const events = this.events;
    this.events = [];
    this.send(events);
  }
}

/** The backends a worker's pool holds, made to match a table from the owner. */
export function applyTable(pool: LocalPool, table: Table, onRemove: (b: Backend) => void): void {
  if (pool.policy.name !== table.strategy) pool.setPolicy(createPolicy(table.strategy));
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
  const pool = new LocalPool(createPolicy("round-robin"));
  const traffic = new TrafficStats();
  const passive = new WorkerPassive((events) => send({ t: "passive", events }));
  let tcpStats: TcpStats | undefined;
  let running: Config | undefined;
  let listeners: ListenerSet | undefined;
  const accessLogs = new Map<string, AccessLog>();
  let reportTimer: ReturnType<typeof setInterval> | undefined;
  let lastActivity: number[] = [];
  const routes = new RouteTraffic();
  const pools: PoolSource = { handle: () => ({ pool, passive }) };
  /** Every listener binds the port the supervisor claimed (SO_REUSEPORT). */
  let port = 0;
  /** Set when this worker starts to stop (see buildProxy). */
  const lifecycle = { draining: false };

  const accessLogFor = (c: Config): AccessLog | undefined => {
    if (!c.log.access) return undefined;
    let log = accessLogs.get(c.log.format);
    if (!log) accessLogs.set(c.log.format, (log = createAccessLog(c.log.format)));
    return log;
  };
  const report = (id?: number) => {
    passive.flush();
    send({ t: "report", report: reportOf(traffic, pool.backends, tcpStats, pool.panic.picks, pool.retryBudget), ...(id !== undefined ? { id } : {}) });
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
      for (const log of accessLogs.values()) await log.close();
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
          pool.setPanicThreshold(Object.values(m.config.pools)[0]!.panicThreshold);
          applyTable(pool, m.table, () => {});
          send({ t: "applied", version: m.table.version });
          port = m.port;
          listeners = new ListenerSet({
            pools, traffic, routes, mirrors: new MirrorFactory(() => running?.retry.timeout ?? 15_000), tcpTotals: () => (tcpStats ??= new TcpStats()), logger,
            accessLog: accessLogFor, lifecycle, portFor: () => port,
          });
          listeners.apply(m.config).then(ready, (e: unknown) => failed(e));
          return;
        }
        case "table":
          applyTable(pool, m.table, (b) => listeners?.closeIdle(b));
          send({ t: "applied", version: m.table.version });
          return;
        case "config": {
          const prev = running;
          running = m.config;
          pool.setPanicThreshold(Object.values(m.config.pools)[0]!.panicThreshold);
          // Changed in place, as in one process: new routers for new requests, TCP's settings
          // for new connections.
          void listeners?.apply(m.config, prev).catch((e: unknown) => logger.error(`worker: ${(e as Error).message}`));
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
        const now = activity(traffic, pool.backends, tcpStats);
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
