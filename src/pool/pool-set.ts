/**
 * The named pools of one balancer at run time: per pool its backends (LocalPool and its
 * policy), passive health, the reconcile that keeps its backends matched to the config, and
 * the DNS discovery of its entries. One HealthMonitor probes the backends of every pool.
 *
 * Config apart from runtime state (Caddy's `hosts.go` model): a pool lives across reloads while
 * its name stays, and with it every backend whose name and address stay: health, counters,
 * ejection, slow start. apply() adds the pools a config adds and reconfigures the others; the
 * pools it drops are retired only once nothing routes to them any more, a grace after the
 * listeners took the new config (retire(), called by the balancer): requests routed before the
 * change, still reading their body or about to retry, find their pool's backends there. Retired,
 * their backends leave the pool and the requests in flight finish on the Backend objects they hold.
 */
import type { BackendConfig, Config, PoolConfig } from "../config/schema.ts";
import { LocalPool } from "./pool.ts";
import type { Backend } from "./backend.ts";
import { createPolicy } from "../policy/policy.ts";
import { PassiveHealth } from "../health/passive.ts";
import type { HealthMonitor } from "../health/monitor.ts";
import { Reconciler, type BackendDefaults } from "../control/reconcile.ts";
import { DnsDiscovery } from "../discovery/dns.ts";
import type { ChangeLog } from "../control/changes.ts";
import type { Logger } from "../log/logger.ts";

/** What every pool of a set shares. */
export interface PoolSetDeps {
  readonly health: HealthMonitor;
  readonly logger: Logger;
  readonly changes: ChangeLog;
  /** Anything else that holds per-backend resources (the socket engine's idle connections, the workers' figures), told the pool's name too (backend names are unique per pool only). */
  onRemove(backend: Backend, pool: string): void;
}

/** One named pool at run time. */
export class PoolRuntime {
  readonly pool: LocalPool;
  readonly passive: PassiveHealth;
  readonly reconciler: Reconciler;
  readonly discovery: DnsDiscovery;
  private readonly unsubscribe: (() => void)[] = [];
  /**
   * The config whose backends the pool follows. Set before a reload's reconcile is queued, so
   * that a DNS change queued meanwhile expands the entries of the config that will be in force.
   */
  private from: PoolConfig;

  constructor(
    readonly name: string,
    config: PoolConfig,
    deps: PoolSetDeps,
  ) {
    this.from = config;
    const { health, logger, changes } = deps;
    this.pool = new LocalPool(createPolicy(config.strategy));
    this.pool.setPanicThreshold(config.panicThreshold);
    this.passive = new PassiveHealth(this.pool, config.passive, (b) => health.probes(b));
    this.reconciler = new Reconciler({ pool: this.pool, health, passive: this.passive, onRemove: (b) => deps.onRemove(b, name) }, backendDefaults(config));
    // DNS entries are looked up once before the first reconcile, then on their own timers; a
    // change in their addresses goes through reconcile like a reload.
    this.discovery = new DnsDiscovery({
      logger,
      onChange: (lines) => {
        const from = this.from;
        this.reconciler.reconcile(this.discovery.expand(from.backends, from.mode), backendDefaults(from)).then(
          (r) => changes.record({ what: "dns discovery", by: "dns", from: "resolver", ok: true, detail: [...lines, ...r.lines].map((l) => this.qualify(l)) }),
          (e: Error) => changes.record({ what: "dns discovery", by: "dns", from: "resolver", ok: false, detail: [...lines, e.message].map((l) => this.qualify(l)) }),
        );
      },
    });
    const label = this.label;
    this.unsubscribe.push(
      this.pool.onStateChange(({ backend, from, to, reason }) => {
        const line = `backend ${label}${backend.name} ${from} -> ${to}: ${reason}`;
        if (to === "down" || to === "ejected") logger.warn(line);
        else logger.info(line);
      }),
      this.pool.onPanicChange(({ panic, serving, inService, threshold }) => {
        const share = `${serving} of ${inService} backends in service healthy, threshold ${threshold}%`;
        const which = label === "" ? "pool" : `pool ${this.name}`;
        if (panic) logger.warn(`${which} in panic mode (${share}): balancing over every backend in service, healthy or not`);
        else logger.info(`${which} out of panic mode (${share})`);
      }),
    );
  }

  /** The config this pool follows now. */
  get config(): PoolConfig {
    return this.from;
  }

  /** "api/" in messages about a backend of pool "api"; nothing for the single pool `default`. */
  get label(): string {
    return this.name === "default" ? "" : `${this.name}/`;
  }

  private qualify(line: string): string {
    return this.label === "" ? line : `${this.name}: ${line}`;
  }

  /**
   * Follow `config`: policy, panic threshold, passive health, DNS entries, then the backends
   * through reconcile. Returns one line per change. The first call fills the pool.
   */
  async configure(config: PoolConfig, dns: Config["dns"]): Promise<string[]> {
    const prev = this.from;
    if (prev.strategy !== config.strategy) this.pool.setPolicy(createPolicy(config.strategy));
    this.pool.setPanicThreshold(config.panicThreshold);
    this.passive.configure(config.passive);
    // New DNS entries are looked up first, so that their backends arrive with the reload.
    await this.discovery.configure(config.backends, dns);
    this.from = config;
    const r = await this.reconciler.reconcile(this.discovery.expand(config.backends, config.mode), backendDefaults(config));
    return r.lines.map((l) => this.qualify(l));
  }

  /** The backends as configured (DNS entries unexpanded): what the admin API edits. */
  get entries(): readonly BackendConfig[] {
    return this.from.backends;
  }

  /** Every loop of this pool stopped; its backends leave it (and their probes stop) when `drain`. */
  async stop(drain: boolean): Promise<void> {
    for (const u of this.unsubscribe) u();
    this.passive.stop();
    const discovery = this.discovery.stop();
    if (drain) await this.reconciler.reconcile([], backendDefaults(this.from));
    await discovery;
  }
}

export class PoolSet {
  private readonly pools = new Map<string, PoolRuntime>();
  /** Pools apply() dropped, until retire(). */
  private readonly dropped = new Set<PoolRuntime>();
  /** The pools the last apply() dropped: the balancer retires these once nothing routes to them. */
  lastDropped: readonly PoolRuntime[] = [];

  constructor(private readonly deps: PoolSetDeps) {}

  get(name: string): PoolRuntime | undefined {
    return this.pools.get(name);
  }

  get all(): readonly PoolRuntime[] {
    return [...this.pools.values()];
  }

  get size(): number {
    return this.pools.size;
  }

  /** The pool a backend is in (a Backend object belongs to one pool). */
  poolOf(backend: Backend): PoolRuntime | undefined {
    for (const p of this.pools.values()) if (p.pool.get(backend.name) === backend) return p;
    return undefined;
  }

  /**
   * Add the pools `config` adds, reconfigure the ones it keeps (their backends' state stays),
   * and set aside the ones it drops until retire(). Returns one line per change.
   */
  async apply(config: Config): Promise<string[]> {
    const lines: string[] = [];
    const dropped: PoolRuntime[] = [];
    for (const [name, pc] of Object.entries(config.pools)) {
      let p = this.pools.get(name);
      const added = p === undefined;
      if (p === undefined) {
        p = new PoolRuntime(name, pc, this.deps);
        this.pools.set(name, p);
        if (this.sweeping) lines.push(`pool ${name}: added`);
      }
      lines.push(...(await p.configure(pc, config.dns)));
      if (added && this.sweeping) p.passive.startSweeps();
    }
    for (const [name, p] of this.pools) {
      if (name in config.pools) continue;
      this.pools.delete(name);
      this.dropped.add(p);
      dropped.push(p);
      lines.push(`pool ${name}: removed (its requests in flight finish)`);
    }
    this.lastDropped = dropped;
    return lines;
  }
  /** startSweeps() was called: pools added from now on start theirs at once. */
  private sweeping = false;

  /** Drain and stop `pools` (dropped by an apply): call once nothing routes to them. */
  async retire(pools: readonly PoolRuntime[]): Promise<void> {
    await Promise.all(pools.filter((p) => this.dropped.delete(p)).map((p) => p.stop(true)));
  }

  /** Start every pool's sweeps (outlier detection): after the first apply(). */
  startSweeps(): void {
    this.sweeping = true;
    for (const p of this.pools.values()) p.passive.startSweeps();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.pools.values(), ...this.dropped].map((p) => p.stop(false)));
  }
}

/** The settings that shape every backend of a pool; a reload hands the new ones to reconcile. */
export function backendDefaults(c: PoolConfig): BackendDefaults {
  return {
    healthCheck: c.healthCheck, slowStart: c.slowStart, latencyDecay: c.peakEwma.decay, protocol: c.protocol,
    upstream: {
      connectTimeoutMs: c.timeouts.connect, idleTimeoutMs: c.timeouts.upstreamIdle, keepalive: c.limits.upstreamKeepalive,
      ...(c.proxyProtocol !== undefined ? { proxyProtocol: c.proxyProtocol } : {}),
    },
  };
}
