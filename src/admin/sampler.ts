/**
 * The one loop behind every rate the admin port shows: once a second it reads the cumulative
 * counters, keeps a short ring of those readings (for "the last N seconds" figures, via
 * Histogram.minus) and a bounded history of per-second points (for the dashboard's charts).
 *
 * It runs only while someone looks: `hold()` (a dashboard's event stream) keeps it running,
 * `touch()` (a /stats request) keeps it running for `idleStopMs` more; with neither it stops by
 * itself, and `stop()` ends it for good. Its timer is unref'd, so even a forgotten sampler never
 * keeps the process alive. Memory is fixed by the options, whatever the traffic.
 */
import type { Backend } from "../pool/backend.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import type { TcpStats } from "../tcp/stats.ts";
import { SeriesRing } from "../stats/series.ts";
import { backendTally, frozen, round3, totalTally, windowBetween, type Tally, type WindowFigures } from "./tally.ts";
import { backendId, balancerMode, poolsOf, type PoolsSource, type RouteStatsSource } from "./topology.ts";

export interface SamplerSource extends PoolsSource {
  readonly traffic: TrafficStats;
  /** TCP mode's listener totals, when the balancer hands them over. */
  readonly tcpStats?: TcpStats;
  /** Each route's figures, for its rates and latency over the window. */
  readonly routes?: RouteStatsSource;
}

export interface SamplerOptions {
  /** Time between samples, ms. Default 1000. */
  intervalMs?: number;
  /** Points of chart history kept. Default 300 (five minutes at one a second). */
  historySize?: number;
  /** The window of the "now" figures (rates, error rates, percentiles), in samples. Default 10. */
  windowSize?: number;
  /** Stop when nobody held or touched the sampler for longer than this, ms. Default 60 000. */
  idleStopMs?: number;
  now?: () => number;
}

/** Columns of every chart series: per second rates, then latency of that second (ms), then in-flight. */
export const SERIES_COLUMNS = ["rps", "e4", "e5", "ep", "p50", "p95", "p99", "inFlight"] as const;
export type SeriesColumn = (typeof SERIES_COLUMNS)[number];
export type PointFigures = Record<SeriesColumn, number | null>;

export interface SeriesPoint {
  t: number;
  total: PointFigures;
  /** By the backend's id: "pool/backend", or its bare name in the pool `default` (topology.ts backendId). */
  backends: Record<string, PointFigures>;
}

export interface History {
  intervalMs: number;
  /** Sample times, ms since the epoch, oldest first. */
  t: number[];
  total: Record<SeriesColumn, (number | null)[]>;
  backends: Record<string, Record<SeriesColumn, (number | null)[]>>;
}

interface Reading {
  t: number;
  total: Tally;
  backends: Map<Backend, Tally>;
  routes: Map<string, Tally>;
}

export type SampleListener = (point: SeriesPoint | undefined) => void;

export class Sampler {
  readonly intervalMs: number;
  readonly windowSize: number;
  private readonly idleStopMs: number;
  private readonly now: () => number;
  /** The last windowSize + 1 readings, oldest first (a handful: an array is fine). */
  private readonly readings: Reading[] = [];
  private readonly times: SeriesRing<"t">;
  private readonly totalSeries: SeriesRing<SeriesColumn>;
  private readonly backendSeries = new Map<Backend, SeriesRing<SeriesColumn>>();
  /** Each backend's id (pool and name), as of the last reading. */
  private readonly ids = new Map<Backend, string>();
  private readonly listeners = new Set<SampleListener>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private holds = 0;
  private lastDemand = 0;
  private closed = false;

  constructor(
    private readonly source: SamplerSource,
    opts: SamplerOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.windowSize = opts.windowSize ?? 10;
    this.idleStopMs = opts.idleStopMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    const historySize = opts.historySize ?? 300;
    this.times = new SeriesRing(historySize, ["t"]);
    this.totalSeries = new SeriesRing(historySize, SERIES_COLUMNS);
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Someone wants figures now: start if stopped, and keep going for idleStopMs. */
  touch(): void {
    this.lastDemand = this.now();
    this.ensureRunning();
  }

  /** A long-lived interest (an event stream): keeps the sampler running until released. */
  hold(): () => void {
    this.holds++;
    this.touch();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.lastDemand = this.now();
    };
  }

  /** Called after every sample (with the new chart point, undefined for the first reading). */
  onSample(fn: SampleListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Stop for good: no timer survives this. */
  stop(): void {
    this.closed = true;
    this.halt();
    this.listeners.clear();
  }

  /**
   * Take one reading now. The timer calls this; tests call it directly with a fake clock.
   * Returns the chart point made from the previous reading to this one.
   */
  sample(): SeriesPoint | undefined {
    const { traffic, config } = this.source;
    const t = this.now();
    const pools = poolsOf(this.source);
    const all = pools.flatMap((p) => p.pool.backends);
    const reading: Reading = { t, total: frozen(totalTally(traffic, balancerMode(config), this.source.tcpStats, all)), backends: new Map(), routes: new Map() };
    for (const p of pools) {
      for (const b of p.pool.backends) {
        reading.backends.set(b, frozen(backendTally(b, p.config.mode)));
        this.ids.set(b, backendId(p.name, b, pools.length));
      }
    }
    for (const [name, stats] of this.source.routes?.entries() ?? []) reading.routes.set(name, frozen(totalTally(stats, "http")));
    const prev = this.readings[this.readings.length - 1];
    this.readings.push(reading);
    if (this.readings.length > this.windowSize + 1) this.readings.shift();
    if (prev === undefined) return undefined;

    const seconds = (t - prev.t) / 1000;
    let inFlight = 0;
    const backends: Record<string, PointFigures> = {};
    const size = this.times.size;
    for (const [b, tally] of reading.backends) {
      inFlight += b.inFlight;
      const before = prev.backends.get(b);
      const fig = before ? pointFigures(windowBetween(before, tally, seconds), b.inFlight) : emptyPoint(b.inFlight);
      backends[this.ids.get(b)!] = fig;
      let ring = this.backendSeries.get(b);
      if (ring === undefined) {
        ring = new SeriesRing(this.times.capacity, SERIES_COLUMNS);
        ring.pad(size);
        this.backendSeries.set(b, ring);
      }
      ring.push(numeric(fig));
    }
    // Backends removed from the pool take their history with them.
    for (const b of this.backendSeries.keys()) if (!reading.backends.has(b)) this.backendSeries.delete(b);
    for (const b of this.ids.keys()) if (!reading.backends.has(b)) this.ids.delete(b);
    const total = pointFigures(windowBetween(prev.total, reading.total, seconds), inFlight);
    this.totalSeries.push(numeric(total));
    this.times.push({ t });
    return { t, total, backends };
  }

  /** Figures over the last windowSize samples (fewer just after a start); undefined before two readings. */
  window(): { seconds: number; total: WindowFigures; backends: Map<Backend, WindowFigures>; routes: Map<string, WindowFigures> } | undefined {
    const first = this.readings[0];
    const last = this.readings[this.readings.length - 1];
    if (first === undefined || last === undefined || first === last) return undefined;
    const backends = new Map<Backend, WindowFigures>();
    for (const [b, tally] of last.backends) {
      // A backend added inside the window is measured from its first reading.
      const from = this.readings.find((r) => r.backends.has(b));
      if (from === undefined || from === last) continue;
      backends.set(b, windowBetween(from.backends.get(b)!, tally, (last.t - from.t) / 1000));
    }
    const routes = new Map<string, WindowFigures>();
    for (const [name, tally] of last.routes) {
      // A route added inside the window (a reload) is measured from its first reading.
      const from = this.readings.find((r) => r.routes.has(name));
      if (from === undefined || from === last) continue;
      routes.set(name, windowBetween(from.routes.get(name)!, tally, (last.t - from.t) / 1000));
    }
    const seconds = (last.t - first.t) / 1000;
    return { seconds, total: windowBetween(first.total, last.total, seconds), backends, routes };
  }

  history(): History {
    const n = this.times.size;
    const out: History = {
      intervalMs: this.intervalMs,
      t: this.times.column("t", n),
      total: columns(this.totalSeries, n),
      backends: {},
    };
    for (const [b, ring] of this.backendSeries) out.backends[this.ids.get(b) ?? b.name] = columns(ring, n);
    return out;
  }

  /** Points of history kept now (bounded by historySize). */
  get historyLength(): number {
    return this.times.size;
  }

  private ensureRunning(): void {
    if (this.closed || this.timer !== undefined) return;
    // A restart after an idle stop begins a fresh history: the gap would read as zero traffic.
    this.readings.length = 0;
    this.times.clear();
    this.totalSeries.clear();
    this.backendSeries.clear();
    this.tick(false);
  }

  /** `fromTimer` false: the first reading at a start, which never stops the loop it starts. */
  private tick(fromTimer: boolean): void {
    const point = this.sample();
    if (fromTimer) for (const fn of this.listeners) fn(point);
    if (fromTimer && this.holds === 0 && this.now() - this.lastDemand > this.idleStopMs) {
      this.halt();
      return;
    }
    // Aligned to the interval on the wall clock, so samples land on whole seconds.
    const delay = this.intervalMs - (Date.now() % this.intervalMs);
    this.timer = setTimeout(() => this.tick(true), delay < this.intervalMs / 4 ? delay + this.intervalMs : delay);
    this.timer.unref?.();
  }

  private halt(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function pointFigures(w: WindowFigures, inFlight: number): PointFigures {
  const perSecond = (n: number) => (w.seconds > 0 ? round3(n / w.seconds) : 0);
  return {
    rps: w.rate,
    e4: perSecond(w.errors["4xx"]),
    e5: perSecond(w.errors["5xx"]),
    ep: perSecond(w.errors.proxy),
    p50: w.latencyMs?.p50 ?? null,
    p95: w.latencyMs?.p95 ?? null,
    p99: w.latencyMs?.p99 ?? null,
    inFlight,
  };
}

function emptyPoint(inFlight: number): PointFigures {
  return { rps: null, e4: null, e5: null, ep: null, p50: null, p95: null, p99: null, inFlight };
}

function numeric(p: PointFigures): Record<SeriesColumn, number> {
  const out = {} as Record<SeriesColumn, number>;
  for (const c of SERIES_COLUMNS) out[c] = p[c] ?? NaN;
  return out;
}

function columns(ring: SeriesRing<SeriesColumn>, n: number): Record<SeriesColumn, (number | null)[]> {
  const out = {} as Record<SeriesColumn, (number | null)[]>;
  for (const c of SERIES_COLUMNS) out[c] = ring.column(c, n).map((x) => (Number.isNaN(x) ? null : x));
  return out;
}
