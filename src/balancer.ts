/**
 * Assembles one balancer from a validated config: the pool and its policy, health (active and
 * passive), the proxy listener (HTTP or TCP), the admin listener and the logs. Owns every
 * background loop it starts, and stops them all in stop().
 */
import type { Server } from "bun";
import { Hono } from "hono";
import type { Config } from "./config/schema.ts";
import { LocalPool, type Pool } from "./pool/pool.ts";
import type { Backend } from "./pool/backend.ts";
import { createPolicy } from "./policy/policy.ts";
import { PassiveHealth } from "./health/passive.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { resolveCheck, type ResolvedCheck } from "./health/check.ts";
import { createFetchHandler } from "./engine/fetch.ts";
import { startSocketEngine, type SocketEngine } from "./engine/socket/engine.ts";
import { cidrMatcher } from "./proxy/cidr.ts";
import { compileResponseHeaderRules } from "./proxy/headers.ts";
import { TrafficStats } from "./stats/traffic.ts";
import { createAccessLog, type AccessLog, type LineSink } from "./log/access.ts";
import { consoleLogger, type Logger } from "./log/logger.ts";
import { createAdminApp, type AdminApp } from "./admin/app.ts";
import { startTcpProxy, TcpStats, type TcpProxy } from "./tcp/proxy.ts";
import { bindListener, listenError } from "./listen-error.ts";

export interface BalancerOptions {
  logger?: Logger;
  /** Where access-log lines go (stdout by default). */
  accessLogSink?: LineSink;
}

/** What the admin app and the TCP proxy read: one balancer's live state. */
export interface BalancerContext {
  readonly config: Config;
  readonly pool: Pool;
  readonly traffic: TrafficStats;
  readonly passive: PassiveHealth;
  readonly health: HealthMonitor;
  readonly logger: Logger;
  readonly startedAt: number;
  /** TCP mode's listener-wide totals (connections, bytes); absent in HTTP mode. */
  readonly tcpStats?: TcpStats;
}

export interface Balancer extends BalancerContext {
  /** http://host:port (HTTP mode) or tcp://host:port of the proxy listener. */
  readonly url: string;
  readonly port: number;
  readonly adminUrl: string | undefined;
  /** Stop accepting, let in-flight work finish within shutdownGrace (or at once), stop every loop. */
  stop(graceful?: boolean): Promise<void>;
}

export async function startBalancer(config: Config, opts: BalancerOptions = {}): Promise<Balancer> {
  const logger = opts.logger ?? consoleLogger();
  const pool = new LocalPool(
    createPolicy(config.strategy),
    config.backends.map((b) => ({
      name: b.name!, url: b.url, weight: b.weight, maxConnections: b.maxConnections,
      disabled: b.disabled, slowStart: config.slowStart, statsPath: b.statsPath,
    })),
  );
  const checks = new Map<Backend, ResolvedCheck>();
  config.backends.forEach((b, i) => {
    const check = resolveCheck(config.healthCheck, b);
    if (check) checks.set(pool.backends[i]!, check);
  });
  const health = new HealthMonitor(checks);
  const passive = new PassiveHealth(pool, config.passive, (b) => health.probes(b));
  const traffic = new TrafficStats();
  const unsubscribe = pool.onStateChange(({ backend, from, to, reason }) => {
    const line = `backend ${backend.name} ${from} -> ${to}: ${reason}`;
    if (to === "down" || to === "ejected") logger.warn(line);
    else logger.info(line);
  });
  const tcpStats = config.mode === "tcp" ? new TcpStats() : undefined;
  const ctx: BalancerContext = { config, pool, traffic, passive, health, logger, startedAt: Date.now(), tcpStats };

  for (const b of pool.backends) {
    const check = checks.get(b);
    const how = check ? `${check.type} check ${check.type === "http" ? check.path + " " : ""}every ${check.interval}ms` : "no active check";
    logger.info(`backend ${b.name} ${b.url.href} weight ${b.weight} (${how})`);
  }
  // Start-up probes run before the listener opens: traffic goes only to backends not known down.
  await health.start();

  let accessLog: AccessLog | undefined;
  let proxyServer: Server<unknown> | undefined;
  let socketEngine: SocketEngine | undefined;
  let tcp: TcpProxy | undefined;
  let admin: { app: AdminApp; server: Server<unknown> } | undefined;

  let stopping: Promise<void> | undefined;
  const stop = (graceful = true): Promise<void> => {
    stopping ??= (async () => {
      // Aborted probes settle asynchronously; awaited below so that nothing outlives stop().
      const healthStopped = health.stop();
      passive.stop();
      unsubscribe();
      const closeAll = Promise.all([proxyServer?.stop(!graceful), socketEngine?.stop(!graceful), tcp?.stop(!graceful)]);
      if (graceful) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), config.timeouts.shutdownGrace)));
        if ((await Promise.race([closeAll, grace])) === "late") {
          logger.warn(`shutdown: in-flight work still running after ${config.timeouts.shutdownGrace}ms; closing it`);
          await Promise.all([proxyServer?.stop(true), socketEngine?.stop(true), tcp?.stop(true)]);
        }
        clearTimeout(timer);
      } else {
        await closeAll;
      }
      await admin?.app.stop();
      await admin?.server.stop(true);
      await accessLog?.close();
      await healthStopped;
    })();
    return stopping;
  };

  let url: string;
  let adminUrl: string | undefined;
  // A listener that cannot start (a port in use) must not leave probes and timers running.
  try {
    if (config.mode === "tcp") {
      tcp = await startTcpProxy(ctx, { stats: tcpStats }).catch((e: unknown) => {
        throw listenError("proxy", config.listen.host, config.listen.port, e);
      });
      url = `tcp://${hostForUrl(config.listen.host)}:${tcp.port}`;
    } else {
      if (config.log.access) accessLog = createAccessLog(config.log.format, opts.accessLogSink);
      if (config.engine === "socket") socketEngine = serveSockets(ctx, accessLog);
      else proxyServer = serveHttp(ctx, accessLog);
      url = `http://${hostForUrl(config.listen.host)}:${socketEngine?.port ?? proxyServer!.port}`;
    }
    const engine = config.mode === "http" ? ` on the ${config.engine} engine` : "";
    logger.info(`${config.mode} proxy listening on ${url} (strategy ${config.strategy})${engine}`);
    if (config.admin !== false) {
      const app = createAdminApp(ctx, { allowedHosts: config.admin.allowedHosts });
      admin = { app, server: serveAdmin(config.admin, app) };
      adminUrl = `http://${hostForUrl(config.admin.host)}:${admin.server.port}`;
      logger.info(`admin listening on ${adminUrl} (dashboard /, /stats, /metrics, /healthz, /readyz)`);
    }
  } catch (e) {
    await stop(false);
    throw e;
  }

  return { ...ctx, url, port: tcp?.port ?? socketEngine?.port ?? proxyServer!.port!, adminUrl, stop };
}

/** What both HTTP engines' forwarding loops are built from. */
function forwardOptions(ctx: BalancerContext, accessLog: AccessLog | undefined) {
  const { config } = ctx;
  return {
    pool: ctx.pool, passive: ctx.passive, traffic: ctx.traffic, accessLog,
    trusted: cidrMatcher(config.trustedProxies),
    preserveHost: config.preserveHost,
    responseHeaders: compileResponseHeaderRules(config.responseHeaders),
    retry: config.retry,
  };
}

/** The layer-7 listener of the socket engine: Bun.listen, HTTP/1.1 parsed by llhttp, pooled upstream keep-alive. */
function serveSockets(ctx: BalancerContext, accessLog: AccessLog | undefined): SocketEngine {
  const { config } = ctx;
  const { limits, timeouts } = config;
  return bindListener("proxy", config.listen.host, config.listen.port, () => startSocketEngine({
    ...forwardOptions(ctx, accessLog),
    // The fetch engine's gate exists for Bun's fetch pool (64 idle connections); this engine
    // keeps its own pool per backend, so it needs none.
    upstreamConcurrency: 0,
    host: config.listen.host,
    port: config.listen.port,
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
  }));
}

/** The layer-7 listener: a Hono app whose catch-all route is the forwarder. */
function serveHttp(ctx: BalancerContext, accessLog: AccessLog | undefined): Server<unknown> {
  const { config, logger } = ctx;
  const handler = createFetchHandler({
    ...forwardOptions(ctx, accessLog),
    responseBuffer: config.limits.responseBuffer,
    upstreamConcurrency: config.limits.upstreamConcurrency,
    idleTimeoutSec: Math.ceil(config.timeouts.idle / 1000),
  });
  const app = new Hono<{ Bindings: { server: Server<unknown> } }>();
  app.all("*", (c) => handler(c.req.raw, c.env.server));
  app.onError((err) => {
    // A bug, not a backend failure (those are answered by the handler): log it, answer 500.
    logger.error(`proxy: ${err.stack ?? err}`);
    return new Response(JSON.stringify({ error: "SY_INTERNAL", status: 500, message: "internal error" }), {
      status: 500, headers: { "content-type": "application/json" },
    });
  });
  return bindListener("proxy", config.listen.host, config.listen.port, () => Bun.serve({
    hostname: config.listen.host,
    port: config.listen.port,
    // A second balancer must not silently share the port (Bun turns SO_REUSEPORT on when
    // development is false).
    reusePort: false,
    development: false,
    idleTimeout: Math.ceil(config.timeouts.idle / 1000),
    maxRequestBodySize: config.limits.maxBodySize,
    fetch: (req, server) => app.fetch(req, { server }),
  }));
}

/** The admin listener, apart from the proxy port so that it is never reachable through it. */
function serveAdmin(listen: { host: string; port: number }, app: AdminApp): Server<unknown> {
  return bindListener("admin", listen.host, listen.port, () => Bun.serve({
    hostname: listen.host,
    port: listen.port,
    reusePort: false,
    development: false,
    // The dashboard's event stream is long-lived; it sets its own per-request timeout.
    idleTimeout: 30,
    fetch: (req, server) => app.fetch(req, { server }),
  }));
}

function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
