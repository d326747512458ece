/**
 * Passive health: what real traffic says about a backend.
 *
 * - A refused connection marks the backend down at once (nothing listens there). Active probes
 *   bring it back; a backend without probes is re-admitted after `readmitAfter`.
 * - Consecutive 5xx answers or gateway failures beyond a threshold eject the backend for a time
 *   that grows with each ejection, capped (Envoy's outlier detection). The last available
 *   backend is never ejected, nor more than maxEjectedPercent of the pool.
 */
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import { formatDuration } from "../config/units.ts";

export interface PassiveOptions {
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

export class PassiveHealth implements PassiveSignals {
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private readonly opts: PassiveOptions,
    /** Whether active probes watch this backend (then they, not a timer, bring it back). */
    private readonly probed: (b: Backend) => boolean,
  ) {}

  connectFailed(backend: Backend, detail: string): void {
    backend.stats.connectFailures++;
    if (!backend.isHealthy) return;
    backend.setHealthy(false, `passive: ${detail}`);
    if (!this.probed(backend)) {
      this.after(this.opts.readmitAfter, () =>
        backend.setHealthy(true, `passive: re-admitted after ${formatDuration(this.opts.readmitAfter)}`),
      );
    }
  }

  succeeded(backend: Backend, status: number): void {
    if (status >= 500) this.failed(backend, `status ${status}`);
    else backend.consecutiveFailures = 0;
  }

  failed(backend: Backend, detail: string): void {
    const threshold = this.opts.consecutiveFailures;
    if (threshold === 0) return;
    if (++backend.consecutiveFailures < threshold) return;
    const now = Date.now();
    if (now < backend.ejectedUntilMs || !this.mayEject(backend, now)) return;
    backend.consecutiveFailures = 0;
    // Envoy: ejection time = base × number of times ejected, capped.
    const duration = Math.min(this.opts.baseEjectionTime * (backend.ejectionCount + 1), this.opts.maxEjectionTime);
    backend.eject(duration, `ejected for ${formatDuration(duration)} after ${threshold} consecutive failures (last: ${detail})`, now);
    this.after(duration, () => backend.readmit(`ejection of ${formatDuration(duration)} ended`));
  }

  /** Never eject the last available backend, nor beyond maxEjectedPercent of the pool. */
  private mayEject(backend: Backend, now: number): boolean {
    if (!backend.isHealthy || !backend.isEnabled) return false;
    const all = this.pool.backends;
    let ejected = 0;
    for (const b of all) if (now < b.ejectedUntilMs) ejected++;
    if (((ejected + 1) / all.length) * 100 > this.opts.maxEjectedPercent) return false;
    return this.pool.availableCount(now) > 1;
  }

  private after(ms: number, fn: () => void): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  /** Cancel pending re-admissions: nothing outlives the server. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  get pendingTimers(): number {
    return this.timers.size;
  }
}
