/**
 * The figures of several workers as one balancer's: each worker reports its cumulative counters
 * (reportOf), and the owner sums the latest report of every worker, plus what workers that died
 * had reported last, into its own TrafficStats, TcpStats, each route's TrafficStats and each
 * Backend's stats (Summer). The admin port reads those objects as in a single process: /stats,
 * /metrics (histograms merged bucket by bucket), /events and the dashboard need no change.
 *
 * Backends are summed by pool and name (two pools may each have a `backend-1`), routes by name.
 *
 * What the owner counts itself, never summed: ejections, and connect failures as passive health
 * hears of them (once per reported event); a worker's own count of connect failures (a TCP
 * connect that timed out) is added to the latter.
 */
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import type { Histogram } from "../stats/histogram.ts";
import { emptyLocalErrors, METHOD_LABELS, type TrafficStats } from "../stats/traffic.ts";
import { LOCAL_CODES } from "../net/network-error.ts";
import { TracingCounts, tracingFiguresOf, type TracingFigures } from "../tracing/counts.ts";
import type { TcpStats } from "../tcp/stats.ts";
import type { BackendFigures, HistogramFigures, PoolFigures, Report, TrafficFigures } from "./protocol.ts";

const TRACING_KEYS: readonly (keyof TracingFigures)[] = ["exported", "dropped", "failed", "exports", "exportFailures"];

/** Pools by name, as a worker holds its copies and the owner its PoolSet. */
export type NamedPools = Iterable<readonly [string, Pool]>;

function histogramOf(h: Histogram): HistogramFigures {
  return { counts: Array.from(h.counts), count: h.count, sum: h.sum };
}

function byMethodOf(m: Readonly<Record<string, readonly number[]>>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const k of METHOD_LABELS) out[k] = [...m[k]!];
  return out;
}

function trafficOf(t: TrafficStats): TrafficFigures {
  return {
    requests: t.requests, byMethod: byMethodOf(t.byMethod) as TrafficFigures["byMethod"],
    proxyErrors: { ...t.proxyErrors }, localErrors: { ...t.localErrors }, retries: t.retries, queued: t.queued,
    accessLogDropped: t.accessLogDropped, latency: histogramOf(t.latency),
    tracing: tracingFiguresOf(t.tracing),
  };
}

function backendOf(b: Backend): BackendFigures {
  const s = b.stats;
  return {
    inFlight: b.inFlight, acquired: b.acquired, requests: s.requests, byClass: [...s.byClass],
    byMethod: byMethodOf(s.byMethod) as BackendFigures["byMethod"], proxyErrors: s.proxyErrors, retries: s.retries,
    connectFailures: s.connectFailures, bytesIn: s.bytesIn, bytesOut: s.bytesOut, latency: histogramOf(s.latency),
  };
}

/** A worker's figures now: its totals, each pool's (backends, panic picks, retry budget), each route's, TCP's. */
export function reportOf(traffic: TrafficStats, pools: NamedPools, routes: Iterable<readonly [string, TrafficStats]> = [], tcp?: TcpStats): Report {
  const out: Report = { traffic: trafficOf(traffic), pools: {}, routes: {} };
  if (tcp) out.tcp = { ...tcp } as unknown as Record<string, number>;
  for (const [name, pool] of pools) {
    const f: PoolFigures = { backends: {}, panicPicks: pool.panic.picks, retryBudgetExhausted: pool.retryBudget.exhausted };
    for (const b of pool.backends) f.backends[b.name] = backendOf(b);
    out.pools[name] = f;
  }
  for (const [name, t] of routes) out.routes[name] = trafficOf(t);
  return out;
}

/**
 * The counters a report is sent for when any of them moved (every other figure moves with one
 * of these): answers, retries, and per backend tries, connections and work in flight.
 */
export function activity(traffic: TrafficStats, pools: NamedPools, tcp?: TcpStats): number[] {
  const out = [traffic.requests, traffic.retries];
  for (const [, pool] of pools) {
    out.push(pool.backends.length);
    for (const b of pool.backends) out.push(b.acquired, b.inFlight, b.stats.requests, b.stats.proxyErrors, b.stats.bytesIn, b.stats.bytesOut);
  }
  if (tcp) out.push(tcp.accepted, tcp.open, tcp.bytesIn, tcp.bytesOut, tcp.rejected, tcp.unreachable);
  return out;
}

export function sameActivity(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Counters of a backend, as summed: reports of every worker plus what dead workers left. */
type Sums = Omit<BackendFigures, "inFlight">;

function emptySums(): Sums {
  const byMethod = {} as BackendFigures["byMethod"];
  for (const k of METHOD_LABELS) byMethod[k] = [0, 0, 0, 0, 0, 0];
  return { acquired: 0, requests: 0, byClass: [0, 0, 0, 0, 0, 0], byMethod, proxyErrors: 0, retries: 0, connectFailures: 0, bytesIn: 0, bytesOut: 0, latency: { counts: [], count: 0, sum: 0 } };
}

function addHistogram(into: HistogramFigures, h: HistogramFigures): void {
  for (let i = 0; i < h.counts.length; i++) into.counts[i] = (into.counts[i] ?? 0) + h.counts[i]!;
  into.count += h.count;
  into.sum += h.sum;
}

function addBackend(into: Sums, f: Sums): void {
  into.acquired += f.acquired;
  into.requests += f.requests;
  for (let i = 0; i < 6; i++) into.byClass[i]! += f.byClass[i] ?? 0;
  for (const k of METHOD_LABELS) for (let i = 0; i < 6; i++) into.byMethod[k][i]! += f.byMethod[k]?.[i] ?? 0;
  into.proxyErrors += f.proxyErrors;
  into.retries += f.retries;
  into.connectFailures += f.connectFailures;
  into.bytesIn += f.bytesIn;
  into.bytesOut += f.bytesOut;
  addHistogram(into.latency, f.latency);
}

function emptyTraffic(): TrafficFigures {
  const byMethod = {} as TrafficFigures["byMethod"];
  for (const k of METHOD_LABELS) byMethod[k] = [0, 0, 0, 0, 0, 0];
  return {
    requests: 0, byMethod, proxyErrors: {} as TrafficFigures["proxyErrors"], localErrors: emptyLocalErrors(),
    retries: 0, queued: 0, accessLogDropped: 0, latency: { counts: [], count: 0, sum: 0 }, tracing: tracingFiguresOf(new TracingCounts()),
  };
}

function addTraffic(into: TrafficFigures, t: TrafficFigures): void {
  into.requests += t.requests;
  for (const k of METHOD_LABELS) for (let i = 0; i < 6; i++) into.byMethod[k][i]! += t.byMethod[k]?.[i] ?? 0;
  for (const [code, n] of Object.entries(t.proxyErrors) as [keyof TrafficFigures["proxyErrors"], number][]) into.proxyErrors[code] = (into.proxyErrors[code] ?? 0) + n;
  for (const code of LOCAL_CODES) into.localErrors[code] += t.localErrors?.[code] ?? 0;
  into.retries += t.retries;
  for (const k of TRACING_KEYS) into.tracing![k] += t.tracing?.[k] ?? 0;
  into.queued = (into.queued ?? 0) + (t.queued ?? 0);
  into.accessLogDropped = (into.accessLogDropped ?? 0) + (t.accessLogDropped ?? 0);
  addHistogram(into.latency, t.latency);
}

function setHistogram(h: Histogram, f: HistogramFigures): void {
  h.counts.fill(0);
  for (let i = 0; i < h.counts.length && i < f.counts.length; i++) h.counts[i] = f.counts[i]!;
  h.count = f.count;
  h.sum = f.sum;
}

/** Write summed figures into a TrafficStats (the owner's totals, or a route's). */
function setTraffic(traffic: TrafficStats, t: TrafficFigures): void {
  traffic.requests = t.requests;
  for (const k of METHOD_LABELS) for (let i = 0; i < 6; i++) traffic.byMethod[k]![i] = t.byMethod[k][i]!;
  for (const code of Object.keys(traffic.proxyErrors) as (keyof typeof traffic.proxyErrors)[]) traffic.proxyErrors[code] = t.proxyErrors[code] ?? 0;
  for (const code of LOCAL_CODES) traffic.localErrors[code] = t.localErrors[code];
  traffic.retries = t.retries;
  for (const k of TRACING_KEYS) traffic.tracing[k] = t.tracing?.[k] ?? 0;
  traffic.queued = t.queued ?? 0;
  traffic.accessLogDropped = t.accessLogDropped ?? 0;
  setHistogram(traffic.latency, t.latency);
}

/** What dead workers left of one pool. */
interface RetiredPool {
  readonly backends: Map<string, Sums>;
  panicPicks: number;
  exhausted: number;
}

/** Where the sums go: the owner's objects. */
export interface SummerTarget {
  readonly traffic: TrafficStats;
  readonly tcpStats?: TcpStats;
  /** The owner's pools now, by name: each backend's stats, panic picks and retry budget show the workers' sums. */
  readonly pools: () => NamedPools;
  /** The owner's route figures, for the routes of the running config. */
  readonly routes?: { readonly names: () => Iterable<string>; of(name: string): TrafficStats };
}

/** The owner's side: the latest report of each live worker, and the remains of dead ones. */
export class Summer {
  private readonly live = new Map<number, Report>();
  private readonly retiredTraffic = emptyTraffic();
  private readonly retiredTcp: Record<string, number> = {};
  private readonly retiredPools = new Map<string, RetiredPool>();
  private readonly retiredRoutes = new Map<string, TrafficFigures>();
  /** Per backend, the workers' own connect failures last added to the owner's count. */
  private readonly addedConnectFailures = new WeakMap<Backend, number>();

  constructor(private readonly target: SummerTarget) {}

  /** Worker `slot`'s newest figures (cumulative since that worker started). */
  update(slot: number, report: Report): void {
    this.live.set(slot, report);
    this.apply();
  }

  /**
   * Worker `slot` is gone (exited or killed): its last report stays counted, and in-flight work
   * it held is no longer in flight. A worker started in its place reports from zero.
   */
  retire(slot: number): void {
    const r = this.live.get(slot);
    this.live.delete(slot);
    if (r) {
      addTraffic(this.retiredTraffic, r.traffic);
      for (const [k, n] of Object.entries(r.tcp ?? {})) if (k !== "open") this.retiredTcp[k] = (this.retiredTcp[k] ?? 0) + n;
      for (const [poolName, pf] of Object.entries(r.pools)) {
        let rp = this.retiredPools.get(poolName);
        if (!rp) this.retiredPools.set(poolName, (rp = { backends: new Map(), panicPicks: 0, exhausted: 0 }));
        rp.panicPicks += pf.panicPicks;
        rp.exhausted += pf.retryBudgetExhausted;
        for (const [name, f] of Object.entries(pf.backends)) {
          let s = rp.backends.get(name);
          if (!s) rp.backends.set(name, (s = emptySums()));
          addBackend(s, f);
        }
      }
      for (const [name, t] of Object.entries(r.routes)) {
        let into = this.retiredRoutes.get(name);
        if (!into) this.retiredRoutes.set(name, (into = emptyTraffic()));
        addTraffic(into, t);
      }
    }
    this.apply();
  }

  /** Backend `name` left pool `pool`: a new one of the same name starts from zero. */
  forget(pool: string, name: string): void {
    this.retiredPools.get(pool)?.backends.delete(name);
  }

  /** Write the sums into the owner's objects. */
  private apply(): void {
    const { traffic, tcpStats, routes } = this.target;
    const t = emptyTraffic();
    addTraffic(t, this.retiredTraffic);
    const tcp: Record<string, number> = { ...this.retiredTcp };
    for (const r of this.live.values()) {
      addTraffic(t, r.traffic);
      for (const [k, n] of Object.entries(r.tcp ?? {})) tcp[k] = (tcp[k] ?? 0) + n;
    }
    setTraffic(traffic, t);
    if (tcpStats) for (const k of Object.keys(tcpStats) as (keyof TcpStats)[]) tcpStats[k] = tcp[k] ?? 0;

    const present = new Set<string>();
    for (const [poolName, pool] of this.target.pools()) {
      present.add(poolName);
      this.applyPool(poolName, pool);
    }
    // A pool the owner no longer has: what dead workers left of it is not news of a later pool of that name.
    for (const name of this.retiredPools.keys()) if (!present.has(name)) this.retiredPools.delete(name);

    if (routes) {
      const names = new Set(routes.names());
      for (const name of names) {
        const sum = emptyTraffic();
        const retired = this.retiredRoutes.get(name);
        if (retired) addTraffic(sum, retired);
        for (const r of this.live.values()) {
          const f = r.routes[name];
          if (f) addTraffic(sum, f);
        }
        setTraffic(routes.of(name), sum);
      }
      for (const name of this.retiredRoutes.keys()) if (!names.has(name)) this.retiredRoutes.delete(name);
    }
  }

  private applyPool(poolName: string, pool: Pool): void {
    const retired = this.retiredPools.get(poolName);
    let panicPicks = retired?.panicPicks ?? 0;
    let exhausted = retired?.exhausted ?? 0;
    for (const r of this.live.values()) {
      const pf = r.pools[poolName];
      if (!pf) continue;
      panicPicks += pf.panicPicks;
      exhausted += pf.retryBudgetExhausted;
    }
    pool.setRemotePanicPicks(panicPicks);
    pool.retryBudget.setRemote(exhausted);
    for (const b of pool.backends) {
      const sums = emptySums();
      const gone = retired?.backends.get(b.name);
      if (gone) addBackend(sums, gone);
      let inFlight = 0;
      for (const r of this.live.values()) {
        const f = r.pools[poolName]?.backends[b.name];
        if (!f) continue;
        addBackend(sums, f);
        inFlight += f.inFlight;
      }
      const s = b.stats;
      // Connect failures are added to what the owner counts itself (refused connects, from the
      // workers' events); the rest replace the owner's figures.
      const before = this.addedConnectFailures.get(b) ?? 0;
      s.takeWorkerSums(sums, sums.connectFailures - before);
      this.addedConnectFailures.set(b, sums.connectFailures);
      setHistogram(s.latency, sums.latency);
      b.setRemoteLoad(inFlight, sums.acquired);
    }
  }

  /** Per worker: requests answered and in flight now, from its last report. */
  figuresOf(slot: number): { requests: number; inFlight: number } | undefined {
    const r = this.live.get(slot);
    if (!r) return undefined;
    let inFlight = 0;
    for (const pf of Object.values(r.pools)) for (const f of Object.values(pf.backends)) inFlight += f.inFlight;
    // Connections for TCP listeners, answers for HTTP ones.
    const requests = r.traffic.requests + (r.tcp?.accepted ?? 0);
    return { requests, inFlight };
  }
}
