/**
 * One backend: its address, weight, in-flight count, health and traffic figures.
 *
 * Everything that changes a backend's state goes through its methods, so that availability is
 * decided in one place (`available()`, as Caddy's Upstream.Available and Pingora's ready()), a
 * state change is announced exactly once, and the in-flight count moves only in
 * acquire/release pairs.
 */
import { Histogram } from "../stats/histogram.ts";
import { emptyByMethod, type MethodLabel } from "../stats/traffic.ts";

/** What the dashboard shows; derived from the flags below, never stored. */
export type BackendState = "up" | "down" | "draining" | "ejected" | "slow-starting";

export interface BackendOptions {
  name: string;
  url: string;
  weight?: number;
  maxConnections?: number;
  disabled?: boolean;
  /** Slow-start window in ms (0 = off). */
  slowStart?: number;
  /**
   * Start the slow-start ramp at this time (ms since epoch), as for a backend that just came
   * back. The pool sets it for backends added while it runs; backends configured at start-up
   * take a full share at once (HAProxy: slowstart never applies when the process starts).
   */
  rampFrom?: number;
  statsPath?: string;
}

export interface StateChange {
  backend: Backend;
  from: BackendState;
  to: BackendState;
  reason: string;
}

export class BackendError extends Error {
  readonly code = "SY_COUNTER_UNDERFLOW";
}

/** Figures kept per backend for /stats, /metrics and the dashboard. Bounded in size. */
export class BackendStats {
  requests = 0;
  /** Responses by status class: index 1..5 for 1xx..5xx. */
  readonly byClass = [0, 0, 0, 0, 0, 0];
  /** The same by request method: byMethod[method][class]. */
  readonly byMethod = emptyByMethod();
  /** Tries that got no response: refused, reset, timed out. */
  proxyErrors = 0;
  retries = 0;
  ejections = 0;
  connectFailures = 0;
  /** TCP mode. */
  bytesIn = 0;
  bytesOut = 0;
  readonly latency = new Histogram();

  /** A response head from this backend: its class, by method, and the try's time to it. */
  recordResponse(method: MethodLabel, status: number, latencyMs: number): void {
    const cls = Math.floor(status / 100);
    this.byClass[cls]! += 1;
    this.byMethod[method]![cls]! += 1;
    this.latency.record(latencyMs);
  }
}

export interface CheckResult {
  ok: boolean;
  /** "status 200", "timeout after 1s", "connection refused" ... */
  detail: string;
  at: number;
  durationMs: number;
}

export class Backend {
  readonly name: string;
  readonly url: URL;
  /** scheme://host:port, without a trailing slash: the prefix of every upstream URL. */
  readonly origin: string;
  /** The URL's path without a trailing slash ("" for "/"): prepended to every request path. */
  readonly basePath: string;
  readonly weight: number;
  readonly maxConnections: number;
  readonly slowStartMs: number;
  readonly statsPath: string | undefined;
  readonly stats = new BackendStats();

  /** Requests (HTTP) or connections (TCP) in flight. Changed only by acquire() and Lease.release(). */
  inFlight = 0;
  /** Total connections (TCP) handed out by acquire(). */
  acquired = 0;

  /** Health as far as probes and passive detection know. Starts up; a start-up probe runs at once. */
  private healthy = true;
  /** false = draining: no new traffic, in-flight work finishes. Apart from health. */
  private enabled: boolean;
  /**
   * Outlier ejection: unavailable until this time (ms since epoch); 0 when not ejected.
   * Availability follows the clock (an ejection ends on time even if its owner's timer runs
   * late); the owner's readmit() call then announces the end and clears this.
   */
  private ejectedUntil = 0;
  /** When the backend last became available after not being so, for slow start. */
  private availableSince: number;
  /** Consecutive 5xx/gateway failures, for outlier ejection. */
  consecutiveFailures = 0;
  ejectionCount = 0;
  lastCheck: CheckResult | undefined;
  /** Time of the last state change (ms since epoch). */
  lastChange = Date.now();
  lastChangeReason = "configured";

  private listeners: ((change: StateChange) => void)[] = [];

  constructor(opts: BackendOptions) {
    this.name = opts.name;
    this.url = new URL(opts.url);
    this.origin = `${this.url.protocol}//${this.url.host}`;
    this.basePath = this.url.pathname === "/" ? "" : this.url.pathname.replace(/\/$/, "");
    this.weight = opts.weight ?? 1;
    this.maxConnections = opts.maxConnections ?? 0;
    this.enabled = !opts.disabled;
    this.slowStartMs = opts.slowStart ?? 0;
    this.availableSince = opts.rampFrom ?? 0;
    this.statsPath = opts.statsPath;
  }

  /** The one predicate policies rely on: healthy, enabled, not ejected, not full. */
  available(now = Date.now()): boolean {
    return (
      this.healthy &&
      this.enabled &&
      now >= this.ejectedUntil &&
      (this.maxConnections === 0 || this.inFlight < this.maxConnections)
    );
  }

  /**
   * Share of a full share of traffic this backend should get now: ramps linearly from a small
   * floor to 1 over the slow-start window after it (re)became available (HAProxy's slowstart).
   */
  rampFactor(now = Date.now()): number {
    if (this.slowStartMs === 0) return 1;
    const elapsed = now - this.rampStart(now);
    if (elapsed >= this.slowStartMs) return 1;
    // Never 0: a backend that gets no traffic at all could not show it is healthy under load.
    return Math.max(0.05, elapsed / this.slowStartMs);
  }

  /**
   * When the current ramp began. An ejection that ran out by the clock, before its owner's
   * readmit() call, made the backend available again at its end time: count from there.
   */
  private rampStart(now: number): number {
    const until = this.ejectedUntil;
    return until !== 0 && until <= now && until > this.availableSince ? until : this.availableSince;
  }

  get isHealthy(): boolean {
    return this.healthy;
  }
  get isEnabled(): boolean {
    return this.enabled;
  }
  get ejectedUntilMs(): number {
    return this.ejectedUntil;
  }

  state(now = Date.now()): BackendState {
    if (!this.healthy) return "down";
    if (!this.enabled) return "draining";
    if (now < this.ejectedUntil) return "ejected";
    if (this.rampFactor(now) < 1) return "slow-starting";
    return "up";
  }

  /** Take one in-flight slot. The lease must be released exactly once, in a finally. */
  acquire(): Lease {
    this.inFlight++;
    this.acquired++;
    return new Lease(this);
  }

  /** @internal Only Lease calls this. */
  _release(): void {
    if (this.inFlight <= 0) throw new BackendError(`in-flight count of ${this.name} would go below zero`);
    this.inFlight--;
  }

  onStateChange(fn: (change: StateChange) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  setHealthy(healthy: boolean, reason: string): void {
    if (this.healthy === healthy) return;
    this.change(() => (this.healthy = healthy), reason);
  }

  setEnabled(enabled: boolean, reason = enabled ? "enabled" : "drained"): void {
    if (this.enabled === enabled) return;
    this.change(() => (this.enabled = enabled), reason);
  }

  eject(durationMs: number, reason: string, now = Date.now()): void {
    this.ejectionCount++;
    this.stats.ejections++;
    this.change(() => (this.ejectedUntil = now + durationMs), reason, now);
  }

  /**
   * End an ejection: its time is up (the owner's timer) or an operator says so. Announced as a
   * change from "ejected" even when the clock already ended it a moment ago, so that every
   * ejection is followed by exactly one logged return; slow start counts from the moment
   * traffic could come back.
   */
  readmit(reason: string, now = Date.now()): void {
    const until = this.ejectedUntil;
    if (until === 0) return;
    if (until <= now) {
      // Already available by the clock since `until`: the ramp started then, not now.
      this.availableSince = Math.max(this.availableSince, until);
      const from: BackendState = this.healthy && this.enabled ? "ejected" : this.state(now);
      this.change(() => (this.ejectedUntil = 0), reason, now, from);
    } else {
      this.change(() => (this.ejectedUntil = 0), reason, now);
    }
  }

  private change(mutate: () => void, reason: string, now = Date.now(), from = this.state(now)): void {
    const wasAvailable = this.healthy && this.enabled && now >= this.ejectedUntil;
    mutate();
    const isAvailable = this.healthy && this.enabled && now >= this.ejectedUntil;
    if (!wasAvailable && isAvailable) this.availableSince = now;
    const to = this.state(now);
    if (from === to) return;
    this.lastChange = now;
    this.lastChangeReason = reason;
    for (const fn of this.listeners) fn({ backend: this, from, to, reason });
  }
}

/** One acquired in-flight slot. release() is idempotent so a double release cannot corrupt the count. */
export class Lease {
  private released = false;
  constructor(readonly backend: Backend) {}
  release(): void {
    if (this.released) return;
    this.released = true;
    this.backend._release();
  }
}
