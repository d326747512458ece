/**
 * What GET /readyz decides: whether this balancer should get traffic.
 *
 * Ready when at least one pool that takes traffic (a route served by a listener forwards to it,
 * or it is a TCP listener's own pool: topology.ts servedPools) has an available backend; with
 * no such pool at all (every route redirects or responds), ready. With one pool this is what it
 * always was: ready while a backend is available.
 *
 * Why not "every pool": the balancer's replicas share their backends, so a pool with none
 * available is down behind every replica alike, and taking replicas out of rotation for it only
 * takes the other services down with it. Envoy's /ready likewise reflects the proxy, not its
 * clusters, and gating on a cluster is opt-in (the health check filter's
 * cluster_min_healthy_percentages names the clusters); HAProxy's monitor-uri fails only on the
 * conditions written for it (`monitor fail if { nbsrv(be_api) lt 1 }`). The same opt-in here:
 * `/readyz?pool=api&pool=web` is ready only while each pool named has an available backend.
 */
import { poolsOf, servedPools, type PoolsSource, type PoolView } from "./topology.ts";

export interface PoolReadiness {
  name: string;
  available: number;
  total: number;
}

export interface ReadinessReport {
  ready: boolean;
  /** Backends available, and in all, over the pools considered. */
  available: number;
  total: number;
  /** With several pools, or pools named in the query: each pool considered. */
  pools?: PoolReadiness[];
  /** The pools considered that have no available backend. */
  unavailable?: string[];
}

export type Readiness = { ok: true; report: ReadinessReport } | { ok: false; unknown: string[]; known: string[] };

/** `required`: the pools named by the query (empty: the default rule above). */
export function readiness(src: PoolsSource, required: readonly string[], now = Date.now()): Readiness {
  const pools = poolsOf(src);
  let considered: PoolView[];
  if (required.length > 0) {
    const byName = new Map(pools.map((p) => [p.name, p]));
    const unknown = required.filter((n) => !byName.has(n));
    if (unknown.length > 0) return { ok: false, unknown, known: pools.map((p) => p.name) };
    considered = [...new Set(required)].map((n) => byName.get(n)!);
  } else {
    const served = servedPools(src.config, pools);
    considered = pools.filter((p) => served.has(p.name));
  }
  const each = considered.map((p) => ({ name: p.name, available: p.pool.availableCount(now), total: p.pool.backends.length }));
  const unavailable = each.filter((p) => p.available === 0).map((p) => p.name);
  const ready = required.length > 0 ? unavailable.length === 0 : each.length === 0 || unavailable.length < each.length;
  const report: ReadinessReport = {
    ready,
    available: each.reduce((n, p) => n + p.available, 0),
    total: each.reduce((n, p) => n + p.total, 0),
  };
  // One pool and no query: the document it always was.
  if (pools.length > 1 || required.length > 0) {
    report.pools = each;
    report.unavailable = unavailable;
  }
  return { ok: true, report };
}
