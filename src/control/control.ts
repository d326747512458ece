/**
 * Changing the running balancer: reload from file, and the operations of the admin API (drain,
 * enable, weight, add, remove, force health). Every change to the set of backends or their
 * config goes through the reconciler; drain and forced health are runtime state and go through
 * the backend's own methods. Each change is recorded once in the ChangeLog (log line, /events,
 * dashboard) with who asked and from where, and bumps the config version when it changed the
 * running config.
 *
 * Changes are serialized: one runs at a time, in arrival order. The waits of drain and remove
 * (for in-flight work to finish) happen outside that queue, so a long drain holds up nothing.
 * Their timers are owned here and ended by stop().
 */
import type { BackendConfig, Config } from "../config/schema.ts";
import { ConfigError, validateConfig } from "../config/load.ts";
import type { Backend } from "../pool/backend.ts";
import type { PoolRuntime, PoolSet } from "../pool/pool-set.ts";
import { formatDuration } from "../config/units.ts";
import type { ChangeLog } from "./changes.ts";
import type { CodeFrom } from "../errors.ts";
import { AcmeRequestError, type RenewReport, type RevocationReason } from "../acme/manager.ts";

/** Who asked for a change, for the record. */
export interface Actor {
  /** A token's name, "SIGHUP", "file watch"... */
  by: string;
  /** The client's address, or where a local trigger came from. */
  from: string;
}

/** The codes of refused changes (src/errors.ts), and a reload's invalid config. */
export type ControlErrorCode = CodeFrom<"control"> | "SY_CONFIG_INVALID";

/** A refused operation, with a stable code; the admin API maps it to an HTTP status. */
export class ControlError extends Error {
  constructor(
    readonly code: ControlErrorCode,
    message: string,
    readonly problems: string[] = [],
  ) {
    super(message);
  }
}

/** What applying a config did: one line per change, and the settings that wait for a restart. */
export interface ApplyReport {
  lines: string[];
  restartNeeded: string[];
}

export interface ConfigStatus {
  /** 1 at start; +1 for every change to the running config (a reload or an API change). */
  version: number;
  /** When the running config was last changed, ISO 8601. */
  loadedAt: string;
  /** What made the running config: the file at start, a reload of it, or the API. */
  source: "start" | "reload" | "api";
  /** The config file, when started with one. */
  file: string | null;
  /** The last reload from file, whether it worked or was refused. */
  lastReload: { at: string; ok: boolean; by: string; error: string | null; problems: string[] } | null;
  /** Settings changed in the file that take effect only after a restart (listen address, mode...). */
  restartNeeded: string[];
}

export interface ControlTargets {
  /** The balancer's pools: a backend is named "pool/backend", or by its name alone where that is one backend of all. */
  pools: PoolSet;
  changes: ChangeLog;
  /** The running config. */
  config(): Config;
  /** Apply a validated config to the running balancer. */
  apply(next: Config): Promise<ApplyReport>;
  /** Read and validate the config file again (command-line flags applied); absent without a file. */
  load?: () => Promise<Config>;
  /** Certificates from ACME (acme/manager.ts): renewed, and revoked, on an operator's request. */
  acme?: { renew(name: string, revoke?: RevocationReason): Promise<RenewReport> };
  file?: string;
}

export interface BackendReport {
  name: string;
  /** The pool it is in. */
  pool: string;
  /** How to name it to ctl and the API: its name alone with one pool, else "pool/backend". */
  id: string;
  url: string;
  state: string;
  /** Why it is in that state (the last change's reason). */
  reason: string;
  /** Health as checks and passive detection see it, whatever is forced. */
  healthy: boolean;
  enabled: boolean;
  forced: "up" | "down" | null;
  weight: number;
  /** Failover tier (an SRV record's priority): lower is preferred. */
  priority: number;
  maxConnections: number;
  inFlight: number;
  /** Tries sent to it (connections in TCP mode), all time. */
  requests: number;
}

export interface DrainReport extends BackendReport {
  /** In-flight work reached 0 within the wait. */
  drained: boolean;
  waitedMs: number;
}

export interface RemoveReport {
  name: string;
  /** In flight when it left the pool: these finish on their own (0 unless the deadline passed). */
  inFlightAtRemoval: number;
  waitedMs: number;
  deadlineReached: boolean;
}

export interface ReloadReport {
  version: number;
  changed: boolean;
  lines: string[];
  restartNeeded: string[];
}

/** Longest an API caller may ask to wait for a drain or a removal. */
export const MAX_WAIT_MS = 10 * 60_000;
export const DEFAULT_REMOVE_DEADLINE_MS = 30_000;

export class Control {
  private queue: Promise<unknown> = Promise.resolve();
  private version = 1;
  private loadedAt = new Date();
  private source: ConfigStatus["source"] = "start";
  private lastReload: ConfigStatus["lastReload"] = null;
  private restartNeeded: string[] = [];
  /** Waits in progress (drain, remove): ended by stop(). */
  private readonly waits = new Set<() => void>();
  private stopped = false;

  constructor(private readonly t: ControlTargets) {}

  status(): ConfigStatus {
    return {
      version: this.version,
      loadedAt: this.loadedAt.toISOString(),
      source: this.source,
      file: this.t.file ?? null,
      lastReload: this.lastReload,
      restartNeeded: [...this.restartNeeded],
    };
  }

  backends(): BackendReport[] {
    return this.t.pools.all.flatMap((p) => p.pool.backends.map((b) => report(b, p.name, this.t.pools.size)));
  }

  backend(name: string): BackendReport {
    return this.reportOf(name);
  }

  private reportOf(name: string): BackendReport {
    const { runtime, backend } = this.locate(name);
    return report(backend, runtime.name, this.t.pools.size);
  }

  /**
   * Read the config file again and apply it. An invalid file is refused: the running config
   * stays, and the problems are recorded (log, /stats, dashboard) and thrown.
   */
  reload(actor: Actor): Promise<ReloadReport> {
    return this.serial(async () => {
      const at = new Date().toISOString();
      const what = `reload from ${this.t.file ?? "file"}`;
      if (!this.t.load) {
        throw new ControlError("SY_NO_CONFIG_FILE", "started without --config: there is no file to reload (restart with --config FILE)");
      }
      const refuse = (e: unknown, reading: boolean): never => {
        const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
        const error = e instanceof ConfigError ? e.message : `cannot read the config: ${(e as Error).message}`;
        this.lastReload = { at, ok: false, by: actor.by, error, problems };
        this.t.changes.record({ what, ...actor, ok: false, detail: ["kept the running config", ...problems] });
        if (!reading && !(e instanceof ConfigError)) throw e;
        throw new ControlError("SY_CONFIG_INVALID", error, problems);
      };
      let next: Config;
      try {
        next = await this.t.load();
      } catch (e) {
        return refuse(e, true);
      }
      let applied: ApplyReport;
      try {
        // Throws a ConfigError before changing anything when a token file cannot be read.
        applied = await this.t.apply(next);
      } catch (e) {
        return refuse(e, false);
      }
      this.restartNeeded = applied.restartNeeded;
      this.lastReload = { at, ok: true, by: actor.by, error: null, problems: [] };
      const changed = applied.lines.length > 0;
      if (changed) this.bump("reload");
      const detail = [...applied.lines, ...applied.restartNeeded.map((r) => `needs a restart: ${r}`)];
      this.t.changes.record({ what, ...actor, ok: true, detail: detail.length ? detail : ["no change"] });
      return { version: this.version, changed, lines: applied.lines, restartNeeded: applied.restartNeeded };
    });
  }

  /**
   * Renew the certificate of ACME name `name` now, and with `revoke`, revoke the one it replaced
   * (acme/manager.ts renew). Not queued behind other changes: an order may take a minute, and it
   * touches no config; the manager refuses a second one for a name already ordering.
   */
  async renewCertificate(name: string, revoke: RevocationReason | undefined, actor: Actor): Promise<RenewReport> {
    const what = `${revoke !== undefined ? "revoke and replace" : "renew"} certificate ${name}`;
    if (this.t.acme === undefined) throw new ControlError("SY_UNKNOWN_CERTIFICATE", "no certificate of this balancer comes from ACME");
    try {
      const r = await this.t.acme.renew(name, revoke);
      const detail = [`serial ${r.serial}, valid to ${r.notAfter}`, ...(r.replaced ? [`replaced serial ${r.replaced.serial}${r.replaced.revoked ? `, revoked (${r.replaced.revoked})` : ""}`] : [])];
      this.t.changes.record({ what, ...actor, ok: true, detail });
      return r;
    } catch (e) {
      if (!(e instanceof AcmeRequestError)) throw e;
      this.t.changes.record({ what, ...actor, ok: false, detail: [e.message] });
      throw new ControlError(e.code, e.message);
    }
  }

  /** No new requests; resolves after `waitMs` at most, saying whether in-flight work reached 0. */
  async drain(name: string, actor: Actor, waitMs = 0): Promise<DrainReport> {
    const b = await this.serial(async () => {
      const b = this.find(name);
      const wasEnabled = b.isEnabled;
      b.setEnabled(false, `drained by ${actor.by}`);
      this.t.changes.record({ what: `drain ${name}`, ...actor, ok: true, detail: [wasEnabled ? `${b.inFlight} in flight` : "already draining"] });
      // One report per drain: a second drain of a draining backend adds none.
      if (wasEnabled && b.inFlight > 0) this.reportWhenIdle(b, actor);
      return b;
    });
    const started = performance.now();
    const drained = await this.waitIdle(b, waitMs);
    return { ...this.reportOf(name), drained, waitedMs: Math.round(performance.now() - started) };
  }

  enable(name: string, actor: Actor): Promise<BackendReport> {
    return this.serial(async () => {
      const b = this.find(name);
      const was = b.isEnabled;
      b.setEnabled(true, `enabled by ${actor.by}`);
      this.t.changes.record({ what: `enable ${name}`, ...actor, ok: true, detail: [was ? "already enabled" : "takes new requests"] });
      return report(b, this.locate(name).runtime.name, this.t.pools.size);
    });
  }

  /** Hold a backend down or up for maintenance, apart from what health checks say; "auto" hands it back to them. */
  force(name: string, health: "up" | "down" | "auto", actor: Actor): Promise<BackendReport> {
    return this.serial(async () => {
      const b = this.find(name);
      b.force(health === "auto" ? undefined : health, health === "auto" ? `health checks decide again (${actor.by})` : `forced ${health} by ${actor.by}`);
      this.t.changes.record({ what: `force ${name} ${health}`, ...actor, ok: true, detail: [`state ${b.state()}`] });
      return report(b, this.locate(name).runtime.name, this.t.pools.size);
    });
  }

  setWeight(name: string, weight: unknown, actor: Actor): Promise<BackendReport> {
    const discovered = this.discoveredError(name);
    if (discovered) return Promise.reject(discovered);
    let located: Located;
    try {
      located = this.locate(name);
    } catch (e) {
      return Promise.reject(e);
    }
    const local = located.backend.name;
    return this.changeBackends(located.runtime, `weight ${name} ${String(weight)}`, local, actor, (list) => {
      const i = list.findIndex((d) => d.name === local);
      if (i === -1) throw this.unknown(name);
      return list.map((d, j) => (j === i ? { ...d, weight: weight as number } : d));
    }).then(() => this.reportOf(name));
  }

  /** Add a backend: `entry` is a backends[] entry of the config (name required), validated as one. */
  add(entry: unknown, actor: Actor): Promise<BackendReport> {
    const given = typeof entry === "object" && entry !== null ? (entry as { name?: unknown; pool?: unknown }) : {};
    const name = given.name;
    if (typeof name !== "string" || name === "") {
      return Promise.reject(new ControlError("SY_INVALID_REQUEST", 'name: missing; a backend added at run time needs a name, e.g. {"name": "backend-4", "url": "http://10.0.0.4:8080"}'));
    }
    // Which pool: `pool` in the entry, else the only one there is.
    if (given.pool !== undefined && typeof given.pool !== "string") {
      return Promise.reject(new ControlError("SY_INVALID_REQUEST", `pool: got ${JSON.stringify(given.pool)}, expected the name of a pool`));
    }
    const pools = this.t.pools.all;
    const poolName = typeof given.pool === "string" ? given.pool : pools.length === 1 ? pools[0]!.name : undefined;
    const runtime = poolName !== undefined ? this.t.pools.get(poolName) : undefined;
    if (runtime === undefined) {
      return Promise.reject(new ControlError("SY_INVALID_REQUEST", `pool: ${poolName === undefined ? "missing" : `got "${poolName}"`}; expected the name of a pool (${pools.map((p) => p.name).join(", ")})`));
    }
    const { pool: _pool, ...backend } = given as Record<string, unknown>;
    return this.changeBackends(runtime, `add ${name}`, name, actor, (list) => {
      if (list.some((d) => d.name === name)) throw new ControlError("SY_BACKEND_EXISTS", `a backend named "${name}" already exists`);
      return [...list, backend as BackendConfig];
    }).then(() => this.reportOf(`${runtime.name}/${name}`));
  }

  /**
   * Drain a backend, wait until nothing is in flight or `deadlineMs` has passed, then take it
   * out of the pool. Requests still in flight at the deadline finish on their own.
   */
  async remove(name: string, actor: Actor, deadlineMs = DEFAULT_REMOVE_DEADLINE_MS): Promise<RemoveReport> {
    const { b, runtime } = await this.serial(async () => {
      const { backend: b, runtime } = this.locate(name);
      const discovered = this.discoveredError(name);
      if (discovered) throw discovered;
      if (runtime.reconciler.desired.length <= 1) throw new ControlError("SY_LAST_BACKEND", `${name} is the last backend${runtime.label ? ` of pool ${runtime.name}` : ""}: add another before removing it`);
      b.setEnabled(false, `draining for removal by ${actor.by}`);
      return { b, runtime };
    });
    const started = performance.now();
    const drained = await this.waitIdle(b, deadlineMs);
    const waitedMs = Math.round(performance.now() - started);
    const inFlight = b.inFlight;
    await this.changeBackends(runtime, `remove ${name}`, b.name, actor, (list) => {
      if (!list.some((d) => d.name === b.name)) throw this.unknown(name);
      return list.filter((d) => d.name !== b.name);
    }, [drained ? `drained in ${formatDuration(waitedMs)}` : `deadline of ${formatDuration(deadlineMs)} reached with ${inFlight} in flight; they finish on their own`]);
    return { name, inFlightAtRemoval: inFlight, waitedMs, deadlineReached: !drained };
  }

  /** End every wait in progress (their callers get their reports at once). Nothing else runs on its own. */
  stop(): void {
    this.stopped = true;
    for (const end of [...this.waits]) end();
  }

  /** Validate the new list as the config's backends, reconcile, record, bump the version. */
  private changeBackends(runtime: PoolRuntime, what: string, subject: string, actor: Actor, edit: (list: readonly BackendConfig[]) => BackendConfig[], extra: string[] = []): Promise<void> {
    return this.serial(async () => {
      const config = this.t.config();
      const pc = config.pools[runtime.name]!;
      // The config's entries, not the pool's: a DNS entry stays one entry (its discovered
      // backends are drained or forced one by one, but configured through the entry).
      const edited = edit(pc.backends);
      let desired: BackendConfig[];
      try {
        // The same schema and checks as the file: a bad weight or URL reads as in a config error.
        // With the pool's protocol, so that an http:// backend is refused in an h2 pool.
        desired = validateConfig({ mode: pc.mode, protocol: pc.protocol, backends: edited }, "request").pools.default!.backends;
        // The pool's tls is the default of its https:// backends, as at load (config/expand.ts).
        if (pc.tls !== undefined) desired = desired.map((b) => (b.tls === undefined && /^https:\/\//i.test(b.url ?? "") ? { ...b, tls: pc.tls } : b));
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // Problems of the entry this request wrote read as fields of the request: "weight: got 0...".
        const problems = e.problems.map((p) => p.replace(/^backends\[(\d+)\]\./, (all, n) => (edited[Number(n)]?.name === subject ? "" : all)));
        this.t.changes.record({ what, ...actor, ok: false, detail: problems });
        throw new ControlError("SY_INVALID_REQUEST", problems.join("; "), problems);
      }
      // The running config with a new list of backends, applied as a reload applies a file.
      const applied = await this.t.apply({ ...config, pools: { ...config.pools, [runtime.name]: { ...pc, backends: desired } } });
      this.bump("api");
      this.t.changes.record({ what, ...actor, ok: true, detail: [...applied.lines, ...extra] });
    });
  }

  private bump(source: ConfigStatus["source"]): void {
    this.version++;
    this.loadedAt = new Date();
    this.source = source;
  }

  private reportWhenIdle(b: Backend, actor: Actor): void {
    void b.whenIdle().then(() => {
      // Re-enabled or removed meanwhile: nothing to report.
      if (this.stopped || b.isEnabled || this.t.pools.poolOf(b) === undefined) return;
      this.t.changes.record({ what: `drain ${b.name} complete`, ...actor, ok: true, detail: ["0 in flight"] });
    });
  }

  /** Wait until `b` has nothing in flight, at most `ms`; true if it got there. */
  private waitIdle(b: Backend, ms: number): Promise<boolean> {
    if (b.inFlight === 0) return Promise.resolve(true);
    if (ms <= 0 || this.stopped) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const end = (idle: boolean) => {
        if (!this.waits.delete(stop)) return;
        clearTimeout(timer);
        resolve(idle);
      };
      const stop = () => end(b.inFlight === 0);
      this.waits.add(stop);
      timer = setTimeout(() => end(false), Math.min(ms, MAX_WAIT_MS));
      void b.whenIdle().then(() => end(true));
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.stopped) return Promise.reject(new ControlError("SY_STOPPING", "the balancer is stopping"));
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private find(name: string): Backend {
    return this.locate(name).backend;
  }

  /**
   * The backend `name` names: "pool/backend", or a backend's name alone when one backend of
   * all the pools has it (always so with a single pool).
   */
  private locate(name: string): Located {
    const slash = name.indexOf("/");
    if (slash > 0) {
      const runtime = this.t.pools.get(name.slice(0, slash));
      const backend = runtime?.pool.get(name.slice(slash + 1));
      if (runtime !== undefined && backend !== undefined) return { runtime, backend };
    }
    const found = this.t.pools.all.flatMap((runtime) => {
      const backend = runtime.pool.get(name);
      return backend !== undefined ? [{ runtime, backend }] : [];
    });
    if (found.length === 1) return found[0]!;
    if (found.length > 1) {
      throw new ControlError("SY_UNKNOWN_BACKEND", `"${name}" is a backend of ${found.length} pools (${found.map((f) => f.runtime.name).join(", ")}): name it as pool/backend, e.g. "${found[0]!.runtime.name}/${name}"`);
    }
    throw this.unknown(name);
  }

  /**
   * A backend found through DNS is not an entry of the config: its weight and presence come from
   * its DNS entry, changed in the file. Drain, enable and forced health work on it as on any.
   */
  private discoveredError(name: string): ControlError | undefined {
    let located: Located;
    try {
      located = this.locate(name);
    } catch {
      return undefined;
    }
    const local = located.backend.name;
    const entries = this.t.config().pools[located.runtime.name]?.backends ?? [];
    if (entries.some((d) => d.name === local)) return undefined;
    const entry = entries.find((d) => d.dns !== undefined && local.startsWith(`${d.name}#`));
    if (!entry) return undefined;
    return new ControlError(
      "SY_INVALID_REQUEST",
      `${name} was found through DNS (the entry "${entry.name}", dns ${entry.dns}): its weight and whether it is a backend come from that entry and from DNS; change the entry in the config file and reload`,
    );
  }

  private unknown(name: string): ControlError {
    const names = this.t.pools.all.flatMap((p) => p.pool.backends.map((b) => p.label + b.name));
    return new ControlError("SY_UNKNOWN_BACKEND", `no backend named "${name}" (backends: ${names.join(", ") || "none"})`);
  }
}

/** A backend and the pool it is in. */
interface Located {
  runtime: PoolRuntime;
  backend: Backend;
}

function report(b: Backend, pool: string, pools: number): BackendReport {
  return {
    name: b.name, pool, id: pools === 1 ? b.name : `${pool}/${b.name}`, url: b.url.href, state: b.state(), reason: b.lastChangeReason, healthy: b.isHealthy, enabled: b.isEnabled,
    forced: b.forcedHealth ?? null, weight: b.weight, priority: b.priority, maxConnections: b.maxConnections, inFlight: b.inFlight,
    requests: b.stats.requests > 0 ? b.stats.requests : b.acquired,
  };
}
