/**
 * Assembles one balancer from a validated config: the pool and its policy, health (active and
 * passive), the proxy listener (HTTP or TCP), the admin listener and the logs. Owns every
 * background loop it starts (probes, passive timers, the config watcher, the admin loops), and
 * stops them all in stop(). With `workers` above 1 the proxy listener is not here: worker
 * processes serve it (src/workers/), and this process stays the one owner of backend state.
 *
 * Changing it while it runs: `apply(config)` below is the one path from a new config to the
 * running parts. The backends go through reconcile (src/control/reconcile.ts); the pool, the
 * health monitor and passive health live on; the proxy handler is rebuilt from the new config
 * and swapped in behind `setProxy` (nothing on the per-request path reads mutable config).
 */
import type { Server } from "bun";
import { Hono } from "hono";
import type { Config } from "./config/schema.ts";
import { LocalPool, type Pool } from "./pool/pool.ts";
import { createPolicy } from "./policy/policy.ts";
import { PassiveHealth, type PassiveSignals } from "./health/passive.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { createFetchHandler, startFetchClient } from "./engine/fetch/engine.ts";
import { bridgeHandlers } from "./engine/fetch/websocket.ts";
import { startSocketEngine, type SocketEngine, type SocketEngineSettings } from "./engine/socket/engine.ts";
import { cidrMatcher } from "./net/cidr.ts";
import { compileResponseHeaderRules } from "./http/headers.ts";
import { hashKeyExtractor } from "./policy/hash-key.ts";
import { StickySessions } from "./policy/sticky.ts";
import { TrafficStats } from "./stats/traffic.ts";
import { createAccessLog, type AccessLog, type LineSink } from "./log/access.ts";
import { consoleLogger, type Logger } from "./log/logger.ts";
import { createAdminApp, type AdminApp } from "./admin/app.ts";
import { startTcpProxy, TcpStats, type TcpProxy } from "./tcp/proxy.ts";
import { bindListener, claimPort, listenError, type ListenerName } from "./listen-error.ts";
import { AdminAuth, resolveTokens, TOKEN_ENV } from "./admin/auth.ts";
import { Reconciler, type BackendDefaults } from "./control/reconcile.ts";
import { DnsDiscovery } from "./discovery/dns.ts";
import { Control, type Actor, type ApplyReport, type ReloadReport } from "./control/control.ts";
import type { Predecessor, UpgradeReport } from "./control/upgrade.ts";
import { ChangeLog } from "./control/changes.ts";
import { ConfigWatcher } from "./control/watch.ts";
import { diffPaths, inForce, restartNeeded } from "./control/diff.ts";
import { resolveWorkers, WorkerSupervisor } from "./workers/supervisor.ts";
import { TlsTermination } from "./tls/termination.ts";
import { readTlsMaterial, serveTls, type TlsMaterial } from "./tls/certificates.ts";
import { serveRedirect } from "./tls/redirect.ts";
import { errorResponse } from "./errors.ts";

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

/** The ports a balancer's listeners are bound to, as a successor needs them. */
export interface ListenPorts {
  proxy: number;
  admin?: number;
  redirect?: number;
}

/** What the admin app and the TCP proxy read: one balancer's live state. */
export interface BalancerContext {
  /** The config in force now: replaced by every reload or API change, never mutated. */
  readonly config: Config;
  readonly pool: Pool;
  readonly traffic: TrafficStats;
  readonly passive: PassiveHealth;
  readonly health: HealthMonitor;
  readonly logger: Logger;
  readonly startedAt: number;
  /** TCP mode's listener-wide totals (connections, bytes); absent in HTTP mode. */
  readonly tcpStats?: TcpStats;
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

export interface Balancer extends BalancerContext {
  /** http://host:port (HTTP mode) or tcp://host:port of the proxy listener. */
  readonly url: string;
  readonly port: number;
  readonly adminUrl: string | undefined;
  /** The ports bound, for a successor (port 0 in the config is a chosen port here). */
  readonly ports: ListenPorts;
  /** Read the config file again and apply it (SIGHUP does this). Throws ControlError when refused. */
  reload(actor?: Actor): Promise<ReloadReport>;
  /**
   * Stop accepting, let in-flight work finish within shutdownGrace (or at once), stop every loop.
   * handover: a successor serves the same ports (`switchyard upgrade`); the admin and redirect
   * listeners stop accepting at once, so that what comes next reaches the successor.
   */
  stop(graceful?: boolean, handover?: boolean): Promise<void>;
}

/** What a Bun.serve fetch handler is: the proxy listener calls the current one of these. */
type ProxyFetch = (req: Request, server: Server<unknown>) => Response | Promise<Response>;

export async function startBalancer(initial: Config, opts: BalancerOptions = {}): Promise<Balancer> {
  const logger = opts.logger ?? consoleLogger();
  const env = opts.env ?? process.env;
  // Before anything starts: a bad token file stops the start-up like any config error.
  const auth = new AdminAuth(await resolveTokens(initial.admin, env));
  let running = initial;

  const pool = new LocalPool(createPolicy(initial.strategy));
  pool.setPanicThreshold(initial.panicThreshold);
  const health = new HealthMonitor(new Map());
  const passive = new PassiveHealth(pool, initial.passive, (b) => health.probes(b));
  let socketEngine: SocketEngine | undefined;
  let workers: WorkerSupervisor | undefined;
  // A removed backend's idle upstream connections (socket engine) are closed with it; busy ones
  // finish their exchange and are closed by the engine's idle sweep (timeouts.upstreamIdle).
  // With workers, each closes its own when the next table drops the backend.
  const reconciler = new Reconciler({
    pool, health, passive,
    onRemove: (b) => {
      socketEngine?.closeIdle(b);
      workers?.forget(b);
    },
  }, backendDefaults(initial));
  const changes = new ChangeLog(logger);
  /**
   * The config whose backends the pool follows. Set before a reload's reconcile is queued, so
   * that a DNS change queued meanwhile expands the entries of the config that will be in force.
   */
  let backendsFrom = initial;
  // DNS entries are looked up once before the first reconcile, then on their own timers; a
  // change in their addresses goes through reconcile like a reload.
  const discovery = new DnsDiscovery({
    logger,
    onChange: (lines) => {
      reconciler.reconcile(discovery.expand(backendsFrom), backendDefaults(backendsFrom)).then(
        (r) => changes.record({ what: "dns discovery", by: "dns", from: "resolver", ok: true, detail: [...lines, ...r.lines] }),
        (e: Error) => changes.record({ what: "dns discovery", by: "dns", from: "resolver", ok: false, detail: [...lines, e.message] }),
      );
    },
  });
  await discovery.configure(initial);
  // The first reconcile fills the pool; the probes start below, before the listener opens.
  await reconciler.reconcile(discovery.expand(initial));
  const traffic = new TrafficStats();
  const unsubscribe = pool.onStateChange(({ backend, from, to, reason }) => {
    const line = `backend ${backend.name} ${from} -> ${to}: ${reason}`;
    if (to === "down" || to === "ejected") logger.warn(line);
    else logger.info(line);
  });
  const unsubscribePanic = pool.onPanicChange(({ panic, serving, inService, threshold }) => {
    const share = `${serving} of ${inService} backends in service healthy, threshold ${threshold}%`;
    if (panic) logger.warn(`pool in panic mode (${share}): balancing over every backend in service, healthy or not`);
    else logger.info(`pool out of panic mode (${share})`);
  });
  const tcpStats = initial.mode === "tcp" ? new TcpStats() : undefined;
  /** Shared by every fetch-engine handler this balancer builds (a reload swaps handlers). */
  const lifecycle = { draining: false };
  // TLS termination (src/tls/): certificates read now, and again on every reload.
  const tls = initial.listen.tls !== undefined ? new TlsTermination(initial.listen.tls) : undefined;
  let redirect: Server<unknown> | undefined;

  let accessLogs: Map<string, AccessLog> | undefined;
  let http: HttpListener | undefined;
  let tcp: TcpProxy | undefined;
  let admin: { app: AdminApp; server: Server<unknown> } | undefined;
  let watcher: ConfigWatcher | undefined;

  /** One access log per format, made when first needed and kept to the end (a reload may switch back). */
  const accessLogFor = (config: Config): AccessLog | undefined => {
    if (!config.log.access) return undefined;
    accessLogs ??= new Map();
    let log = accessLogs.get(config.log.format);
    if (!log) accessLogs.set(config.log.format, (log = createAccessLog(config.log.format, opts.accessLogSink)));
    return log;
  };

  /**
   * Apply a validated config to the running balancer: policies, passive health, the backends
   * (through reconcile), the proxy's settings (a new handler swapped in), the admin tokens.
   * What needs a restart is reported and left as it runs. Throws before changing anything when
   * the new admin token sources cannot be read.
   */
  const apply = async (next: Config): Promise<ApplyReport> => {
    const tokens = await resolveTokens(next.admin, env);
    const prev = running;
    const later = restartNeeded(prev, next);
    const target = inForce(prev, next);
    const lines = diffPaths(withoutBackends(prev), withoutBackends(target));
    if (prev.strategy !== target.strategy) pool.setPolicy(createPolicy(target.strategy));
    passive.configure(target.passive);
    pool.setPanicThreshold(target.panicThreshold);
    // New DNS entries are looked up first, so that their backends arrive with the reload.
    await discovery.configure(target);
    backendsFrom = target;
    const r = await reconciler.reconcile(discovery.expand(target), backendDefaults(target));
    lines.push(...r.lines);
    if (tls !== undefined && target.listen.tls !== undefined) lines.push(...tls.reload(target.listen.tls));
    if (proxySettings(prev) !== proxySettings(target)) {
      if (http) http.setProxy(buildProxy(target, ctx, accessLogFor(target), lifecycle));
      socketEngine?.reconfigure(socketSettings(target, ctx, accessLogFor(target)));
      tcp?.configure(target);
    }
    auth.set(tokens);
    running = target;
    // The workers take the same config in place, and the new backend table (weights, limits).
    workers?.configure(target);
    return { lines, restartNeeded: later };
  };

  const control = new Control({
    pool, reconciler, changes, apply,
    config: () => running,
    load: opts.load,
    file: opts.file,
  });

  const ctx: BalancerContext = {
    get config() {
      return running;
    },
    pool, traffic, passive, health, logger, startedAt: Date.now(), tcpStats, control, changes, auth,
    get workers() {
      return workers;
    },
    refresh: () => workers?.pull() ?? Promise.resolve(),
    upgrade: opts.upgrade,
  };

  for (const b of pool.backends) {
    const check = health.checkOf(b);
    const how = check ? `${check.type} check ${check.type === "http" ? check.path + " " : ""}every ${check.interval}ms` : "no active check";
    logger.info(`backend ${b.name} ${b.url.href} weight ${b.weight} (${how})`);
  }
  // Start-up probes run before the listener opens: traffic goes only to backends not known down.
  await health.start();
  passive.startSweeps();

  let stopping: Promise<void> | undefined;
  const stop = (graceful = true, handover = false): Promise<void> => {
    stopping ??= (async () => {
      // From now on every fetch-engine answer carries Connection: close (the socket engine
      // does the same in its own drain), so that no keep-alive client sends a request on a
      // connection that is about to close.
      lifecycle.draining = true;
      watcher?.stop();
      control.stop();
      const discoveryStopped = discovery.stop();
      // Aborted probes settle asynchronously; awaited below so that nothing outlives stop().
      const healthStopped = health.stop();
      passive.stop();
      unsubscribe();
      unsubscribePanic();
      unlistenWorkers();
      void redirect?.stop(!handover);
      // Requests in flight on it (POST /api/upgrade's answer) finish; new ones go to the successor.
      if (handover) void admin?.server.stop(false);
      // Workers drain themselves within the same grace, then cut what is left.
      await stopProxy({ http, socketEngine, tcp, workers }, graceful, running.timeouts.shutdownGrace, logger, handover);
      await admin?.app.stop();
      await admin?.server.stop(true);
      for (const log of accessLogs?.values() ?? []) await log.close();
      await Promise.all([healthStopped, discoveryStopped]);
    })();
    return stopping;
  };

  let url: string;
  let adminUrl: string | undefined;
  // A listener that cannot start (a port in use) must not leave probes and timers running.
  const workerCount = resolveWorkers(initial.workers);
  let unlistenWorkers = () => {};
  let workersPort = 0;
  const ports: ListenPorts = { proxy: 0 };
  /**
   * The port a listener binds, with SO_REUSEPORT. Started fresh: claimed exclusively first, so
   * that a port in use fails the start (and port 0 becomes one port for all who bind it). As a
   * successor: the predecessor holds it, and its port stands in for a configured 0.
   */
  const portFor = (name: ListenerName, host: string, port: number): number => {
    const pred = opts.predecessor;
    if (pred === undefined) return claimPort(name, host, port);
    return port !== 0 ? port : (pred.ports[name] ?? 0);
  };
  try {
    if (workerCount > 1) {
      // This process owns the backends and the admin port; the workers serve the proxy port,
      // claimed here (portFor) and handed to them.
      const { host } = initial.listen;
      const port = (workersPort = portFor("proxy", host, initial.listen.port));
      workers = new WorkerSupervisor({ count: workerCount, pool, passive, traffic, tcpStats, logger, config: () => running });
      // Besides state changes (which the supervisor follows itself), every operation recorded
      // here (a forced health that leaves the state as it was, say) sends the table if it moved.
      const sup = workers;
      unlistenWorkers = changes.onChange(() => sup.publish());
      await workers.start(port);
      url = `${initial.mode === "tcp" ? (tls ? "tls" : "tcp") : tls ? "https" : "http"}://${hostForUrl(host)}:${port}`;
    } else if (initial.mode === "tcp") {
      const port = portFor("proxy", initial.listen.host, initial.listen.port);
      tcp = await startTcpProxy(ctx, { port, reusePort: true, stats: tcpStats, tls: tls?.material }).catch((e: unknown) => {
        throw listenError("proxy", initial.listen.host, initial.listen.port, e);
      });
      tls?.onRenew((m) => tcp?.renewTls(m));
      url = `${tls ? "tls" : "tcp"}://${hostForUrl(initial.listen.host)}:${tcp.port}`;
    } else if (initial.engine === "socket") {
      const at = { port: portFor("proxy", initial.listen.host, initial.listen.port), reusePort: true };
      socketEngine = serveSockets(initial, ctx, accessLogFor(initial), at, tls?.material);
      tls?.onRenew((m) => socketEngine?.renewTls(m));
      url = `${tls ? "https" : "http"}://${hostForUrl(initial.listen.host)}:${socketEngine.port}`;
    } else {
      await startFetchClient();
      const at = { port: portFor("proxy", initial.listen.host, initial.listen.port), reusePort: true };
      http = serveHttp(initial, buildProxy(initial, ctx, accessLogFor(initial), lifecycle), at, tls?.material);
      tls?.onRenew((m) => http?.renewTls(m));
      url = `${tls ? "https" : "http"}://${hostForUrl(initial.listen.host)}:${http.server.port}`;
    }
    const redirectFrom = initial.listen.httpRedirect;
    if (redirectFrom !== undefined && tls !== undefined) {
      const host = redirectFrom.host ?? initial.listen.host;
      const proxyPort = workers ? workersPort : (tcp?.port ?? socketEngine?.port ?? http!.server.port!);
      const port = portFor("redirect", host, redirectFrom.port);
      redirect = bindListener("redirect", host, port, () => serveRedirect(host, port, () => proxyPort));
      ports.redirect = redirect.port;
      logger.info(`redirecting http://${hostForUrl(host)}:${redirect.port} to HTTPS`);
    }
    const engine = initial.mode === "http" ? ` on the ${initial.engine} engine` : "";
    const served = workers ? `, ${workers.count} worker processes` : "";
    logger.info(`${initial.mode} proxy listening on ${url} (strategy ${initial.strategy})${engine}${served}`);
    if (initial.admin !== false) {
      const app = createAdminApp(ctx, { allowedHosts: initial.admin.allowedHosts });
      admin = { app, server: serveAdmin(initial.admin.host, portFor("admin", initial.admin.host, initial.admin.port), app) };
      ports.admin = admin.server.port;
      adminUrl = `http://${hostForUrl(initial.admin.host)}:${admin.server.port}`;
      logger.info(`admin listening on ${adminUrl} (dashboard /, /stats, /metrics, /healthz, /readyz, /api)`);
      if (!isLoopback(initial.admin.host)) {
        logger.warn(
          `admin listener on ${initial.admin.host} is not a loopback address: anyone who can reach it can read /stats, /metrics, /events and GET /api; ` +
            (auth.configured ? "changes through /api need the token" : "changes through /api are off until a token is configured"),
        );
      }
      if (!auth.configured) logger.info(`admin API: read-only (set admin.token, admin.tokenFile or ${TOKEN_ENV} to allow changes)`);
    }
    if (opts.watch) {
      if (!opts.file) throw new Error("watch needs the config file");
      watcher = new ConfigWatcher(opts.file, () => {
        control.reload({ by: "file watch", from: "local" }).catch(() => {
          // Refused: already logged and shown in /stats with its problems.
        });
      });
      watcher.start();
      logger.info(`watching ${opts.file} for changes`);
    }
  } catch (e) {
    await stop(false);
    throw e;
  }

  const port = workers ? workersPort : (tcp?.port ?? socketEngine?.port ?? http!.server.port!);
  ports.proxy = port;
  return Object.defineProperties(
    { url, port, ports, adminUrl, stop, reload: (actor: Actor = { by: "local", from: "local" }) => control.reload(actor) },
    Object.getOwnPropertyDescriptors(ctx),
  ) as Balancer;
}

/**
 * How long a stopping fetch-engine listener goes on answering, every answer with Connection:
 * close, before Bun.serve's stop() closes the connections idle at that moment. A keep-alive
 * client sends its next request within moments of an answer; a connection closed in that gap
 * loses the request already on its way (1 in 14 runs of test/shutdown.test.ts lost one).
 * Given a moment, a busy client is told to close by its next answer, and only connections
 * really idle are closed. HAProxy's `grace` keeps a stopping listener open for the same reason.
 */
const DRAIN_NOTICE_MS = 250;

async function noticeThenStop(server: Server<unknown>, noticeMs: number): Promise<void> {
  await Bun.sleep(noticeMs);
  await server.stop(false);
}

/** The proxy's listeners in one process, or the worker processes that serve them. */
export interface ProxyParts {
  http?: HttpListener;
  socketEngine?: SocketEngine;
  tcp?: TcpProxy;
  workers?: WorkerSupervisor;
}

/**
 * Stop the proxy side: graceful, stop accepting and let in-flight work finish within `grace`,
 * then cut what is left (and say so); else cut everything now. One process and each worker
 * stop the same way (src/workers/worker.ts calls this too). handover: a successor serves the
 * same ports (`switchyard upgrade`); the socket engine then closes its listener before telling
 * any client to reconnect (see SocketEngine.stop). Bun.serve cannot close its listener apart
 * from its idle connections, so the fetch engine stops as it always does.
 */
export async function stopProxy(parts: ProxyParts, graceful: boolean, grace: number, logger: Logger, handover = false): Promise<void> {
  const { http, socketEngine, tcp, workers } = parts;
  // Every worker of this generation stops accepting before any of them drains (see unlisten).
  if (handover && graceful) await workers?.unlisten();
  const proxyServer = http?.server;
  const notice = Math.min(DRAIN_NOTICE_MS, grace);
  const httpStopped = Promise.all([
    proxyServer && graceful ? noticeThenStop(proxyServer, notice) : proxyServer?.stop(!graceful),
    // Servers a certificate renewal replaced (src/tls/): they finish what they hold too.
    http?.stopRetired(!graceful),
  ]);
  const closeAll = Promise.all([httpStopped, socketEngine?.stop(!graceful, notice, handover), tcp?.stop(!graceful), workers?.stop(!graceful, grace, handover)]);
  if (!graceful) {
    await closeAll;
    return;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), grace)));
  if ((await Promise.race([closeAll, late])) === "late") {
    logger.warn(`shutdown: in-flight work still running after ${grace}ms; closing it`);
    await Promise.all([proxyServer?.stop(true), http?.stopRetired(true), socketEngine?.stop(true), tcp?.stop(true), workers?.stop(true, 0)]);
  }
  clearTimeout(timer);
}

/** The settings that shape every backend; a reload hands the new ones to reconcile. */
function backendDefaults(c: Config): BackendDefaults {
  return { healthCheck: c.healthCheck, slowStart: c.slowStart, latencyDecay: c.peakEwma.decay };
}

function withoutBackends(c: Config): Record<string, unknown> {
  const { backends: _, ...rest } = c;
  return rest;
}

/** What the proxy handler is built from: when this changes, a reload builds a new handler. */
function proxyFields(c: Config) {
  return {
    retry: c.retry, limits: c.limits, timeouts: c.timeouts, log: c.log, trustedProxies: c.trustedProxies, preserveHost: c.preserveHost,
    hash: c.hash, sticky: c.sticky, responseHeaders: c.responseHeaders,
  };
}

export function proxySettings(c: Config): string {
  return JSON.stringify(proxyFields(c));
}

/**
 * What a proxy listener reads of its balancer: the pool to choose from, where to report what
 * traffic says about backends, where to count. A worker process (src/workers/) has its own.
 */
export interface ProxyContext {
  readonly pool: Pool;
  readonly passive: PassiveSignals;
  readonly traffic: TrafficStats;
  readonly logger: Logger;
}

/** Where a proxy listener binds: workers share one port (SO_REUSEPORT). */
export interface ListenAt {
  port: number;
  reusePort: boolean;
}

/**
 * The certificates of listen.tls, read now: for listeners started without them (a worker
 * process reads its own when it starts; renewing them on reload is the single process's).
 */
function configuredTls(config: Config): TlsMaterial | undefined {
  return config.listen.tls !== undefined ? readTlsMaterial(config.listen.tls) : undefined;
}

/** "https" when the proxy listener terminates TLS: X-Forwarded-Proto, the sticky cookie's Secure. */
function protoOf(config: Config): "http" | "https" {
  return config.listen.tls !== undefined ? "https" : "http";
}

/** What both HTTP engines' forwarding loops are built from. */
function forwardOptions(config: Config, ctx: ProxyContext, accessLog: AccessLog | undefined) {
  return {
    pool: ctx.pool, passive: ctx.passive, traffic: ctx.traffic, accessLog,
    trusted: cidrMatcher(config.trustedProxies),
    preserveHost: config.preserveHost,
    responseHeaders: compileResponseHeaderRules(config.responseHeaders),
    retry: config.retry,
    hashKey: config.hash ? hashKeyExtractor(config.hash.key) : undefined,
    sticky: config.sticky ? new StickySessions(ctx.pool, config.sticky) : undefined,
    sendTimeout: config.timeouts.send,
  };
}

/** The layer-7 listener of the socket engine: Bun.listen, HTTP/1.1 parsed by llhttp, pooled upstream keep-alive. */
export function serveSockets(config: Config, ctx: ProxyContext, accessLog: AccessLog | undefined, at?: ListenAt, tls = configuredTls(config)): SocketEngine {
  const port = at?.port ?? config.listen.port;
  return bindListener("proxy", config.listen.host, port, () =>
    startSocketEngine({ ...socketSettings(config, ctx, accessLog), host: config.listen.host, port, reusePort: at?.reusePort ?? false, tls }),
  );
}

/** Everything of the socket engine a reload may change. */
export function socketSettings(config: Config, ctx: ProxyContext, accessLog: AccessLog | undefined): SocketEngineSettings {
  const { limits, timeouts } = config;
  return {
    ...forwardOptions(config, ctx, accessLog),
    // The fetch engine's gate exists for Bun's fetch pool (64 idle connections); this engine
    // keeps its own pool per backend, so it needs none.
    upstreamConcurrency: 0,
    limits: {
      maxHeaderSize: limits.maxHeaderSize, maxUriLength: limits.maxUriLength, maxBodySize: limits.maxBodySize,
      bufferBody: config.retry.bufferBody, maxPipeline: limits.maxPipeline, maxConnections: limits.maxConnections,
    },
    upstream: {
      maxIdlePerBackend: limits.upstreamKeepalive, idleTimeoutMs: timeouts.upstreamIdle,
      connectTimeoutMs: timeouts.connect, maxHeaderSize: limits.maxHeaderSize,
    },
    headerTimeout: timeouts.header,
    idleTimeout: timeouts.idle,
    logger: ctx.logger,
  };
}

/**
 * The layer-7 request handler for one config: a Hono app whose catch-all route is the
 * forwarder. Built at start and again whenever a reload changes a proxy setting; the listener
 * calls whichever is current (see serveHttp), so the per-request path reads no mutable config.
 */
export function buildProxy(config: Config, ctx: ProxyContext, accessLog: AccessLog | undefined, lifecycle: { readonly draining: boolean }): ProxyFetch {
  const { logger } = ctx;
  const handler = createFetchHandler({
    ...forwardOptions(config, ctx, accessLog),
    responseBuffer: config.limits.responseBuffer,
    upstreamConcurrency: config.limits.upstreamConcurrency,
    uploadConcurrency: config.limits.uploadConcurrency,
    longWaitAfter: config.limits.longWaitAfter,
    longWaitConcurrency: config.limits.longWaitConcurrency,
    idleTimeoutSec: Math.ceil(config.timeouts.idle / 1000),
    maxBodySize: config.limits.maxBodySize,
    maxHeaderSize: config.limits.maxHeaderSize,
    lifecycle,
    proto: protoOf(config),
  });
  const app = new Hono<{ Bindings: { server: Server<unknown> } }>();
  app.all("*", (c) => handler(c.req.raw, c.env.server));
  app.onError((err) => {
    // A bug, not a backend failure (those are answered by the handler): log it, answer 500.
    logger.error(`proxy: ${err.stack ?? err}`);
    return errorResponse("SY_INTERNAL", "internal error");
  });
  return (req, server) => app.fetch(req, { server });
}

export interface HttpListener {
  /** The listener taking new connections now. */
  readonly server: Server<unknown>;
  /**
   * Renewed certificates. Bun.serve cannot change its own (server.reload() swaps handlers only,
   * checked on 1.4.5): the running server stops accepting (what it holds finishes on it, in-flight
   * requests and WebSockets alike) and a new one with the new certificates opens on the same port
   * at once. A connection attempt in between, a few microseconds, would be refused.
   */
  renewTls(m: TlsMaterial): void;
  /** Servers replaced by renewTls that still finish what they hold: resolves when they have (force: cut them). */
  stopRetired(force: boolean): Promise<void>;
  /**
   * The one place a new proxy handler takes over: requests from now on go to it; those in
   * flight finish on the one they started with. (Each handler has its own upstream admission
   * gate, so for the moment of a swap the old and the new gate may together admit up to twice
   * limits.upstreamConcurrency.)
   */
  setProxy(proxy: ProxyFetch): void;
}

/** The layer-7 listener. Its socket options are fixed here; the handler can be swapped. */
export function serveHttp(config: Config, proxy: ProxyFetch, at?: ListenAt, tls = configuredTls(config)): HttpListener {
  let current = proxy;
  const open = (port: number, m: TlsMaterial | undefined) => bindListener("proxy", config.listen.host, port, () => Bun.serve({
    hostname: config.listen.host,
    port,
    ...(m !== undefined ? { tls: serveTls(m) } : {}),
    // A second balancer must not silently share the port (Bun turns SO_REUSEPORT on when
    // development is false): a balancer claims it exclusively first (claimPort), then binds it
    // with SO_REUSEPORT to share it with its workers or its successor (`switchyard upgrade`).
    reusePort: at?.reusePort ?? false,
    development: false,
    idleTimeout: Math.ceil(config.timeouts.idle / 1000),
    maxRequestBodySize: config.limits.maxBodySize,
    fetch: (req, server) => current(req, server),
    // WebSockets (engine/fetch/websocket.ts); a forced stop closes them with 1001.
    websocket: bridgeHandlers as import("bun").WebSocketHandler<unknown>,
  }));
  let server = open(at?.port ?? config.listen.port, tls);
  /** Servers that stopped accepting on a renewal and still finish what they hold. */
  const retiring = new Set<Server<unknown>>();
  return {
    get server() {
      return server;
    },
    setProxy(next) {
      current = next;
    },
    renewTls(m) {
      const old = server;
      // Read before the stop: a stopped server reports no port.
      const port = old.port!;
      retiring.add(old);
      void old.stop().then(() => retiring.delete(old));
      server = open(port, m);
    },
    async stopRetired(force) {
      await Promise.all([...retiring].map((s) => s.stop(force)));
    },
  };
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

function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
