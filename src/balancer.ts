/**
 * The composition root: one balancer from a validated config. It owns the named pools
 * (src/pool/pool-set.ts: backends, policies, passive health, discovery), one health monitor
 * probing every pool's backends, the proxy listeners (src/listener/: HTTP on either engine,
 * TCP), the admin listener, the logs, and every background loop it starts; stop() ends them all.
 * With `workers` above 1 the proxy listeners are not here: worker processes serve them
 * (src/workers/), and this process stays the one owner of backend state.
 *
 * Changing it while it runs: apply(config) is the one path from a new config to the running
 * parts. New pools are made first and kept pools reconfigured (their backends keep their state
 * through reconcile), then the listeners take routers built from the new config (a moved
 * listener is bound anew before the old one closes), and last the pools no route reaches any
 * more drain away. Nothing on the per-request path reads mutable config.
 */
import type { Server } from "bun";
import type { Config } from "./config/schema.ts";
import type { Pool } from "./pool/pool.ts";
import { PoolSet, type PoolRuntime } from "./pool/pool-set.ts";
import type { PassiveHealth } from "./health/passive.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { TrafficStats } from "./stats/traffic.ts";
import type { AccessLog, LineSink } from "./log/access.ts";
import { AccessLogs } from "./log/access-logs.ts";
import { Tracing } from "./tracing/tracer.ts";
import { consoleLogger, type Logger } from "./log/logger.ts";
import { createAdminApp, type AdminApp } from "./admin/app.ts";
import { TcpStats } from "./tcp/proxy.ts";
import { bindListener, claimPort } from "./listen-error.ts";
import { AdminAuth, resolveTokens, TOKEN_ENV } from "./admin/auth.ts";
import { Control, type Actor, type ApplyReport, type ReloadReport } from "./control/control.ts";
import type { Predecessor, UpgradeReport } from "./control/upgrade.ts";
import { ChangeLog } from "./control/changes.ts";
import { ConfigWatcher } from "./control/watch.ts";
import { diffPaths, forDiff, inForce, restartNeeded } from "./control/diff.ts";
import { resolveWorkers, WorkerSupervisor } from "./workers/supervisor.ts";
import { serveRedirect } from "./tls/redirect.ts";
import { AcmeManager } from "./acme/manager.ts";
import { ListenerSet } from "./listener/listener-set.ts";
import { RouteTraffic, type PoolSource } from "./listener/routing.ts";
import { MirrorFactory } from "./listener/route-modifiers.ts";
import { GuardState } from "./guard/build.ts";
import { BudgetFiles } from "./guard/rate-limit-shared.ts";
import { RecentFailures } from "./stats/recent-failures.ts";
import { hostForUrl, portKey, type ListenerContext } from "./listener/listener.ts";

export interface BalancerOptions {
  logger?: Logger;
  /** Where access-log lines go (stdout by default). */
  accessLogSink?: LineSink;
  /** Read and validate the config again, for a reload (the CLI: the file with its flags applied). */
  load?: () => Promise<Config>;
  /** The config file, for messages and `watch`. */
  file?: string;
  /** Follow `file` and reload when it changes (--watch). */
  watch?: boolean;
  /** Where SWITCHYARD_ADMIN_TOKEN is read (process.env by default). */
  env?: Record<string, string | undefined>;
  /**
   * This balancer replaces a running one (`switchyard upgrade`, src/control/upgrade.ts): its
   * ports are held by that process, so they are bound beside it (SO_REUSEPORT) instead of
   * claimed exclusively first, and a port configured as 0 is the one the predecessor bound.
   */
  predecessor?: Predecessor;
  /** Run `switchyard upgrade` (POST /api/upgrade); absent where the process cannot be replaced. */
  upgrade?: (actor: Actor) => Promise<UpgradeReport>;
}

/**
 * The ports a balancer's listeners are bound to, as a successor needs them: "proxy" and
 * "redirect" for the listener `default` (the single-listener form, and what older versions
 * hand over), `proxy:<name>` and `redirect:<name>` for the others, and "admin".
 */
export interface ListenPorts {
  proxy: number;
  admin?: number;
  redirect?: number;
  [key: string]: number | undefined;
}

/** What the admin app reads: one balancer's live state. */
export interface BalancerContext {
  /** The config in force now: replaced by every reload or API change, never mutated. */
  readonly config: Config;
  /** Every named pool, with its backends, passive health and discovery. */
  readonly pools: PoolSet;
  /** The first pool (the only one in the single-pool form): what the single-pool views read. */
  readonly pool: Pool;
  readonly passive: PassiveHealth;
  readonly traffic: TrafficStats;
  /** Each route's figures, by name. */
  readonly routes: RouteTraffic;
  readonly health: HealthMonitor;
  readonly logger: Logger;
  readonly startedAt: number;
  /** TCP listeners' totals (connections, bytes); absent when no listener is in TCP mode. */
  readonly tcpStats?: TcpStats;
  /** The names whose certificates come from ACME. */
  readonly acme: AcmeManager;
  /** Reload and the admin API's operations. */
  readonly control: Control;
  readonly changes: ChangeLog;
  readonly auth: AdminAuth;
  /** With `workers` above 1: the worker processes, per worker (the admin port's breakdown). */
  readonly workers?: WorkerSupervisor;
  /** Bring the figures up to date before they are read whole (/stats, /metrics): the workers' reports. */
  refresh?(): Promise<void>;
  /** Replace this process by a new one of the binary on disk (POST /api/upgrade); absent when not possible. */
  readonly upgrade?: (actor: Actor) => Promise<UpgradeReport>;
}

/**
 * One balancer. Made by start(), changed by apply() (reload, the admin API), ended by stop().
 * It is the BalancerContext the admin app reads.
 */
export class Balancer implements BalancerContext {
  readonly startedAt = Date.now();
  readonly traffic = new TrafficStats();
  readonly routes = new RouteTraffic();
  readonly health = new HealthMonitor(new Map());
  readonly changes: ChangeLog;
  readonly pools: PoolSet;
  readonly control: Control;
  /** TCP listeners' totals: made with the first TCP listener, at start or by a reload, and kept. */
  private tcp: TcpStats | undefined;
  readonly logger: Logger;
  readonly upgrade: ((actor: Actor) => Promise<UpgradeReport>) | undefined;
  /** The ports bound, for a successor (port 0 in the config is a chosen port here). */
  readonly ports: ListenPorts = { proxy: 0 };
  private running: Config;
  private readonly env: Record<string, string | undefined>;
  private readonly lifecycle = { draining: false };
  private readonly accessLogs: AccessLogs;
  /** This process's span exporter, made when a config first turns tracing on; stopped by stop(). */
  private readonly tracing = new Tracing(this.traffic.tracing);
  private readonly mirrors: MirrorFactory;
  /** The last failed requests, every listener's (and every worker's), for /stats and the dashboard. */
  readonly failures = new RecentFailures();
  /** What the routes' guards keep across reloads; stopped by stop(). */
  private readonly guards = new GuardState();
  private listeners: ListenerSet | undefined;
  private supervisor: WorkerSupervisor | undefined;
  /** With workers: the directory they share, for the rate-limit budgets (src/guard/rate-limit-shared.ts) and the per-client counts (src/net/shared-client-counts.ts); removed by stop(). */
  private budgets: BudgetFiles | undefined;
  /** Timers that drain pools a reload dropped (retireLater); cleared by stop(), which stops those pools. */
  private readonly retiring = new Set<ReturnType<typeof setTimeout>>();
  /** Each HTTPS listener's httpRedirect listener, by the HTTPS listener's name. */
  private readonly redirects = new Map<string, { host: string; port: number; server: Server<unknown> }>();
  private admin: { app: AdminApp; server: Server<unknown> } | undefined;
  /** Certificates from ACME (tls.acme): ordered and renewed here, served from acme.storage by every listener; stopped by stop(). */
  readonly acme: AcmeManager;
  private watcher: ConfigWatcher | undefined;
  private unlistenWorkers = () => {};
  private stopping: Promise<void> | undefined;
  private adminAddress: string | undefined;

  private constructor(
    initial: Config,
    private readonly opts: BalancerOptions,
    readonly auth: AdminAuth,
  ) {
    this.running = initial;
    this.logger = opts.logger ?? consoleLogger();
    this.env = opts.env ?? process.env;
    this.upgrade = opts.upgrade;
    this.changes = new ChangeLog(this.logger);
    this.acme = new AcmeManager(this.logger);
    this.accessLogs = new AccessLogs({
      sink: opts.accessLogSink,
      onDrop: (n) => this.traffic.countAccessLogDrop(n),
      onError: (msg) => this.logger.warn(msg),
    });
    if (initial.listeners.some((l) => l.mode === "tcp")) this.tcp = new TcpStats();
    this.mirrors = new MirrorFactory();
    // A removed backend's idle upstream connections (socket engine) are closed with it; busy
    // ones finish their exchange and are closed by the engine's idle sweep (timeouts.upstreamIdle).
    // With workers, each closes its own when the next table drops the backend.
    this.pools = new PoolSet({
      health: this.health, logger: this.logger, changes: this.changes,
      onRemove: (b, pool) => {
        this.listeners?.closeIdle(b);
        this.supervisor?.forget(pool, b);
      },
    });
    this.control = new Control({
      pools: this.pools, changes: this.changes,
      apply: (next) => this.apply(next),
      config: () => this.running,
      load: opts.load,
      file: opts.file,
      acme: this.acme,
    });
  }

  /** Start a balancer: pools filled and probed, then the listeners bound. Throws, with nothing left running, when a listener cannot start. */
  static async start(initial: Config, opts: BalancerOptions = {}): Promise<Balancer> {
    // Before anything starts: a bad token file stops the start-up like any config error.
    const auth = new AdminAuth(await resolveTokens(initial.admin, opts.env ?? process.env));
    const b = new Balancer(initial, opts, auth);
    await b.begin();
    return b;
  }

  get config(): Config {
    return this.running;
  }

  get tcpStats(): TcpStats | undefined {
    return this.tcp;
  }

  get pool(): Pool {
    return this.pools.all[0]!.pool;
  }

  get passive(): PassiveHealth {
    return this.pools.all[0]!.passive;
  }

  get workers(): WorkerSupervisor | undefined {
    return this.supervisor;
  }

  refresh(): Promise<void> {
    return this.supervisor?.pull() ?? Promise.resolve();
  }

  /** The first listener's URL (http://host:port, https://, tcp:// or tls://). */
  get url(): string {
    if (this.supervisor !== undefined) return Object.values(this.workersUrls)[0]!;
    return this.listeners!.all[0]!.url;
  }
  /** With workers: each listener's URL, on the port claimed for it. */
  private workersUrls: Record<string, string> = {};

  /** The first listener's port. */
  get port(): number {
    return this.ports.proxy;
  }

  /** Every proxy listener's URL, by name. */
  get urls(): Record<string, string> {
    if (this.listeners === undefined) return { ...this.workersUrls };
    return Object.fromEntries(this.listeners.all.map((l) => [l.name, l.url]));
  }

  get adminUrl(): string | undefined {
    return this.adminAddress;
  }

  /** Read the config file again and apply it (SIGHUP does this). Throws ControlError when refused. */
  reload(actor: Actor = { by: "local", from: "local" }): Promise<ReloadReport> {
    return this.control.reload(actor);
  }

  /**
   * Apply a validated config to the running balancer: pools (added, reconfigured through
   * reconcile), listeners (new routers, moved or added listeners bound), pools dropped drained,
   * the admin tokens. What needs a restart is reported and left as it runs. Throws before
   * changing anything when the new admin token sources cannot be read.
   */
  async apply(next: Config): Promise<ApplyReport> {
    const tokens = await resolveTokens(next.admin, this.env);
    const prev = this.running;
    const later = restartNeeded(prev, next);
    const target = inForce(prev, next);
    // log.file opened first (here too with workers, which open it again themselves): a path that
    // cannot be opened refuses the change before anything else has changed.
    this.accessLogs.for(target);
    // With workers, the ports of listeners added or moved are claimed here first: a port in use
    // refuses the change before anything else has changed.
    const ports = this.supervisor !== undefined ? this.claimWorkerPorts(target, prev) : undefined;
    this.budgets?.make(target);
    const lines = diffPaths(forDiff(prev), forDiff(target));
    lines.push(...(await this.pools.apply(target)));
    this.routes.keep(target.routes.map((r) => r.name));
    this.mirrors.keep(target.routes.map((r) => r.name));
    this.guards.keep(target.routes.map((r) => r.name));
    const dropped = this.pools.lastDropped;
    try {
      lines.push(...(await this.acme.sync(target)));
      if (this.listeners !== undefined) lines.push(...(await this.listeners.apply(target, prev)));
      lines.push(...this.syncRedirects(target, prev));
      this.auth.set(tokens);
      this.running = target;
      this.guards.committed();
      // The workers take the same config in place, with the tables of its pools and the ports
      // of its listeners.
      if (this.supervisor !== undefined && ports !== undefined) lines.push(...(await this.supervisor.configure(target, ports)));
      // Names a reload added are ordered once every listener that answers for them is up.
      this.acme.start();
      this.budgets?.prune(target);
      this.forgetPorts(target, prev);
    } finally {
      this.retireLater(dropped, target.timeouts.shutdownGrace);
    }
    return { lines, restartNeeded: later };
  }

  /**
   * With workers: the port of every listener of `target`, by key. A listener at the same address
   * as in `prev` keeps its port (bound anew for a new mode, the workers bind beside the old
   * socket, as ListenerSet does in one process); one added or moved gets one claimed now
   * (portFor), which the workers then bind. Also sets each listener's URL.
   */
  private claimWorkerPorts(target: Config, prev: Config | undefined): Record<string, number> {
    const ports: Record<string, number> = {};
    const urls: Record<string, string> = {};
    // A claim that fails leaves the ports as they were: nothing has moved.
    const before = { ...this.ports };
    try {
      for (const l of target.listeners) {
        const key = portKey(l, "proxy");
        const was = prev?.listeners.find((x) => x.name === l.name);
        const kept = was !== undefined && was.host === l.host && was.port === l.port ? this.ports[key] : undefined;
        const port = (ports[key] = kept ?? this.portFor(key, l.host, l.port));
        const tls = l.tls !== undefined;
        urls[l.name] = `${l.mode === "tcp" ? (tls ? "tls" : "tcp") : tls ? "https" : "http"}://${hostForUrl(l.host)}:${port}`;
      }
    } catch (e) {
      for (const k of Object.keys(this.ports)) if (!(k in before)) delete this.ports[k];
      Object.assign(this.ports, before);
      throw e;
    }
    this.workersUrls = urls;
    return ports;
  }

  /**
   * The port keys of listeners (and their redirects) `target` no longer has: one added later
   * under the same name is claimed afresh (portFor), not taken for this balancer's own.
   */
  private forgetPorts(target: Config, prev: Config): void {
    const proxies = new Set(target.listeners.map((l) => portKey(l, "proxy")));
    const redirects = new Set(target.listeners.filter((l) => l.httpRedirect !== undefined && l.tls !== undefined).map((l) => portKey(l, "redirect")));
    for (const l of prev.listeners) {
      if (!proxies.has(portKey(l, "proxy"))) delete this.ports[portKey(l, "proxy")];
      if (!redirects.has(portKey(l, "redirect"))) delete this.ports[portKey(l, "redirect")];
    }
  }

  /**
   * Pools a reload dropped are drained once nothing routes to them: after `graceMs`
   * (timeouts.shutdownGrace), as the listeners a reload replaces finish what they hold. A
   * request routed to one before the change (reading its body, about to retry) still finds
   * its backends.
   */
  private retireLater(pools: readonly PoolRuntime[], graceMs: number): void {
    if (pools.length === 0) return;
    const timer = setTimeout(() => {
      this.retiring.delete(timer);
      void this.pools.retire(pools);
    }, graceMs);
    this.retiring.add(timer);
  }

  /** The listener context: what every proxy listener of this process reads. */
  private listenerContext(): ListenerContext {
    const pools: PoolSource = {
      handle: (name) => {
        const p = this.pools.get(name);
        if (p === undefined) throw new Error(`no pool "${name}"`);
        return p;
      },
    };
    return {
      pools, traffic: this.traffic, routes: this.routes, mirrors: this.mirrors, guards: this.guards, failures: this.failures, logger: this.logger,
      tcpTotals: () => (this.tcp ??= new TcpStats()),
      accessLog: (c) => this.accessLogFor(c), lifecycle: this.lifecycle,
      tracer: (c) => this.tracing.tracerFor(c),
      portFor: (key, host, port) => this.portFor(key, host, port),
    };
  }

  /** The access log a config asks for (log-access-logs.ts keeps one per shape to the end: a reload may switch back). */
  private accessLogFor(config: Config): AccessLog | undefined {
    return this.accessLogs.for(config);
  }

  /**
   * SIGUSR1 (logrotate's postrotate): open the access-log files anew, here and in every worker
   * (each appends to the file itself, so each must reopen it).
   */
  async reopenLogs(): Promise<void> {
    this.supervisor?.signal("SIGUSR1");
    await this.accessLogs.reopen();
  }

  /**
   * The port a listener binds, with SO_REUSEPORT. Started fresh: claimed exclusively first, so
   * that a port in use fails the start (and port 0 becomes one port for all who bind it). As a
   * successor: the predecessor holds it, and its port stands in for a configured 0.
   */
  private portFor(key: string, host: string, port: number): number {
    // Bound by this process already (a listener bound anew on the same port, for a new mode):
    // its new socket binds beside the old one, which closes after.
    if (port !== 0 && this.ports[key] === port) return port;
    const pred = this.opts.predecessor;
    const label = key.replace(/:(.*)$/, ' "$1"');
    const bound = pred === undefined ? claimPort(label, host, port) : port !== 0 ? port : (pred.ports[key] ?? 0);
    this.ports[key] = bound;
    return bound;
  }

  private async begin(): Promise<void> {
    const initial = this.running;
    const { logger } = this;
    // log.file opened first: a path that cannot be opened is said as such, before anything starts.
    this.accessLogs.for(initial);
    // The first apply fills the pools; the probes start below, before any listener opens.
    await this.pools.apply(initial);
    for (const p of this.pools.all) {
      for (const b of p.pool.backends) {
        const check = this.health.checkOf(b);
        const how = check ? `${check.type} check ${check.type === "http" ? check.path + " " : ""}every ${check.interval}ms` : "no active check";
        logger.info(`backend ${p.label}${b.name} ${b.url.href} weight ${b.weight} (${how})`);
      }
    }
    // Start-up probes run before the listener opens: traffic goes only to backends not known down.
    await this.health.start();
    this.pools.startSweeps();
    // A listener that cannot start (a port in use) must not leave probes and timers running.
    try {
      // Every ACME name has its file (stored or a placeholder) before a listener reads it.
      await this.acme.sync(initial);
      const workerCount = resolveWorkers(initial.workers);
      if (workerCount > 1) await this.startWorkers(workerCount);
      else {
        this.listeners = new ListenerSet(this.listenerContext());
        await this.listeners.apply(initial);
        this.ports.proxy = this.listeners.all[0]!.port;
      }
      this.syncRedirects(initial);
      // The CA validates against the listeners: they are up now.
      this.acme.start();
      for (const l of initial.listeners) {
        const engine = l.mode === "http" ? ` on the ${initial.engine} engine` : "";
        const served = this.supervisor ? `, ${this.supervisor.count} worker processes` : "";
        const url = this.urls[l.name] ?? this.url;
        const what = l.mode === "tcp" ? `(pool ${l.pool ?? "by SNI"}, strategy ${initial.pools[l.pool ?? ""]?.strategy ?? initial.strategy})` : `(strategy ${initial.strategy}${initial.routes.length > 1 ? `, ${initial.routes.length} routes` : ""})`;
        logger.info(`${l.mode} proxy${l.name === "default" ? "" : ` "${l.name}"`} listening on ${url} ${what}${engine}${served}`);
      }
      this.startAdmin();
      this.startWatcher();
    } catch (e) {
      await this.stop(false);
      throw e;
    }
  }

  /**
   * This process owns the backends and the admin port; the workers serve every proxy listener,
   * each on the port claimed here (exclusively first, so that a port in use fails the start and
   * a configured 0 becomes one port for every worker) and handed to them.
   */
  private async startWorkers(count: number): Promise<void> {
    const initial = this.running;
    const ports = this.claimWorkerPorts(initial, undefined);
    const budgets = (this.budgets = new BudgetFiles());
    budgets.make(initial);
    const workers = (this.supervisor = new WorkerSupervisor({
      count, pools: this.pools, traffic: this.traffic, routes: this.routes, tcpStats: this.tcpStats, failures: this.failures, logger: this.logger, config: () => this.running,
      budgetDir: budgets.dir,
    }));
    // Besides state changes (which the supervisor follows itself), every operation recorded
    // here (a forced health that leaves the state as it was, say) sends the tables if they moved.
    this.unlistenWorkers = this.changes.onChange(() => workers.publish());
    await workers.start(ports);
    // The first listener's port is "the" proxy port (as one process reports it).
    this.ports.proxy = ports[portKey(initial.listeners[0]!, "proxy")]!;
  }

  /**
   * Each HTTPS listener's httpRedirect: a plain-HTTP listener that redirects to it, kept while
   * its address stays (it reads the HTTPS port it points to per request, so a moved HTTPS
   * listener is followed), started for a listener that gains one, stopped for one that loses it.
   * Returns one line per change on a reload (`prev` given).
   */
  private syncRedirects(config: Config, prev?: Config): string[] {
    const lines: string[] = [];
    const wanted = new Set<string>();
    for (const l of config.listeners) {
      const from = l.httpRedirect;
      if (from === undefined || l.tls === undefined) continue;
      const host = from.host ?? l.host;
      const known = this.redirects.get(l.name);
      wanted.add(l.name);
      if (known !== undefined && known.host === host && known.port === from.port) continue;
      const key = portKey(l, "redirect");
      const port = this.portFor(key, host, from.port);
      const label = key.replace(/:(.*)$/, ' "$1"');
      const httpsKey = portKey(l, "proxy");
      const server = bindListener(label, host, port, () => serveRedirect(host, port, () => this.ports[httpsKey] ?? 0, () => this.running.acme?.storage));
      this.ports[key] = server.port;
      if (known !== undefined) void known.server.stop(false);
      this.redirects.set(l.name, { host, port: from.port, server });
      this.logger.info(`redirecting http://${hostForUrl(host)}:${server.port} to HTTPS`);
      if (prev !== undefined) lines.push(`listener ${l.name}: redirecting http://${hostForUrl(host)}:${server.port} to HTTPS`);
    }
    for (const [name, r] of this.redirects) {
      if (wanted.has(name)) continue;
      this.redirects.delete(name);
      void r.server.stop(false);
      lines.push(`listener ${name}: no longer redirecting plain HTTP`);
    }
    return lines;
  }

  private startAdmin(): void {
    const admin = this.running.admin;
    if (admin === false) return;
    const app = createAdminApp(this, { allowedHosts: admin.allowedHosts });
    this.admin = { app, server: serveAdmin(admin.host, this.portFor("admin", admin.host, admin.port), app) };
    this.ports.admin = this.admin.server.port;
    this.adminAddress = `http://${hostForUrl(admin.host)}:${this.admin.server.port}`;
    this.logger.info(`admin listening on ${this.adminAddress} (dashboard /, /stats, /metrics, /healthz, /readyz, /api)`);
    if (!isLoopback(admin.host)) {
      this.logger.warn(
        `admin listener on ${admin.host} is not a loopback address: anyone who can reach it can read /stats, /metrics, /events and GET /api; ` +
          (this.auth.configured ? "changes through /api need the token" : "changes through /api are off until a token is configured"),
      );
    }
    if (!this.auth.configured) this.logger.info(`admin API: read-only (set admin.token, admin.tokenFile or ${TOKEN_ENV} to allow changes)`);
  }

  private startWatcher(): void {
    const { watch, file } = this.opts;
    if (!watch) return;
    if (!file) throw new Error("watch needs the config file");
    this.watcher = new ConfigWatcher(file, () => {
      this.control.reload({ by: "file watch", from: "local" }).catch(() => {
        // Refused: already logged and shown in /stats with its problems.
      });
    });
    this.watcher.start();
    this.logger.info(`watching ${file} for changes`);
  }

  /**
   * Stop accepting, let in-flight work finish within shutdownGrace (or at once), stop every loop.
   * handover: a successor serves the same ports (`switchyard upgrade`); the admin and redirect
   * listeners stop accepting at once, so that what comes next reaches the successor.
   */
  stop(graceful = true, handover = false): Promise<void> {
    this.stopping ??= (async () => {
      // From now on every fetch-engine answer carries Connection: close (the socket engine
      // does the same in its own drain), so that no keep-alive client sends a request on a
      // connection that is about to close.
      this.lifecycle.draining = true;
      this.watcher?.stop();
      this.acme.stop();
      for (const t of this.retiring) clearTimeout(t);
      this.retiring.clear();
      this.control.stop();
      // Aborted probes settle asynchronously; awaited below so that nothing outlives stop().
      const healthStopped = this.health.stop();
      const poolsStopped = this.pools.stop();
      this.unlistenWorkers();
      for (const r of this.redirects.values()) void r.server.stop(!handover);
      // Requests in flight on it (POST /api/upgrade's answer) finish; new ones go to the successor.
      if (handover) void this.admin?.server.stop(false);
      const grace = this.running.timeouts.shutdownGrace;
      // Workers drain themselves within the same grace, then cut what is left.
      if (handover && graceful) await this.supervisor?.unlisten();
      await Promise.all([this.listeners?.stop(graceful, grace, handover), this.supervisor?.stop(!graceful, grace, handover)]);
      await this.admin?.app.stop();
      await this.admin?.server.stop(true);
      await this.accessLogs.close();
      await this.tracing.stop();
      await this.guards.stop();
      this.budgets?.remove();
      await Promise.all([healthStopped, poolsStopped]);
    })();
    return this.stopping;
  }
}

/** Start a balancer (Balancer.start). */
export function startBalancer(initial: Config, opts: BalancerOptions = {}): Promise<Balancer> {
  return Balancer.start(initial, opts);
}


/** The admin listener, apart from the proxy port so that it is never reachable through it. */
function serveAdmin(host: string, port: number, app: AdminApp): Server<unknown> {
  return bindListener("admin", host, port, () => Bun.serve({
    hostname: host,
    port,
    // Claimed exclusively first (portFor): shared only with a successor during an upgrade.
    reusePort: true,
    development: false,
    // The dashboard's event stream is long-lived; it sets its own per-request timeout.
    idleTimeout: 30,
    fetch: (req, server) => app.fetch(req, { server }),
  }));
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

