/**
 * The pools and routes as the operator sees them: which pools there are (each with its
 * backends), what each route matches and does, which listeners serve it, and which pools take
 * traffic. The admin API, /stats, /metrics and /readyz all read through here, so they name and
 * group things the same way. Everything here is read from the configuration in force and the
 * live pools; nothing is ever taken from a request.
 */
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import type { ListenerConfig } from "../config/schema.ts";
import type { RouteConfig } from "../route/schema.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import type { RetryBudgetConfig } from "../forward/retry.ts";
import { routesServed as routesOf } from "../config/expand.ts";
import type { Mode } from "./tally.ts";

/** One pool as the admin views read it: a PoolRuntime (src/pool/pool-set.ts) fits. */
export interface PoolView {
  readonly name: string;
  readonly pool: Pool;
  readonly config: { readonly mode: Mode; readonly strategy: string; readonly retry?: { readonly budget: RetryBudgetConfig } };
}

/** The pools of a source: a PoolSet's `all` (a PoolSet fits). */
export interface PoolList {
  readonly all: readonly PoolView[];
}

/** Each route's figures by name: a RouteTraffic (src/listener/routing.ts) fits. */
export interface RouteStatsSource {
  entries(): Iterable<[string, TrafficStats]>;
}

/** The part of the config these views read (a Config fits). */
export interface TopologyConfig {
  readonly mode: Mode;
  readonly strategy: string;
  readonly retry?: { readonly budget: RetryBudgetConfig };
  readonly routes?: readonly RouteConfig[];
  readonly listeners?: readonly ListenerConfig[];
  /** Present when tracing is on: /stats and /metrics then show the exporter's counts. */
  readonly tracing?: unknown;
}

/**
 * The balancer's mode as the views count it: "tcp" when every listener relays TCP (totals are
 * then connections), else the config's `mode` ("http" whenever `listeners` is given: a mixed
 * balancer counts requests in its totals, and its TCP listeners' connections in totals.tcp).
 */
export function balancerMode(config: TopologyConfig): Mode {
  const ls = config.listeners;
  return ls !== undefined && ls.length > 0 && ls.every((l) => l.mode === "tcp") ? "tcp" : config.mode;
}

/**
 * What a view needs to find the pools: the balancer's PoolSet, or for a source of one pool (a
 * unit test's, a tool's) that pool alone, which reads as the pool `default` with the top-level
 * mode, strategy and retry budget.
 */
export interface PoolsSource {
  readonly pools?: PoolList;
  readonly pool?: Pool;
  readonly config: TopologyConfig;
}

export function poolsOf(src: PoolsSource): readonly PoolView[] {
  if (src.pools !== undefined) return src.pools.all;
  if (src.pool === undefined) return [];
  return [{ name: "default", pool: src.pool, config: src.config }];
}

/**
 * The name the admin API, `switchyard ctl`, the dashboard and the charts use for a backend:
 * "pool/backend", or the bare name in the pool `default` (the single-pool form, where it is
 * what it always was). Control (src/control/control.ts) resolves both forms.
 */
export function backendId(pool: string, backend: Backend | string, pools: number): string {
  const name = typeof backend === "string" ? backend : backend.name;
  // A bare name is unambiguous only with one pool (Control refuses an ambiguous one).
  return pools === 1 ? name : `${pool}/${name}`;
}

export type RouteAction = "pool" | "split" | "redirect" | "respond";

/** A route as configured, summed up for a table: what it matches, what it does, where it sends. */
export interface RouteSummary {
  name: string;
  /** "host api.example.com · path /v1"; "every request" for an empty match. */
  match: string;
  action: RouteAction;
  /** The pools it forwards to (one for `pool`, the split's for `split`; none for redirect and respond). */
  pools: string[];
  /** With `split`: each pool's weight. */
  split: { pool: string; weight: number }[] | null;
  /** With `redirect`: the Location template and status; with `respond`: the status. */
  target: string | null;
  mirror: { pool: string; percent: number } | null;
  /** The listeners that serve it (HTTP: as src/listener/routing.ts routesOf; TCP: its SNI routes). */
  listeners: string[];
  /** A TCP route chosen by the TLS server name (match.sni). */
  sni: boolean;
}

export function routeAction(r: RouteConfig): RouteAction {
  if (r.split !== undefined) return "split";
  if (r.redirect !== undefined) return "redirect";
  if (r.respond !== undefined) return "respond";
  return "pool";
}

/** The pools a route forwards to: its pool, or each pool of its split (weight 0 included: clients pinned there may still go). */
export function routePools(r: RouteConfig): string[] {
  if (r.pool !== undefined) return [r.pool];
  if (r.split !== undefined) return r.split.map((s) => s.pool);
  return [];
}

/** The match in one line, in the config's own words. */
export function matchSummary(r: RouteConfig): string {
  const m = r.match ?? {};
  const parts: string[] = [];
  const list = (xs: readonly string[]) => xs.join(", ");
  if (m.sni !== undefined) parts.push(`sni ${list(m.sni)}`);
  if (m.host !== undefined) parts.push(`host ${list(m.host)}`);
  if (m.path !== undefined) parts.push(`path ${m.path}`);
  if (m.pathExact !== undefined) parts.push(`pathExact ${m.pathExact}`);
  if (m.pathRegex !== undefined) parts.push(`pathRegex ${m.pathRegex}`);
  if (m.method !== undefined) parts.push(`method ${list(m.method)}`);
  if (m.headers !== undefined) {
    const hs = Object.entries(m.headers).map(([k, v]) => (v === true ? k : v === false ? `!${k}` : typeof v === "string" ? `${k}=${v}` : `${k}~${v.regex}`));
    parts.push(`headers ${list(hs)}`);
  }
  if (m.query !== undefined) parts.push(`query ${list(Object.entries(m.query).map(([k, v]) => (v === true ? k : `${k}=${v}`)))}`);
  if (m.clientIp !== undefined) parts.push(`clientIp ${list(m.clientIp)}`);
  return parts.length > 0 ? parts.join(" · ") : "every request";
}

/** The SNI routes a TCP listener chooses among: those it names, else every route with match.sni (as src/listener/tcp.ts). */

/** Route name -> the listeners that serve it. */
function listenersByRoute(config: TopologyConfig): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const routes = config.routes ?? [];
  for (const l of config.listeners ?? []) {
    const served = routesOf({ routes: [...routes] }, l);
    for (const r of served) {
      const names = out.get(r.name) ?? [];
      names.push(l.name);
      out.set(r.name, names);
    }
  }
  return out;
}

/**
 * Summaries by the config's routes and listeners: a config is replaced on a change, never
 * changed in place, so the summaries of one are made once, not on every tick of the dashboard.
 */
const summaries = new WeakMap<readonly RouteConfig[], WeakMap<readonly ListenerConfig[], RouteSummary[]>>();
const NO_LISTENERS: readonly ListenerConfig[] = [];

/** The routes of the config, in order, summed up (the result is shared: copy before changing it). */
export function routeSummaries(config: TopologyConfig): readonly RouteSummary[] {
  const routes = config.routes;
  if (routes === undefined) return [];
  const listeners = config.listeners ?? NO_LISTENERS;
  let byListeners = summaries.get(routes);
  if (byListeners === undefined) summaries.set(routes, (byListeners = new WeakMap()));
  let out = byListeners.get(listeners);
  if (out === undefined) byListeners.set(listeners, (out = summarize(config)));
  return out;
}

function summarize(config: TopologyConfig): RouteSummary[] {
  const byRoute = listenersByRoute(config);
  return (config.routes ?? []).map((r) => {
    const action = routeAction(r);
    return {
      name: r.name,
      match: matchSummary(r),
      action,
      pools: routePools(r),
      split: r.split !== undefined ? r.split.map((s) => ({ pool: s.pool, weight: s.weight })) : null,
      target: r.redirect !== undefined ? `${r.redirect.status} ${r.redirect.to}` : r.respond !== undefined ? String(r.respond.status) : null,
      mirror: r.mirror !== undefined ? { pool: r.mirror.pool, percent: r.mirror.percent } : null,
      listeners: byRoute.get(r.name) ?? [],
      sni: r.match?.sni !== undefined,
    };
  });
}

/**
 * The pools that take traffic: those a route served by a listener forwards to, and each TCP
 * listener's own `pool`. A mirror's pool is not one (its answers are thrown away), nor is a
 * pool no route names. Without routes or listeners in the config (a source of one pool): every
 * pool.
 */
export function servedPools(config: TopologyConfig, pools: readonly PoolView[]): Set<string> {
  if (config.routes === undefined || config.listeners === undefined) return new Set(pools.map((p) => p.name));
  const served = new Set<string>();
  const byRoute = listenersByRoute(config);
  for (const r of config.routes) if ((byRoute.get(r.name)?.length ?? 0) > 0) for (const p of routePools(r)) served.add(p);
  for (const l of config.listeners) if (l.mode === "tcp" && l.pool !== undefined) served.add(l.pool);
  return served;
}

/** Who sends to a pool: the routes that forward to it, the TCP listeners whose own pool it is, the routes that mirror to it. */
export interface PoolUsers {
  routes: string[];
  listeners: string[];
  mirroredBy: string[];
}

/** Pool name -> who sends to it. */
export function usersOfPools(config: TopologyConfig): Map<string, PoolUsers> {
  const out = new Map<string, PoolUsers>();
  const of = (p: string) => {
    let u = out.get(p);
    if (u === undefined) out.set(p, (u = { routes: [], listeners: [], mirroredBy: [] }));
    return u;
  };
  for (const r of config.routes ?? []) {
    for (const p of routePools(r)) of(p).routes.push(r.name);
    if (r.mirror !== undefined) of(r.mirror.pool).mirroredBy.push(r.name);
  }
  for (const l of config.listeners ?? []) if (l.mode === "tcp" && l.pool !== undefined) of(l.pool).listeners.push(l.name);
  return out;
}

/** The route figures as a Map (absent: the route is not counted in this process). */
export function routeStatsOf(src: { readonly routes?: RouteStatsSource }): Map<string, TrafficStats> {
  return new Map(src.routes?.entries() ?? []);
}
