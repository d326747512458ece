/**
 * One backend, in two parts (as Caddy keeps its configured Upstream apart from the Host that
 * holds counters and health):
 *
 * - `BackendSpec`: what the config says about it (address, weight, limits). Plain and
 *   immutable; a reload builds a new one and hands it to `configure()`.
 * - `Backend`: its runtime state (in-flight count, health, drain, ejection, figures), which
 *   lives as long as the backend stays in the pool, across reloads, and which only its own
 *   methods change: health checks, passive detection and operators all call them.
 *
 * So availability is decided in one place (`available()`, as Caddy's Upstream.Available and
 * Pingora's ready()), a state change is announced exactly once, and the in-flight count moves
 * only in acquire/release pairs.
 */
import { Histogram } from "../stats/histogram.ts";
import { emptyByMethod, type MethodLabel } from "../stats/traffic.ts";
import { DEFAULT_DECAY_MS, PeakEwma } from "../stats/latency-ewma.ts";
import type { UpstreamProtocol } from "../config/schema.ts";
import { upstreamTls, type UpstreamTls, type UpstreamTlsConfig } from "../tls/upstream.ts";
import type { CodeFrom } from "../errors.ts";

/** What the dashboard shows; derived from the flags below, never stored. */
export type BackendState = "up" | "down" | "draining" | "ejected" | "slow-starting";

/** What a backend's config says, before it is turned into a BackendSpec. */
export interface BackendOptions {
  name: string;
  url: string;
  weight?: number;
  /** Failover tier: lower is preferred (RFC 2782's SRV priority); default 0. See pool/tiers.ts. */
  priority?: number;
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
  /** Decay time (τ, ms) of the response-time average peak-ewma reads; default 1 s. */
  latencyDecay?: number;
  /** https:// backends: CA, server name, verification (its CA file is read here). */
  tls?: UpstreamTlsConfig;
  /** Its pool's backend-side settings (timeouts.connect, timeouts.upstreamIdle, limits.upstreamKeepalive, proxyProtocol). */
  upstream?: UpstreamSettings;
  /** How the socket engine speaks to it: HTTP/1.1 (default), HTTP/2 over TLS, cleartext HTTP/2. */
  protocol?: UpstreamProtocol;
}

/** A pool's backend-side limits, as each of its backends carries them for the engines. */
export interface UpstreamSettings {
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Idle connections kept for reuse (socket engine); 0: none. */
  readonly keepalive: number;
  /** A PROXY protocol header (net/proxy-protocol.ts) first on every new connection (pools.*.proxyProtocol). */
  readonly proxyProtocol?: "v1" | "v2";
}

/** What the config says about a backend, resolved once: rebuilt on a reload, never mutated. */
export interface BackendSpec {
  readonly name: string;
  readonly url: URL;
  /** scheme://host:port, without a trailing slash: the prefix of every upstream URL. */
  readonly origin: string;
  /** The URL's path without a trailing slash ("" for "/"): prepended to every request path. */
  readonly basePath: string;
  readonly weight: number;
  /** Failover tier: a lower number is preferred; see pool/tiers.ts. */
  readonly priority: number;
  readonly maxConnections: number;
  /** Slow-start window in ms (0 = off). */
  readonly slowStartMs: number;
  readonly statsPath: string | undefined;
  /** τ of the response-time average peak-ewma reads (peakEwma.decay). */
  readonly latencyDecayMs: number;
  /** For https:// backends: what every TLS client of ours is given (tls/upstream.ts). */
  readonly tls: UpstreamTls | undefined;
  /** The same as the config wrote it (file paths): what a worker process is sent to read itself. */
  readonly tlsConfig: UpstreamTlsConfig | undefined;
  /** Its pool's backend-side limits; undefined: the engine's own settings apply. */
  readonly upstream: UpstreamSettings | undefined;
  /** The backend's own `protocol`, else its pool's (engine/h2/ for h2 and h2c). */
  readonly protocol: UpstreamProtocol;
}

export function backendSpec(opts: BackendOptions): BackendSpec {
  const url = new URL(opts.url);
  return {
    name: opts.name,
    url,
    origin: `${url.protocol}//${url.host}`,
    basePath: url.pathname === "/" ? "" : url.pathname.replace(/\/$/, ""),
    weight: opts.weight ?? 1,
    priority: opts.priority ?? 0,
    maxConnections: opts.maxConnections ?? 0,
    slowStartMs: opts.slowStart ?? 0,
    statsPath: opts.statsPath,
    latencyDecayMs: opts.latencyDecay ?? DEFAULT_DECAY_MS,
    tls: upstreamTls(url, opts.tls),
    tlsConfig: opts.tls,
    upstream: opts.upstream,
    protocol: opts.protocol ?? "http1",
  };
}

/** An operator's override of health, for maintenance: apart from what checks say. */
export type ForcedHealth = "up" | "down";

export interface StateChange {
  backend: Backend;
  from: BackendState;
  to: BackendState;
  reason: string;
}

export class BackendError extends Error {
  constructor(
    readonly code: Extract<CodeFrom<"invariant">, "SY_COUNTER_UNDERFLOW" | "SY_BACKEND_IDENTITY">,
    message: string,
  ) {
    super(message);
  }
}

/** What the owner process takes from its workers' reports for one backend (workers/figures.ts). */
export interface WorkerSums {
  requests: number;
  byClass: readonly number[];
  byMethod: Readonly<Record<MethodLabel, readonly number[]>>;
  proxyErrors: number;
  retries: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Figures kept per backend for /stats, /metrics and the dashboard. Bounded in size. Every
 * counter is private and changes only through a method named for what happened (as Caddy's
 * hosts.go has countRequest and countFail), so that nothing else can move one: readers get
 * getters and read-only views.
 */
export class BackendStats {
  private requestCount = 0;
  /** Responses by status class: index 1..5 for 1xx..5xx. */
  private readonly classCounts = [0, 0, 0, 0, 0, 0];
  /** The same by request method: methodCounts[method][class]. */
  private readonly methodCounts = emptyByMethod();
  private proxyErrorCount = 0;
  private retryCount = 0;
  private ejectionCount = 0;
  private connectFailureCount = 0;
  private bytesInCount = 0;
  private bytesOutCount = 0;
  private openWebSockets = 0;
  private webSocketCount = 0;
  readonly latency = new Histogram();
  /**
   * The response-time average the peak-ewma policy compares. Fed here, where every response
   * head is already recorded, so that the proxy has one place that reports latency whatever
   * the policy (and any engine that records responses feeds it).
   */
  readonly ewma: PeakEwma;

  constructor(latencyDecayMs?: number) {
    this.ewma = new PeakEwma(latencyDecayMs);
  }

  /** Tries sent to this backend (HTTP), whatever came of them. */
  get requests(): number {
    return this.requestCount;
  }
  /** Responses by status class: index 1..5 for 1xx..5xx. */
  get byClass(): readonly number[] {
    return this.classCounts;
  }
  /** The same by request method: byMethod[method][class]. */
  get byMethod(): Readonly<Record<MethodLabel, readonly number[]>> {
    return this.methodCounts;
  }
  /** Tries that got no response (refused, reset, timed out), and bodies cut short by the backend. */
  get proxyErrors(): number {
    return this.proxyErrorCount;
  }
  /** Tries on this backend that were retries of a try on another. */
  get retries(): number {
    return this.retryCount;
  }
  get ejections(): number {
    return this.ejectionCount;
  }
  /** Connections that could not be made (refused, or timed out in TCP mode). */
  get connectFailures(): number {
    return this.connectFailureCount;
  }
  /** Bytes relayed to the backend (TCP mode, WebSocket tunnels). */
  get bytesIn(): number {
    return this.bytesInCount;
  }
  /** Bytes relayed from the backend (TCP mode). */
  get bytesOut(): number {
    return this.bytesOutCount;
  }
  /** WebSockets open now through this backend (http/upgrade.ts counts them in pairs). */
  get webSockets(): number {
    return this.openWebSockets;
  }
  /** WebSockets opened through this backend, all time. */
  get webSocketsTotal(): number {
    return this.webSocketCount;
  }

  /** One try is sent to this backend. */
  countRequest(): void {
    this.requestCount++;
  }

  /** The try (HTTP) or connection (TCP) about to start on this backend retries one that failed elsewhere. */
  countRetry(): void {
    this.retryCount++;
  }

  /** A response head from this backend: its class, by method, and the try's time to it. */
  countResponse(method: MethodLabel, status: number, latencyMs: number): void {
    const cls = Math.floor(status / 100);
    this.classCounts[cls]! += 1;
    this.methodCounts[method]![cls]! += 1;
    this.latency.record(latencyMs);
    this.ewma.observe(latencyMs);
  }

  /** TCP mode: a connection to this backend is open, `latencyMs` after the dial began. */
  countConnected(latencyMs: number): void {
    this.latency.record(latencyMs);
  }

  /** A try or connection got no answer (refused, reset, timed out), or a body was cut short. */
  countProxyError(): void {
    this.proxyErrorCount++;
  }

  /** A connection to this backend could not be made. */
  countConnectFailure(): void {
    this.connectFailureCount++;
  }

  /** Only Backend.eject calls this. */
  countEjection(): void {
    this.ejectionCount++;
  }

  /** Bytes relayed to the backend (`inBytes`) and from it (`outBytes`). */
  countBytes(inBytes: number, outBytes: number): void {
    this.bytesInCount += inBytes;
    this.bytesOutCount += outBytes;
  }

  /** A WebSocket opened through this backend; webSocketClosed() follows exactly once (OpenWebSocket). */
  webSocketOpened(): void {
    this.openWebSockets++;
    this.webSocketCount++;
  }

  webSocketClosed(): void {
    if (this.openWebSockets <= 0) throw new BackendError("SY_COUNTER_UNDERFLOW", "open WebSocket count would go below zero");
    this.openWebSockets--;
  }

  /**
   * Multi-process mode, in the owner: the workers' counters for this backend, summed
   * (workers/figures.ts). They replace the owner's own, which counts no HTTP traffic; connect
   * failures are added instead, since the owner counts refused connects itself (`addedConnectFailures`:
   * what the workers report beyond what was added before).
   */
  takeWorkerSums(sums: WorkerSums, addedConnectFailures: number): void {
    this.requestCount = sums.requests;
    for (let i = 0; i < 6; i++) this.classCounts[i] = sums.byClass[i]!;
    for (const k in this.methodCounts) {
      const into = this.methodCounts[k as MethodLabel]!;
      const from = sums.byMethod[k as MethodLabel]!;
      for (let i = 0; i < 6; i++) into[i] = from[i]!;
    }
    this.proxyErrorCount = sums.proxyErrors;
    this.retryCount = sums.retries;
    this.connectFailureCount += addedConnectFailures;
    this.bytesInCount = sums.bytesIn;
    this.bytesOutCount = sums.bytesOut;
  }
}

/** What a worker copies of a backend's runtime state (see Backend.mirror). */
export interface MirrorState {
  healthy: boolean;
  enabled: boolean;
  forced: ForcedHealth | null;
  ejectedUntil: number;
  availableSince: number;
  changedAt: number;
  reason: string;
}

export interface CheckResult {
  ok: boolean;
  /** "status 200", "timeout after 1s", "connection refused" ... */
  detail: string;
  at: number;
  durationMs: number;
}

export class Backend {
  private spec: BackendSpec;
  readonly stats: BackendStats;

  /** Requests (HTTP) or connections (TCP) in flight. Changed only by acquire() and Lease.release(). */
  private inFlightCount = 0;
  /** Total connections (TCP) handed out by acquire(). */
  private acquiredCount = 0;
  /**
   * Multi-process mode (src/workers/): what the worker processes hold in flight for this
   * backend, and have acquired in all, as they last reported. Readings of counters that each
   * worker changes in its own acquire/release pairs; the owner process holds no leases itself.
   */
  private remoteInFlight = 0;
  private remoteAcquired = 0;
  /** Resolved, and cleared, when the in-flight count reaches 0 (see whenIdle()). */
  private idle: { promise: Promise<void>; resolve: () => void } | undefined;

  /** Health as far as probes and passive detection know. Starts up; a start-up probe runs at once. */
  private healthy = true;
  /** An operator's override of `healthy` (maintenance); undefined = the checks decide. */
  private forced: ForcedHealth | undefined;
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
  private failureStreak = 0;
  private ejections = 0;
  private check: CheckResult | undefined;
  /** Time of the last state change (ms since epoch). */
  private changedAt = Date.now();
  private changeReason = "configured";

  private listeners: ((change: StateChange) => void)[] = [];

  constructor(opts: BackendOptions | BackendSpec, initial: { disabled?: boolean; rampFrom?: number; healthy?: boolean; reason?: string } = {}) {
    this.spec = opts.url instanceof URL ? (opts as BackendSpec) : backendSpec(opts as BackendOptions);
    const o = opts as BackendOptions;
    this.enabled = !(initial.disabled ?? o.disabled ?? false);
    this.availableSince = initial.rampFrom ?? o.rampFrom ?? 0;
    if (initial.healthy !== undefined) this.healthy = initial.healthy;
    if (initial.reason !== undefined) this.changeReason = initial.reason;
    this.stats = new BackendStats(this.spec.latencyDecayMs);
  }

  // What the config says (see BackendSpec).
  get name(): string {
    return this.spec.name;
  }
  get url(): URL {
    return this.spec.url;
  }
  get origin(): string {
    return this.spec.origin;
  }
  get basePath(): string {
    return this.spec.basePath;
  }
  get weight(): number {
    return this.spec.weight;
  }
  get priority(): number {
    return this.spec.priority;
  }
  get maxConnections(): number {
    return this.spec.maxConnections;
  }
  /** Its pool's backend-side limits, read by the engines per connection; undefined: theirs. */
  get upstream(): UpstreamSettings | undefined {
    return this.spec.upstream;
  }

  /** How the socket engine speaks to it (its upstream wire dispatches on this per try). */
  get protocol(): UpstreamProtocol {
    return this.spec.protocol;
  }

  get slowStartMs(): number {
    return this.spec.slowStartMs;
  }
  get statsPath(): string | undefined {
    return this.spec.statsPath;
  }
  get latencyDecayMs(): number {
    return this.spec.latencyDecayMs;
  }
  get tls(): UpstreamTls | undefined {
    return this.spec.tls;
  }
  get tlsConfig(): UpstreamTlsConfig | undefined {
    return this.spec.tlsConfig;
  }

  /**
   * Take a new config for this backend (weight, priority, limits, slow start, statsPath), keeping every
   * runtime figure. The address is its identity: a backend whose URL changes is a new backend.
   */
  configure(spec: BackendSpec): void {
    if (spec.name !== this.spec.name || spec.url.href !== this.spec.url.href) {
      throw new BackendError("SY_BACKEND_IDENTITY", `backend ${this.name} (${this.url.href}) cannot become ${spec.name} (${spec.url.href}): replace it instead`);
    }
    this.spec = spec;
    this.stats.ewma.decayMs = spec.latencyDecayMs;
  }

  get inFlight(): number {
    return this.inFlightCount + this.remoteInFlight;
  }
  get acquired(): number {
    return this.acquiredCount + this.remoteAcquired;
  }

  /**
   * Multi-process mode: the workers' in-flight and acquired totals for this backend, summed by
   * the owner from their reports. Drain and removal wait on these through whenIdle().
   */
  setRemoteLoad(inFlight: number, acquired: number): void {
    this.remoteInFlight = inFlight;
    this.remoteAcquired = acquired;
    this.settleIdle();
  }

  /**
   * The runtime state a worker process copies from the owner (src/workers/): everything
   * availability and slow start read. Plain data, for IPC.
   */
  mirrorState(): MirrorState {
    return {
      healthy: this.healthy, enabled: this.enabled, forced: this.forced ?? null, ejectedUntil: this.ejectedUntil,
      availableSince: this.availableSince, changedAt: this.changedAt, reason: this.changeReason,
    };
  }

  /**
   * In a worker process: take the owner's state as it is. Not announced (the owner announced
   * it, once); a worker never decides health, drain or ejection itself.
   */
  mirror(s: MirrorState): void {
    this.healthy = s.healthy;
    this.enabled = s.enabled;
    this.forced = s.forced ?? undefined;
    this.ejectedUntil = s.ejectedUntil;
    this.availableSince = s.availableSince;
    this.changedAt = s.changedAt;
    this.changeReason = s.reason;
  }
  get consecutiveFailures(): number {
    return this.failureStreak;
  }
  get ejectionCount(): number {
    return this.ejections;
  }
  get lastCheck(): CheckResult | undefined {
    return this.check;
  }
  get lastChange(): number {
    return this.changedAt;
  }
  get lastChangeReason(): string {
    return this.changeReason;
  }
  get forcedHealth(): ForcedHealth | undefined {
    return this.forced;
  }

  /**
   * Healthy, enabled, not ejected, not full: what a pool chooses from in normal times. Policies
   * never read it: the pool decides (with panic mode, pool.ts) and hands them the candidates.
   */
  available(now = Date.now()): boolean {
    return this.serving(now) && this.hasRoom();
  }

  /** Below maxConnections (or no limit). */
  hasRoom(): boolean {
    return this.spec.maxConnections === 0 || this.inFlight < this.spec.maxConnections;
  }

  /**
   * Put in service by its operator: enabled (not draining) and not forced down, whatever its
   * health. What a pool in panic mode chooses from (pool.ts): health is then ignored, an
   * operator's intent never.
   */
  inService(): boolean {
    return this.enabled && this.forced !== "down";
  }

  /** Would serve if it had room: healthy (or forced up), enabled, not ejected. maxConnections aside. */
  serving(now = Date.now()): boolean {
    return this.enabled && (this.forced === undefined ? this.healthy && now >= this.ejectedUntil : this.forced === "up");
  }

  /**
   * Share of a full share of traffic this backend should get now: ramps linearly from a small
   * floor to 1 over the slow-start window after it (re)became available (HAProxy's slowstart).
   */
  rampFactor(now = Date.now()): number {
    const window = this.spec.slowStartMs;
    if (window === 0) return 1;
    const elapsed = now - this.rampStart(now);
    if (elapsed >= window) return 1;
    // Never 0: a backend that gets no traffic at all could not show it is healthy under load.
    return Math.max(0.05, elapsed / window);
  }

  /**
   * When the current ramp began. An ejection that ran out by the clock, before its owner's
   * readmit() call, made the backend available again at its end time: count from there.
   */
  private rampStart(now: number): number {
    const until = this.ejectedUntil;
    return until !== 0 && until <= now && until > this.availableSince ? until : this.availableSince;
  }

  /** Health as checks and passive detection see it, whatever an operator forced. */
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
    if (this.forced === "down" || (this.forced === undefined && !this.healthy)) return "down";
    if (!this.enabled) return "draining";
    if (this.forced === undefined && now < this.ejectedUntil) return "ejected";
    if (this.rampFactor(now) < 1) return "slow-starting";
    return "up";
  }

  /** Take one in-flight slot. The lease must be released exactly once, in a finally. */
  acquire(): Lease {
    this.inFlightCount++;
    this.acquiredCount++;
    return new Lease(this);
  }

  /** @internal Only Lease calls this. */
  _release(): void {
    if (this.inFlightCount <= 0) throw new BackendError("SY_COUNTER_UNDERFLOW", `in-flight count of ${this.name} would go below zero`);
    --this.inFlightCount;
    this.settleIdle();
  }

  private settleIdle(): void {
    if (this.idle !== undefined && this.inFlight === 0) {
      this.idle.resolve();
      this.idle = undefined;
    }
  }

  /** Resolves when nothing is in flight (at once if nothing is now): how a drain knows it is done. */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    if (this.idle === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.idle = { promise, resolve };
    }
    return this.idle.promise;
  }

  onStateChange(fn: (change: StateChange) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /** State-change listeners attached now (a removed backend must have none left). */
  get listenerCount(): number {
    return this.listeners.length;
  }

  setHealthy(healthy: boolean, reason: string): void {
    if (this.healthy === healthy) return;
    this.change(() => (this.healthy = healthy), reason);
  }

  setEnabled(enabled: boolean, reason = enabled ? "enabled" : "drained"): void {
    if (this.enabled === enabled) return;
    this.change(() => (this.enabled = enabled), reason);
  }

  /** Maintenance: hold the backend down or up whatever checks say; undefined hands it back to them. */
  force(health: ForcedHealth | undefined, reason: string): void {
    if (this.forced === health) return;
    this.change(() => (this.forced = health), reason);
  }

  /** A health probe's result, for display. */
  recordCheck(result: CheckResult): void {
    this.check = result;
  }

  /** Passive detection: one more 5xx or gateway failure in a row; returns the streak. */
  countFailure(): number {
    return ++this.failureStreak;
  }

  /** Passive detection: a good answer (or an ejection) ends the streak. */
  resetFailures(): void {
    this.failureStreak = 0;
  }

  eject(durationMs: number, reason: string, now = Date.now()): void {
    this.ejections++;
    this.stats.countEjection();
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
      const from: BackendState = this.healthy && this.enabled && this.forced === undefined ? "ejected" : this.state(now);
      this.change(() => (this.ejectedUntil = 0), reason, now, from);
    } else {
      this.change(() => (this.ejectedUntil = 0), reason, now);
    }
  }

  private change(mutate: () => void, reason: string, now = Date.now(), from = this.state(now)): void {
    const wasServing = this.serving(now);
    mutate();
    if (!wasServing && this.serving(now)) this.availableSince = now;
    const to = this.state(now);
    if (from === to) return;
    this.changedAt = now;
    this.changeReason = reason;
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

/**
 * One open WebSocket on a backend, counted for /stats in a pair: opened once, closed once
 * (idempotent), on every path. The backend's in-flight unit (its Lease) is held apart, by the
 * forwarding loop, until the WebSocket closes.
 */
export class OpenWebSocket {
  private closed = false;

  constructor(readonly backend: Backend) {
    backend.stats.webSocketOpened();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.stats.webSocketClosed();
  }
}
