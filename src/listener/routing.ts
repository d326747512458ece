/**
 * Builds one HTTP listener's Router from a config (forward/router.ts): the route table of the
 * routes the listener serves, compiled once, and for each route and each pool it may send to
 * the Destination the forwarding loop reads. Everything here runs at start-up and on a config
 * change, never per request.
 *
 * Pools are reached through `PoolSource`: in one process the balancer's own pools, in a worker
 * process its copies of them (src/workers/). Route figures come from `RouteTraffic`, which
 * keeps a route's counts across reloads while its name stays.
 */
import type { Config, ListenerConfig, PoolConfig } from "../config/schema.ts";
import type { Pool } from "../pool/pool.ts";
import type { PassiveSignals } from "../health/passive.ts";
import { RouteTable } from "../route/table.ts";
import { routesServed } from "../config/expand.ts";
import { Router, type Destination, type PoolTarget, type RetryOptions, type RouteRuntime } from "../forward/router.ts";
import { hashKeyExtractor } from "../policy/hash-key.ts";
import { StickySessions } from "../policy/sticky.ts";
import { compileResponseHeaderRules } from "../http/headers.ts";
import { TrafficStats } from "../stats/traffic.ts";
import type { MirrorFactory } from "./route-modifiers.ts";
import { buildGuards, type GuardState } from "../guard/build.ts";
import type { Logger } from "../log/logger.ts";
import { GRPC_STATUS } from "../errors.ts";
import { ratioThreshold } from "../tracing/sampler.ts";

/** A pool as a listener reaches it: its backends and where traffic reports about them. */
export interface PoolHandle {
  readonly pool: Pool;
  readonly passive: PassiveSignals;
}

export interface PoolSource {
  handle(name: string): PoolHandle;
}

/** Each route's figures by name, kept across reloads while the name stays. */
export class RouteTraffic {
  private readonly byName = new Map<string, TrafficStats>();

  of(name: string): TrafficStats {
    let t = this.byName.get(name);
    if (t === undefined) this.byName.set(name, (t = new TrafficStats()));
    return t;
  }

  /** Forget the routes a config no longer has. */
  keep(names: Iterable<string>): void {
    const keep = new Set(names);
    for (const n of this.byName.keys()) if (!keep.has(n)) this.byName.delete(n);
  }

  entries(): IterableIterator<[string, TrafficStats]> {
    return this.byName.entries();
  }
}


/** Each pool's target, built once per config: its hash key and sticky sessions are the pool's. */
export function poolTargets(config: Config, pools: PoolSource): (name: string) => PoolTarget {
  const targets = new Map<string, PoolTarget>();
  return (name) => {
    let t = targets.get(name);
    if (t !== undefined) return t;
    const pc: PoolConfig = config.pools[name]!;
    const { pool, passive } = pools.handle(name);
    t = {
      name, pool, passive,
      hashKey: pc.hash ? hashKeyExtractor(pc.hash.key) : undefined,
      sticky: pc.sticky ? new StickySessions(pool, pc.sticky) : undefined,
    };
    targets.set(name, t);
    return t;
  };
}

export function buildRouter(config: Config, listener: ListenerConfig, pools: PoolSource, traffic: RouteTraffic, mirrors: MirrorFactory, guardState: GuardState, logger: Logger): Router {
  const routes = routesServed(config, listener);
  const target = poolTargets(config, pools);
  const table = RouteTable.compile(routes, target);
  const global = compileResponseHeaderRules(config.responseHeaders);
  // By each route's index in the table: the table compiled this listener's routes in order.
  const runtimes: RouteRuntime[] = table.routes.map((compiled) => {
    const r = compiled.config;
    const stats = traffic.of(r.name);
    const mirror = compiled.mirror !== undefined ? mirrors.for(r.name, compiled.mirror.pool, config.pools[compiled.mirror.pool.name]!.retry.timeout) : undefined;
    const dests = new Map<PoolTarget, Destination>();
    const overrides: Partial<RetryOptions> & { bufferBody?: number } = compiled.retry ?? {};
    const sendOverride = compiled.timeouts?.send;
    const maxBodySize = compiled.limits?.maxBodySize ?? config.limits.maxBodySize;
    const requestHeaders = compiled.requestHeaders?.empty === false ? compiled.requestHeaders : undefined;
    const responseHeaders = compiled.responseHeaders?.empty === false ? compiled.responseHeaders : undefined;
    const guards = buildGuards(r, { config, logger, state: guardState });
    const traceThreshold = r.tracing !== undefined ? ratioThreshold(r.tracing.sampleRatio) : undefined;
    return {
      name: r.name,
      maxBodySize,
      bufferBody: overrides.bufferBody ?? config.retry.bufferBody,
      traffic: stats,
      destination(pool: PoolTarget): Destination {
        let d = dests.get(pool);
        if (d !== undefined) return d;
        const pc = config.pools[pool.name]!;
        const { bufferBody, ...retry } = { ...pc.retry, ...definedOnly(overrides) };
        d = {
          route: r.name, target: pool, retry, retryOn: new Set(retry.onStatus), retryOnGrpc: new Set(retry.onGrpcStatus.map((n) => GRPC_STATUS[n])), bufferBody,
          sendTimeout: sendOverride ?? pc.timeouts.send,
          requestHeaders, responseHeaders: global, routeResponseHeaders: responseHeaders,
          mirror, traffic: stats, guards, traceThreshold,
        };
        dests.set(pool, d);
        return d;
      },
    };
  });
  // A plain-HTTP listener answers ACME's HTTP-01 requests for every listener that uses ACME (port 80 may be any of them).
  const acme = listener.tls === undefined && config.acme !== undefined && config.listeners.some((l) => l.tls?.acme !== undefined) ? config.acme.storage : undefined;
  return new Router(table, runtimes, { maxBodySize: config.limits.maxBodySize, bufferBody: config.retry.bufferBody }, acme);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
