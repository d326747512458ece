/**
 * Passive health: what real traffic says about a backend.
 *
 * - A refused connection marks the backend down at once (nothing listens there). Active probes
 *   bring it back; a backend without probes is re-admitted after `readmitAfter`.
 * - Consecutive 5xx answers or gateway failures (reset, timeout) reaching `consecutiveFailures`
 *   eject the backend (Envoy's outlier detection, consecutive_5xx plus consecutive gateway
 *   failure in one counter). The ejection lasts `baseEjectionTime × n`, capped at
 *   `maxEjectionTime`, where n counts this backend's recent ejections: it grows by one with
 *   each ejection and shrinks by one for every `baseEjectionTime` spent without one, as Envoy
 *   lowers its multiplier while a host stays healthy.
 * - Ejection never leaves the pool without an available backend (a degraded answer beats
 *   none), and never takes the ejected share above `maxEjectedPercent`: with 2 backends and
 *   50% one may be ejected, with 3 backends and 50% one, with 4 two.
 *
 * Every timer this class starts is kept, one per backend and purpose, and cancelled by stop().
 */
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import { formatDuration } from "../config/units.ts";

export interface PassiveOptions {
  /** 0 turns ejection off. */
  consecutiveFailures: number;
  baseEjectionTime: number;
  maxEjectionTime: number;
  maxEjectedPercent: number;
  readmitAfter: number;
}

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

export class PassiveHealth implements PassiveSignals {
  /** Pending ejection ends, one per ejected backend. */
  private readonly ejections = new Map<Backend, ReturnType<typeof setTimeout>>();
  /** Pending timed re-admissions of unprobed backends marked down, one per backend. */
  private readonly readmissions = new Map<Backend, ReturnType<typeof setTimeout>>();
  private readonly history = new WeakMap<Backend, EjectionRecord>();
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private opts: PassiveOptions,
    /** Whether active probes watch this backend (then they, not a timer, bring it back). */
    private readonly probed: (b: Backend) => boolean,
  ) {}

  connectFailed(backend: Backend, detail: string): void {
    backend.stats.connectFailures++;
    if (!backend.isHealthy) return;
    backend.setHealthy(false, `passive: ${detail}`);
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
    if (now < backend.ejectedUntilMs || !this.mayEject(backend, now)) return;
    backend.resetFailures();
    const h = this.nextLevel(backend, now);
    const duration = Math.min(this.opts.baseEjectionTime * h.level, this.opts.maxEjectionTime);
    h.since = now + duration;
    backend.eject(duration, `ejected for ${formatDuration(duration)} after ${threshold} consecutive failures (last: ${detail})`, now);
    const until = backend.ejectedUntilMs;
    this.start(this.ejections, backend, duration, () => {
      // Only the ejection this timer was set for: an operator may have ended it already.
      if (backend.ejectedUntilMs === until) backend.readmit(`ejection of ${formatDuration(duration)} ended`);
    });
  }

  /**
   * Whether ejecting `backend` keeps within the limits: at least one other backend stays
   * available, and ejected/total × 100 stays at most maxEjectedPercent (Envoy's rule).
   * "Available" here ignores maxConnections: a backend that is busy right now still serves.
   */
  mayEject(backend: Backend, now = Date.now()): boolean {
    if (!backend.serving(now)) return false;
    const all = this.pool.backends;
    let ejected = 0;
    let othersServing = 0;
    for (const b of all) {
      if (now < b.ejectedUntilMs) ejected++;
      else if (b !== backend && b.serving(now)) othersServing++;
    }
    if (othersServing === 0) return false;
    return (ejected + 1) * 100 <= this.opts.maxEjectedPercent * all.length;
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
    this.opts = opts;
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
  }

  /** Timers pending for one backend (0 once it is forgotten). */
  pendingFor(backend: Backend): number {
    return (this.ejections.has(backend) ? 1 : 0) + (this.readmissions.has(backend) ? 1 : 0);
  }

  /** Cancel pending re-admissions and ejection ends: nothing outlives the server. */
  stop(): void {
    this.stopped = true;
    for (const t of this.ejections.values()) clearTimeout(t);
    for (const t of this.readmissions.values()) clearTimeout(t);
    this.ejections.clear();
    this.readmissions.clear();
  }

  get pendingTimers(): number {
    return this.ejections.size + this.readmissions.size;
  }
}
