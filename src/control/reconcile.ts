/**
 * The one step every change to the set of backends goes through: a reload from file, the admin
 * API and (later) DNS discovery each produce the desired list of backends, a plain list of
 * backend configs, and `reconcile(desired)` makes the running pool match it (Pingora's
 * `Backends::do_update`: diff the new set against the old in one place).
 *
 * Backends are matched by name:
 * - one in the pool but not desired is removed: out of the pool (no new traffic; requests in
 *   flight finish on the object they hold), its probe loop stopped, its passive-health timers
 *   cancelled, the pool's subscription to it ended. Nothing of it is left running.
 * - one desired but not in the pool is added. With an active check it starts down ("waiting for
 *   its first health check") and its first probe decides, so traffic never goes to a new backend
 *   before it has answered once; without one it starts up. It slow-starts like a backend that
 *   came back (except in the first reconcile, at start-up, as HAProxy does).
 * - one in both keeps its runtime state (health, drain, ejection, counters, chart history: the
 *   same Backend object) and takes its new config: weight, priority (a changed SRV priority
 *   moves it between tiers), limits, slow start, statsPath in place; a changed health check
 *   replaces its probe loop, carrying its health over. A changed `disabled` drains or enables
 *   it; an unchanged one leaves an operator's drain alone.
 * - one whose URL changed is a different backend (its health said nothing about the new
 *   address): removed and added.
 *
 * Calls are serialized: a reconcile waits for the one before it.
 */
import { Backend, backendSpec, type BackendSpec, type UpstreamSettings } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import type { HealthMonitor } from "../health/monitor.ts";
import type { PassiveHealth } from "../health/passive.ts";
import { resolveCheck, type ResolvedCheck } from "../health/check.ts";
import type { BackendConfig, Config, UpstreamProtocol } from "../config/schema.ts";
import type { ErrorCode } from "../errors.ts";

/**
 * One backend as a source describes it: a config entry with its name filled in and a fixed
 * address (a DNS entry has been expanded into one of these per address, src/discovery/dns.ts).
 */
export type DesiredBackend = BackendConfig & { readonly name: string; readonly url: string };

/** The settings that shape every backend: the global health check and slow start. */
export interface BackendDefaults {
  healthCheck: Config["healthCheck"];
  /** ms; 0 = off. */
  slowStart: number;
  /** τ of peak-ewma's response-time average, ms (peakEwma.decay); its default when absent. */
  latencyDecay?: number;
  /** The pool's backend-side limits (connect and idle timeouts, keep-alive), carried by each backend. */
  upstream?: UpstreamSettings;
  /** The pool's `protocol`, for backends without their own. */
  protocol?: UpstreamProtocol;
}

export interface ReconcileResult {
  added: string[];
  removed: string[];
  /** Backends that stayed and whose config changed. */
  updated: string[];
  /** One line per change, for the log and the change record: "backend-2: weight 1 -> 3". */
  lines: string[];
}

export class ReconcileError extends Error {
  readonly code = "SY_RECONCILE_INVALID" satisfies ErrorCode;
}

export interface ReconcileTargets {
  pool: Pool;
  health: HealthMonitor;
  passive: PassiveHealth;
  /** Anything else that holds per-backend resources (the socket engine's idle upstream connections). */
  onRemove?: (backend: Backend) => void;
}

export class Reconciler {
  private current: readonly DesiredBackend[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private first = true;

  constructor(
    private readonly targets: ReconcileTargets,
    private defaults: BackendDefaults,
  ) {}

  /** The list the pool was last made to match. */
  get desired(): readonly DesiredBackend[] {
    return this.current;
  }

  /** Make the pool match `desired`; with `defaults`, under new global settings too. */
  reconcile(desired: readonly DesiredBackend[], defaults?: BackendDefaults): Promise<ReconcileResult> {
    const run = this.queue.then(() => this.apply(desired, defaults ?? this.defaults));
    this.queue = run.catch(() => {});
    return run;
  }

  private async apply(desired: readonly DesiredBackend[], defaults: BackendDefaults): Promise<ReconcileResult> {
    const names = new Set<string>();
    for (const d of desired) {
      if (names.has(d.name)) throw new ReconcileError(`two backends named "${d.name}": names must be unique`);
      names.add(d.name);
    }
    const { pool, health, passive } = this.targets;
    const result: ReconcileResult = { added: [], removed: [], updated: [], lines: [] };
    const before = new Map(this.current.map((d) => [d.name, d]));
    const wanted = new Map(desired.map((d) => [d.name, d]));
    const unwatched: Promise<void>[] = [];
    const replacedNames = new Set<string>();

    const remove = (b: Backend) => {
      pool.remove(b.name);
      passive.forget(b);
      unwatched.push(health.unwatch(b));
      this.targets.onRemove?.(b);
    };
    // A backend whose address changed goes first, so that its name is free for the new one.
    // Those no longer wanted go last, once the new ones have answered their first probe: make
    // before break, so that replacing every backend at once never leaves none available.
    const leaving: Backend[] = [];
    for (const b of [...pool.backends]) {
      const d = wanted.get(b.name);
      if (d === undefined) {
        leaving.push(b);
      } else if (backendSpec(this.options(d, defaults)).url.href !== b.url.href) {
        remove(b);
        replacedNames.add(b.name);
        result.lines.push(`${b.name}: url ${b.url.href} -> ${d.url} (replaced: a new address starts afresh)`);
      }
    }

    const checking: Promise<void>[] = [];
    for (const d of desired) {
      const spec = backendSpec(this.options(d, defaults));
      const check = resolveCheck(defaults.healthCheck, d);
      const existing = pool.get(d.name);
      if (existing === undefined) {
        checking.push(this.add(d, spec, check));
        if (!replacedNames.has(d.name)) {
          result.added.push(d.name);
          result.lines.push(`added ${d.name} (${spec.url.href}, weight ${spec.weight}${spec.priority !== 0 ? `, priority ${spec.priority}` : ""}${check ? `, ${check.type} check` : ", no active check"})`);
        }
        continue;
      }
      const changes = describeSpecChange(existing, spec);
      // Always: a global setting carried in the spec (peakEwma.decay) may have changed, and the
      // reload's own diff reports that once rather than once per backend.
      existing.configure(spec);
      const was = before.get(d.name);
      if (was !== undefined && (was.disabled ?? false) !== (d.disabled ?? false)) {
        existing.setEnabled(!d.disabled, d.disabled ? "config: disabled" : "config: enabled");
        changes.push(d.disabled ? "disabled" : "enabled");
      }
      const old = health.checkOf(existing);
      if (!sameCheck(old, check)) {
        unwatched.push(health.unwatch(existing));
        if (check) void health.watch(existing, check, { carryOver: true });
        changes.push(check ? (old ? "health check changed" : `${check.type} check added`) : "health check removed");
      }
      if (changes.length > 0) {
        result.updated.push(d.name);
        result.lines.push(`${d.name}: ${changes.join(", ")}`);
      }
    }

    // The pool lists backends in the order the source gives (the dashboard shows them so).
    pool.order(desired.map((d) => d.name));
    this.current = desired.map((d) => ({ ...d }));
    this.defaults = defaults;
    this.first = false;
    // New backends have answered their first probe (bounded by its timeout): now the old go.
    await Promise.all(checking);
    for (const b of leaving) {
      remove(b);
      result.removed.push(b.name);
      result.lines.push(`removed ${b.name} (${b.url.href})${b.inFlight > 0 ? `, ${b.inFlight} in flight finishing` : ""}`);
    }
    await Promise.all(unwatched);
    return result;
  }

  private options(d: DesiredBackend, defaults: BackendDefaults) {
    return {
      name: d.name, url: d.url, weight: d.weight, priority: d.priority, maxConnections: d.maxConnections, statsPath: d.statsPath,
      slowStart: defaults.slowStart, latencyDecay: defaults.latencyDecay, tls: d.tls, upstream: defaults.upstream,
      protocol: d.protocol ?? defaults.protocol,
    };
  }

  private async add(d: DesiredBackend, spec: BackendSpec, check: ResolvedCheck | undefined): Promise<void> {
    const { pool, health } = this.targets;
    const running = !this.first;
    const b = new Backend(spec, {
      disabled: d.disabled,
      // Backends present at start-up take a full share at once (HAProxy: slowstart never
      // applies when the process starts); later ones ramp up.
      rampFrom: running ? Date.now() : undefined,
      // Added while running with an active check: not available until it has answered once.
      // At start-up every backend starts up and the start-up probes (before the listener
      // opens) decide.
      healthy: !(running && check !== undefined),
      reason: running ? (check ? "added; waiting for its first health check" : "added") : "configured",
    });
    pool.add(b);
    if (check) await health.watch(b, check);
  }
}

function describeSpecChange(b: Backend, spec: BackendSpec): string[] {
  const out: string[] = [];
  if (b.weight !== spec.weight) out.push(`weight ${b.weight} -> ${spec.weight}`);
  if (b.priority !== spec.priority) out.push(`priority ${b.priority} -> ${spec.priority}`);
  if (b.maxConnections !== spec.maxConnections) out.push(`maxConnections ${b.maxConnections} -> ${spec.maxConnections}`);
  if (b.slowStartMs !== spec.slowStartMs) out.push(`slowStart ${b.slowStartMs}ms -> ${spec.slowStartMs}ms`);
  if (b.statsPath !== spec.statsPath) out.push(`statsPath ${b.statsPath ?? "none"} -> ${spec.statsPath ?? "none"}`);
  if (JSON.stringify(b.tls) !== JSON.stringify(spec.tls)) out.push("tls changed (new connections use it)");
  if (b.protocol !== spec.protocol) out.push(`protocol ${b.protocol} -> ${spec.protocol} (new requests use it)`);
  return out;
}

function sameCheck(a: ResolvedCheck | undefined, b: ResolvedCheck | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return JSON.stringify(a) === JSON.stringify(b);
}
