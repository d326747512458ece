/**
 * Passive health: what real traffic says about a backend.
 *
 * - A refused connection marks the backend down at once (nothing listens there), within the
 *   same limits as an ejection (below): when they forbid it, the refusal counts as a gateway
 *   failure instead, and the request moves on. Active probes bring a backend marked down back;
 *   a backend without probes is re-admitted after `readmitAfter`.
 * - Consecutive 5xx answers or gateway failures (reset, timeout) reaching `consecutiveFailures`
 *   eject the backend (Envoy's outlier detection, consecutive_5xx plus consecutive gateway
 *   failure in one counter).
 * - Every `interval` a sweep compares the backends' traffic of that interval (Envoy's success
 *   rate and failure percentage detection), only among backends that had at least
 *   `requestVolume` tries in it, and only when at least `minimumHosts` backends had:
 *   - success rate: a backend whose success rate is below mean − stdev × stdevFactor / 1000
 *     (the mean and population standard deviation of those backends' rates) is ejected;
 *   - failure percentage: a backend whose failures are at least `threshold` % of its tries is
 *     ejected.
 *   A try is a failure when it got a 5xx or no answer (refused, reset, timed out, a body cut
 *   short); errors local to the proxy (net/network-error.ts) are no try of the backend's.
 * - An ejection lasts `baseEjectionTime × n`, capped at `maxEjectionTime`, where n counts this
 *   backend's recent ejections: it grows by one with each ejection and shrinks by one for every
 *   `baseEjectionTime` spent without one, as Envoy lowers its multiplier while a host stays
 *   healthy.
 * - Ejection (and marking down for a refusal) never leaves the pool without an available
 *   backend (a degraded answer beats none), and never takes the share of backends passive
 *   health has taken out (ejected, or marked down and not yet back) above
 *   `maxEjectedPercent`: with 2 backends and 50% one may be ejected, with 3 backends and 50%
 *   one, with 4 two.
 *
 * Every timer this class starts is kept, one per backend and purpose, and cancelled by stop();
 * the sweep is a loop with this class as its owner (start/stop).
 */
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import { formatDuration } from "../config/units.ts";

export interface SuccessRateOptions {
  minimumHosts: number;
  requestVolume: number;
  /** Envoy's success_rate_stdev_factor: thousandths of a standard deviation (1900 = 1.9). */
  stdevFactor: number;
}

export interface FailurePercentageOptions {
  /** A percentage, 0..100: a backend whose failures reach it is ejected. */
  threshold: number;
  minimumHosts: number;
  requestVolume: number;
}

export interface PassiveOptions {
  /** 0 turns consecutive-failure ejection off. */
  consecutiveFailures: number;
  baseEjectionTime: number;
  maxEjectionTime: number;
  maxEjectedPercent: number;
  readmitAfter: number;
  /** Time between sweeps of success rate and failure percentage (default 10 s). */
  interval?: number;
  /** Absent: off (the config's default turns it on). */
  successRate?: SuccessRateOptions | false;
  failurePercentage?: FailurePercentageOptions | false;
}

const DEFAULT_SWEEP_MS = 10_000;

/** What the proxy and the TCP relay report after each try. */
export interface PassiveSignals {
  /** The connection could not be made. */
  connectFailed(backend: Backend, detail: string): void;
  /** A response head arrived (HTTP) or a connection was made (TCP, status 0). */
  succeeded(backend: Backend, status: number): void;
  /** A reset or timeout after the request was sent. */
  failed(backend: Backend, detail: string): void;
}

interface EjectionRecord {
  /** Recent ejections, decayed (see the top of this file). */
  level: number;
  /** When the last ejection was due to end (ms since epoch): decay counts from there. */
  since: number;
}

/**
 * A backend's cumulative figures at the last sweep: the sweep reads what the tries of one
 * interval added. Read from BackendStats (which, with workers, sums every worker's reports),
 * so the sweep costs the request path nothing.
 */
interface Reading {
  /** Tries that ended: answered (HTTP: a response head; TCP: a connection made) or failed. */
  tries: number;
  failures: number;
}

/** One backend's traffic in the last interval, as a sweep sees it. */
export interface IntervalFigures {
  backend: Backend;
  tries: number;
  failures: number;
}

function readingOf(b: Backend): Reading {
  const s = b.stats;
  // proxyErrors: tries that got no answer (refused, reset, timed out, a body cut short); a
  // response (or a TCP connection) records its time in the latency histogram exactly once.
  return { tries: s.latency.count + s.proxyErrors, failures: s.byClass[5]! + s.proxyErrors };
}

export class PassiveHealth implements PassiveSignals {
  /** Pending ejection ends, one per ejected backend. */
  private readonly ejections = new Map<Backend, ReturnType<typeof setTimeout>>();
  /** Pending timed re-admissions of unprobed backends marked down, one per backend. */
  private readonly readmissions = new Map<Backend, ReturnType<typeof setTimeout>>();
  /**
   * Backends this class marked down for a refused connection, until they are healthy again
   * (whoever brought them back): they count toward maxEjectedPercent like ejected ones.
   */
  private readonly markedDown = new Set<Backend>();
  private readonly history = new WeakMap<Backend, EjectionRecord>();
  private readonly readings = new WeakMap<Backend, Reading>();
  /** The sweep's timer while it runs (start/stop). */
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private opts: PassiveOptions,
    /** Whether active probes watch this backend (then they, not a timer, bring it back). */
    private readonly probed: (b: Backend) => boolean,
  ) {}

  connectFailed(backend: Backend, detail: string): void {
    backend.stats.countConnectFailure();
    if (!backend.isHealthy) return;
    const now = Date.now();
    // Over the limits (the last backend serving, or too many out already): a refusal is a
    // gateway failure like a reset, and the next one asks again.
    if (!this.mayEject(backend, now)) return this.failed(backend, detail);
    backend.setHealthy(false, `passive: ${detail}`);
    this.markedDown.add(backend);
    if (!this.probed(backend)) {
      const after = this.opts.readmitAfter;
      this.start(this.readmissions, backend, after, () =>
        backend.setHealthy(true, `passive: re-admitted after ${formatDuration(after)} (no active check)`),
      );
    }
  }

  succeeded(backend: Backend, status: number): void {
    if (status >= 500) this.failed(backend, `status ${status}`);
    else backend.resetFailures();
  }

  failed(backend: Backend, detail: string): void {
    const threshold = this.opts.consecutiveFailures;
    if (threshold === 0) return;
    if (backend.countFailure() < threshold) return;
    const now = Date.now();
    // Still counting up while ejected (late answers) or while the limits forbid an ejection:
    // the next failure asks again.
    if (now < backend.ejectedUntilMs) return;
    if (this.eject(backend, `${threshold} consecutive failures (last: ${detail})`, now)) backend.resetFailures();
  }

  /**
   * Eject `backend` for its next ejection time, if the limits allow (mayEject): true if it was.
   * `why` completes "ejected for 30s after ...".
   */
  private eject(backend: Backend, why: string, now: number): boolean {
    if (!this.mayEject(backend, now)) return false;
    const h = this.nextLevel(backend, now);
    const duration = Math.min(this.opts.baseEjectionTime * h.level, this.opts.maxEjectionTime);
    h.since = now + duration;
    backend.eject(duration, `ejected for ${formatDuration(duration)} after ${why}`, now);
    const until = backend.ejectedUntilMs;
    this.start(this.ejections, backend, duration, () => {
      // Only the ejection this timer was set for: an operator may have ended it already.
      if (backend.ejectedUntilMs === until) backend.readmit(`ejection of ${formatDuration(duration)} ended`);
    });
    return true;
  }

  /** Out of the pool by passive health's doing: ejected, or marked down and not back yet. */
  private takenOut(b: Backend, now: number): boolean {
    if (now < b.ejectedUntilMs) return true;
    if (!this.markedDown.has(b)) return false;
    if (b.isHealthy) {
      this.markedDown.delete(b);
      return false;
    }
    return true;
  }

  /**
   * Whether taking `backend` out (an ejection, or marking it down for a refusal) keeps within
   * the limits: at least one other backend stays available, and taken-out/total × 100 stays at
   * most maxEjectedPercent (Envoy's rule, with refusals counted as ejections).
   * "Available" here ignores maxConnections: a backend that is busy right now still serves.
   */
  mayEject(backend: Backend, now = Date.now()): boolean {
    if (!backend.serving(now)) return false;
    const all = this.pool.backends;
    let out = 0;
    let othersServing = 0;
    for (const b of all) {
      if (this.takenOut(b, now)) out++;
      else if (b !== backend && b.serving(now)) othersServing++;
    }
    if (othersServing === 0) return false;
    return (out + 1) * 100 <= this.opts.maxEjectedPercent * all.length;
  }

  /** Run the success-rate and failure-percentage sweep every `interval` until stop(). */
  startSweeps(): void {
    if (this.stopped || this.sweepTimer !== undefined) return;
    for (const b of this.pool.backends) this.readings.set(b, readingOf(b));
    this.sweepTimer = setInterval(() => this.sweep(), this.opts.interval ?? DEFAULT_SWEEP_MS);
  }

  private stopSweeps(): void {
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /**
   * One sweep: each backend's tries and failures since the last, judged by success rate and by
   * failure percentage (see the top of this file). Returns the backends it ejected. Public so
   * that tests can drive it without waiting for the timer.
   */
  sweep(now = Date.now()): Backend[] {
    const figures: IntervalFigures[] = [];
    for (const b of this.pool.backends) {
      const r = readingOf(b);
      const last = this.readings.get(b);
      this.readings.set(b, r);
      // A backend new since the last sweep has no interval yet.
      if (last === undefined) continue;
      figures.push({ backend: b, tries: r.tries - last.tries, failures: r.failures - last.failures });
    }
    const ejected: Backend[] = [];
    for (const o of outliers(figures, this.opts)) {
      if (now < o.backend.ejectedUntilMs || !o.backend.isHealthy) continue;
      if (this.eject(o.backend, o.why, now)) ejected.push(o.backend);
    }
    return ejected;
  }

  /** The record for a new ejection of `backend`: level one more than its decayed recent count. */
  private nextLevel(backend: Backend, now: number): EjectionRecord {
    const h = this.history.get(backend) ?? { level: 0, since: now };
    if (h.level > 0 && this.opts.baseEjectionTime > 0) {
      // Negative when an operator ended the last ejection early and it fails again at once.
      const quiet = Math.max(0, Math.floor((now - h.since) / this.opts.baseEjectionTime));
      h.level = Math.max(0, h.level - quiet);
    }
    // Past the cap a higher level changes nothing but how long decay takes: stop there.
    const cap = this.opts.baseEjectionTime > 0 ? Math.max(1, Math.ceil(this.opts.maxEjectionTime / this.opts.baseEjectionTime)) : 1;
    h.level = Math.min(h.level + 1, cap);
    this.history.set(backend, h);
    return h;
  }

  /** One timer per backend in `timers`; a new one replaces (cancels) the old. */
  private start(timers: Map<Backend, ReturnType<typeof setTimeout>>, backend: Backend, ms: number, fn: () => void): void {
    if (this.stopped) return;
    clearTimeout(timers.get(backend));
    const t = setTimeout(() => {
      timers.delete(backend);
      fn();
    }, ms);
    timers.set(backend, t);
  }

  /** New settings (a reload): they apply from the next signal; running timers keep theirs. */
  configure(opts: PassiveOptions): void {
    const interval = this.opts.interval;
    this.opts = opts;
    if (this.sweepTimer !== undefined && opts.interval !== interval) {
      this.stopSweeps();
      this.startSweeps();
    }
  }

  /**
   * A backend left the pool: cancel its pending re-admission and ejection end. Its ejection
   * history goes with the backend object (a WeakMap).
   */
  forget(backend: Backend): void {
    clearTimeout(this.ejections.get(backend));
    clearTimeout(this.readmissions.get(backend));
    this.ejections.delete(backend);
    this.readmissions.delete(backend);
    this.markedDown.delete(backend);
  }

  /** Timers pending for one backend (0 once it is forgotten). */
  pendingFor(backend: Backend): number {
    return (this.ejections.has(backend) ? 1 : 0) + (this.readmissions.has(backend) ? 1 : 0);
  }

  /** Cancel pending re-admissions and ejection ends: nothing outlives the server. */
  stop(): void {
    this.stopped = true;
    this.stopSweeps();
    for (const t of this.ejections.values()) clearTimeout(t);
    for (const t of this.readmissions.values()) clearTimeout(t);
    this.ejections.clear();
    this.readmissions.clear();
  }

  /** Ejection ends and re-admissions pending (the sweep's loop apart: see sweeping). */
  get pendingTimers(): number {
    return this.ejections.size + this.readmissions.size;
  }

  /** Whether the sweep's loop runs (from startSweeps() to stop()). */
  get sweeping(): boolean {
    return this.sweepTimer !== undefined;
  }
}

/** A backend a sweep found an outlier, and the log's words for why (after "ejected for 30s after"). */
export interface Outlier {
  backend: Backend;
  why: string;
}

/**
 * The outliers among one interval's figures, worst first (so that when maxEjectedPercent stops
 * the ejections, the worst went first). Pure: tested as a table.
 */
export function outliers(figures: readonly IntervalFigures[], opts: Pick<PassiveOptions, "successRate" | "failurePercentage">): Outlier[] {
  const found = new Map<Backend, { rate: number; why: string }>();
  const sr = opts.successRate ?? false;
  if (sr !== false) {
    const judged = figures.filter((f) => f.tries >= sr.requestVolume && f.tries > 0);
    if (judged.length >= sr.minimumHosts && judged.length > 0) {
      const rates = judged.map((f) => (100 * (f.tries - f.failures)) / f.tries);
      const mean = rates.reduce((a, r) => a + r, 0) / rates.length;
      const stdev = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
      const threshold = mean - (stdev * sr.stdevFactor) / 1000;
      judged.forEach((f, i) => {
        const rate = rates[i]!;
        if (rate < threshold) found.set(f.backend, { rate, why: `a success rate of ${pct(rate)} in the last interval, below ${pct(threshold)} (mean ${pct(mean)} − ${sr.stdevFactor / 1000} × stdev ${pct(stdev)})` });
      });
    }
  }
  const fp = opts.failurePercentage ?? false;
  if (fp !== false) {
    const judged = figures.filter((f) => f.tries >= fp.requestVolume && f.tries > 0);
    if (judged.length >= fp.minimumHosts && judged.length > 0) {
      for (const f of judged) {
        const failed = (100 * f.failures) / f.tries;
        if (failed >= fp.threshold && !found.has(f.backend)) {
          found.set(f.backend, { rate: 100 - failed, why: `${pct(failed)} of ${f.tries} tries failed in the last interval (threshold ${fp.threshold}%)` });
        }
      }
    }
  }
  return [...found.entries()].sort((a, b) => a[1].rate - b[1].rate).map(([backend, { why }]) => ({ backend, why }));
}

function pct(x: number): string {
  return `${Math.round(x * 10) / 10}%`;
}
