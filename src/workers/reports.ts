/**
 * The figures of several workers as one balancer's: each worker reports its cumulative counters
 * (reportOf), and the owner sums the latest report of every worker, plus what workers that died
 * had reported last, into its own TrafficStats, TcpStats and each Backend's stats (Summer). The
 * admin port reads those objects as in a single process: /stats, /metrics (histograms merged
 * bucket by bucket), /events and the dashboard need no change.
 *
 * What the owner counts itself, never summed: ejections, and connect failures as passive health
 * hears of them (once per reported event); a worker's own count of connect failures (a TCP
 * connect that timed out) is added to the latter.
 */
import type { Backend } from "../pool/backend.ts";
import type { RetryBudget } from "../pool/retry-budget.ts";
import type { Histogram } from "../stats/histogram.ts";
import { emptyLocalErrors, METHOD_LABELS, type TrafficStats } from "../stats/traffic.ts";
import { LOCAL_CODES } from "../net/network-error.ts";
import type { TcpStats } from "../tcp/stats.ts";
import type { BackendFigures, HistogramFigures, Report, TrafficFigures } from "./protocol.ts";

function histogramOf(h: Histogram): HistogramFigures {
  return { counts: Array.from(h.counts), count: h.count, sum: h.sum };
}

function byMethodOf(m: Readonly<Record<string, readonly number[]>>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const k of METHOD_LABELS) out[k] = [...m[k]!];
  return out;
}

/** A worker's figures now; `panicPicks`, its pool's (pool.panic.picks); `budget`, its pool's retry budget. */
export function reportOf(traffic: TrafficStats, backends: readonly Backend[], tcp?: TcpStats, panicPicks = 0, budget?: RetryBudget): Report {
  const out: Report = {
    traffic: {
      requests: traffic.requests, byMethod: byMethodOf(traffic.byMethod) as TrafficFigures["byMethod"],
      proxyErrors: { ...traffic.proxyErrors }, localErrors: { ...traffic.localErrors }, panicPicks,
      retries: traffic.retries, latency: histogramOf(traffic.latency),
    },
    backends: {},
  };
  if (tcp) out.tcp = { ...tcp } as unknown as Record<string, number>;
  if (budget) out.retryBudget = { exhausted: budget.exhausted };
  for (const b of backends) {
    const s = b.stats;
    out.backends[b.name] = {
      inFlight: b.inFlight, acquired: b.acquired, requests: s.requests, byClass: [...s.byClass],
      byMethod: byMethodOf(s.byMethod) as BackendFigures["byMethod"], proxyErrors: s.proxyErrors, retries: s.retries,
      connectFailures: s.connectFailures, bytesIn: s.bytesIn, bytesOut: s.bytesOut, latency: histogramOf(s.latency),
    };
  }
  return out;
}

/**
 * The counters a report is sent for when any of them moved (every other figure moves with one
 * of these): answers, retries, and per backend tries, connections and work in flight.
 */
export function activity(traffic: TrafficStats, backends: readonly Backend[], tcp?: TcpStats): number[] {
  const out = [traffic.requests, traffic.retries, backends.length];
  for (const b of backends) out.push(b.acquired, b.inFlight, b.stats.requests, b.stats.proxyErrors, b.stats.bytesIn, b.stats.bytesOut);
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
    requests: 0, byMethod, proxyErrors: {} as TrafficFigures["proxyErrors"], localErrors: emptyLocalErrors(), panicPicks: 0,
    retries: 0, latency: { counts: [], count: 0, sum: 0 },
  };
}

function addTraffic(into: TrafficFigures, t: TrafficFigures): void {
  into.requests += t.requests;
  for (const k of METHOD_LABELS) for (let i = 0; i < 6; i++) into.byMethod[k][i]! += t.byMethod[k]?.[i] ?? 0;
  for (const [code, n] of Object.entries(t.proxyErrors) as [keyof TrafficFigures["proxyErrors"], number][]) into.proxyErrors[code] = (into.proxyErrors[code] ?? 0) + n;
  for (const code of LOCAL_CODES) into.localErrors[code] += t.localErrors?.[code] ?? 0;
  into.panicPicks += t.panicPicks ?? 0;
  into.retries += t.retries;
  addHistogram(into.latency, t.latency);
}

function setHistogram(h: Histogram, f: HistogramFigures): void {
  h.counts.fill(0);
  for (let i = 0; i < h.counts.length && i < f.counts.length; i++) h.counts[i] = f.counts[i]!;
  h.count = f.count;
  h.sum = f.sum;
}

/** The owner's side: the latest report of each live worker, and the remains of dead ones. */
export class Summer {
  private readonly live = new Map<number, Report>();
  private readonly retiredTraffic = emptyTraffic();
  private readonly retiredTcp: Record<string, number> = {};
  private readonly retiredBackends = new Map<string, Sums>();
  /** Retries the budgets of dead workers refused. */
  private retiredExhausted = 0;
  /** Per backend, the workers' own connect failures last added to the owner's count. */
  private readonly addedConnectFailures = new WeakMap<Backend, number>();

  constructor(
    private readonly target: {
      readonly traffic: TrafficStats;
      readonly tcpStats?: TcpStats;
      readonly backends: () => readonly Backend[];
      /** The owner pool's retry budget, which shows the workers' sums. */
      readonly retryBudget?: RetryBudget;
      /** The workers' panic picks, summed, for the owner's pool. */
      readonly setPanicPicks?: (n: number) => void;
    },
  ) {}

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
      this.retiredExhausted += r.retryBudget?.exhausted ?? 0;
      for (const [k, n] of Object.entries(r.tcp ?? {})) if (k !== "open") this.retiredTcp[k] = (this.retiredTcp[k] ?? 0) + n;
      for (const [name, f] of Object.entries(r.backends)) {
        let s = this.retiredBackends.get(name);
        if (!s) this.retiredBackends.set(name, (s = emptySums()));
        addBackend(s, f);
      }
    }
    this.apply();
  }

  /** A backend left the pool: a new one of the same name starts from zero. */
  forget(name: string): void {
    this.retiredBackends.delete(name);
  }

  /** Write the sums into the owner's objects. */
  private apply(): void {
    const { traffic, tcpStats } = this.target;
    const t = emptyTraffic();
    addTraffic(t, this.retiredTraffic);
    const tcp: Record<string, number> = { ...this.retiredTcp };
    for (const r of this.live.values()) {
      addTraffic(t, r.traffic);
      for (const [k, n] of Object.entries(r.tcp ?? {})) tcp[k] = (tcp[k] ?? 0) + n;
    }
    traffic.requests = t.requests;
    for (const k of METHOD_LABELS) for (let i = 0; i < 6; i++) traffic.byMethod[k]![i] = t.byMethod[k][i]!;
    for (const code of Object.keys(traffic.proxyErrors) as (keyof typeof traffic.proxyErrors)[]) traffic.proxyErrors[code] = t.proxyErrors[code] ?? 0;
    for (const code of LOCAL_CODES) traffic.localErrors[code] = t.localErrors[code];
    this.target.setPanicPicks?.(t.panicPicks);
    traffic.retries = t.retries;
    setHistogram(traffic.latency, t.latency);
    if (tcpStats) for (const k of Object.keys(tcpStats) as (keyof TcpStats)[]) tcpStats[k] = tcp[k] ?? 0;
    if (this.target.retryBudget) {
      let exhausted = this.retiredExhausted;
      for (const r of this.live.values()) exhausted += r.retryBudget?.exhausted ?? 0;
      this.target.retryBudget.setRemote(exhausted);
    }

    for (const b of this.target.backends()) {
      const sums = emptySums();
      const retired = this.retiredBackends.get(b.name);
      if (retired) addBackend(sums, retired);
      let inFlight = 0;
      for (const r of this.live.values()) {
        const f = r.backends[b.name];
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
    for (const f of Object.values(r.backends)) inFlight += f.inFlight;
    const requests = r.tcp ? (r.tcp.accepted ?? 0) : r.traffic.requests;
    return { requests, inFlight };
  }
}
