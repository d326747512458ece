/**
 * Active health checking. Each probed backend has one loop that probes, waits, and probes
 * again: probes for one backend never overlap, are spread over the interval with jitter (so a
 * hundred backends are not probed in one burst), each times out on its own AbortController,
 * and every loop stops with stop().
 *
 * Probing is apart from flipping (Pingora's observe_health): `HealthTally` counts consecutive
 * results and reports a flip only when `fall` failures or `rise` successes are reached; only
 * a flip changes the backend (whose state-change event the balancer logs, once).
 *
 * Timing. Probes of one backend start `interval` apart at most (measured start to start, minus
 * up to 10% jitter), or at once after a probe that took longer than that. So a backend that
 * fails is marked down within `fall × interval + timeout` of failing, and one that recovers is
 * marked up within `rise × interval` plus one probe's duration.
 *
 * Start-up. start() probes every backend at once and resolves when all have answered (or timed
 * out): at most `timeout`. That first result alone decides, without rise/fall, since there is no
 * earlier state worth protecting: a backend that fails it starts down, so traffic only ever goes
 * to backends not known to be down.
 */
import type { Backend } from "../pool/backend.ts";
import type { ResolvedCheck } from "./check.ts";
import { createProbe, type Probe, type ProbeResult } from "./probe.ts";

/** Consecutive-result counting for one backend. Pure: no timers, no I/O. */
export class HealthTally {
  private streak = 0;
  constructor(
    private healthy: boolean,
    private readonly rise: number,
    private readonly fall: number,
  ) {}

  /** Returns the new health when this result completes a flip, else undefined. */
  observe(ok: boolean): boolean | undefined {
    if (ok === this.healthy) {
      this.streak = 0;
      return undefined;
    }
    this.streak++;
    if (this.streak < (ok ? this.rise : this.fall)) return undefined;
    this.streak = 0;
    this.healthy = ok;
    return ok;
  }

  get isHealthy(): boolean {
    return this.healthy;
  }

  /** Consecutive results against the current health so far. */
  get count(): number {
    return this.streak;
  }

  /** Passive detection or an operator changed health: count from the new state. */
  reset(healthy: boolean): void {
    this.healthy = healthy;
    this.streak = 0;
  }
}

interface Watch {
  backend: Backend;
  check: ResolvedCheck;
  probe: Probe;
  tally: HealthTally;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The probe in flight: its controller (fired by its timeout or stop()) and its end. */
  inflight: { controller: AbortController; done: Promise<ProbeResult> } | undefined;
  /** Set by unwatch(): the loop ends at its next step. */
  removed: boolean;
}

export class HealthMonitor {
  private watches: Watch[] = [];
  /** One per start()…stop(): a loop from an earlier run sees its signal aborted and ends. */
  private run: AbortController | undefined;
  /** What the last stop() waits for. */
  private stopping: Promise<void> = Promise.resolve();
  /** Probes of unwatched backends, aborted but not yet ended. */
  private readonly ending = new Set<Promise<void>>();
  /** start()'s probes are done: a backend watched from now on was added while running. */
  private started = false;

  constructor(
    checks: ReadonlyMap<Backend, ResolvedCheck>,
    private readonly random: () => number = Math.random,
  ) {
    for (const [backend, check] of checks) this.watches.push(this.newWatch(backend, check));
  }

  probes(backend: Backend): boolean {
    return this.watches.some((w) => w.backend === backend);
  }

  get running(): boolean {
    return this.run !== undefined;
  }

  /**
   * Probe every backend at once, apply the results (the first result alone decides; see the
   * top of this file), then start the loops. Resolves within the longest `timeout`.
   */
  async start(): Promise<void> {
    if (this.run) return;
    const run = new AbortController();
    this.run = run;
    this.started = false;
    await Promise.all(this.watches.map((w) => this.begin(w, run.signal, "at start-up")));
    this.started = true;
  }

  /**
   * Stop every loop: no timer is left and every probe in flight is aborted. Resolves when
   * those probes have ended; `pending` is 0 from then on.
   */
  stop(): Promise<void> {
    const run = this.run;
    if (!run) return this.stopping;
    this.run = undefined;
    run.abort();
    const ending: Promise<unknown>[] = [...this.ending];
    for (const w of this.watches) {
      clearTimeout(w.timer);
      w.timer = undefined;
      if (w.inflight) {
        w.inflight.controller.abort();
        ending.push(w.inflight.done);
      }
    }
    // A second stop() (or one from shutdown and one from a test) waits for the same probes.
    this.stopping = Promise.all(ending).then(() => {});
    return this.stopping;
  }

  /**
   * Probe a backend added while running (or before start()). By default its first result
   * decides, as at start-up, and the returned promise resolves once it has. `carryOver` is for a
   * backend that stays while its check changes (a reload): its health is kept, the new check's
   * rise/fall apply from the first result, and its loop starts at a random point of the interval.
   */
  async watch(backend: Backend, check: ResolvedCheck, opts: { carryOver?: boolean } = {}): Promise<void> {
    if (this.probes(backend)) return;
    const w = this.newWatch(backend, check);
    this.watches = [...this.watches, w];
    if (!this.run) return;
    if (opts.carryOver) this.schedule(w, this.run.signal, performance.now() + check.interval * this.random());
    else await this.begin(w, this.run.signal, this.started ? "on its first check" : "at start-up");
  }

  /** The check a backend is probed with, if any. */
  checkOf(backend: Backend): ResolvedCheck | undefined {
    return this.watches.find((w) => w.backend === backend)?.check;
  }

  /** Timers and probes pending for one backend: 0 once it is unwatched and its probe has ended. */
  pendingFor(backend: Backend): number {
    const w = this.watches.find((x) => x.backend === backend);
    return w ? (w.timer !== undefined ? 1 : 0) + (w.inflight !== undefined ? 1 : 0) : 0;
  }

  /**
   * Stop probing a backend (removed from the pool, or its check replaced): its timer is
   * cleared and its probe in flight aborted. Resolves when that probe has ended; stop() waits
   * for it too, so nothing of a removed backend outlives the monitor.
   */
  unwatch(backend: Backend): Promise<void> {
    const w = this.watches.find((x) => x.backend === backend);
    if (!w) return Promise.resolve();
    this.watches = this.watches.filter((x) => x !== w);
    w.removed = true;
    clearTimeout(w.timer);
    w.timer = undefined;
    if (!w.inflight) return Promise.resolve();
    w.inflight.controller.abort();
    const ended = w.inflight.done.then(() => {
      this.ending.delete(ended);
    });
    this.ending.add(ended);
    return ended;
  }

  /** Timers and probes still pending: 0 once stop() has resolved. */
  get pending(): number {
    let n = 0;
    for (const w of this.watches) n += (w.timer !== undefined ? 1 : 0) + (w.inflight !== undefined ? 1 : 0);
    return n + this.ending.size;
  }

  private newWatch(backend: Backend, check: ResolvedCheck): Watch {
    return {
      backend, check, probe: createProbe(backend, check),
      tally: new HealthTally(backend.isHealthy, check.rise, check.fall),
      timer: undefined, inflight: undefined, removed: false,
    };
  }

  /** The start-up probe, then the loop, its first turn at a random point of the interval. */
  private async begin(w: Watch, signal: AbortSignal, why: string): Promise<void> {
    const started = performance.now();
    const r = await this.probeOnce(w);
    if (signal.aborted || w.removed) return;
    w.tally.reset(w.backend.isHealthy);
    // A probe the proxy could not make (no descriptor left) leaves the backend as it was.
    if (r.ok !== w.backend.isHealthy && r.local === undefined) this.flip(w, r.ok, r, why);
    this.schedule(w, signal, started + w.check.interval * this.random());
  }

  /** Next probe at `at` (performance.now() time), or at once if that has passed. */
  private schedule(w: Watch, signal: AbortSignal, at: number): void {
    if (signal.aborted || w.removed) return;
    w.timer = setTimeout(() => {
      w.timer = undefined;
      void this.turn(w, signal);
    }, Math.max(0, at - performance.now()));
  }

  private async turn(w: Watch, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const r = await this.probeOnce(w);
    if (signal.aborted || w.removed) return;
    this.observe(w, r);
    // Up to 10% early, never late: probes of many backends drift apart instead of lining up,
    // and the detection bound (fall × interval + timeout) still holds.
    this.schedule(w, signal, started + w.check.interval * (1 - 0.1 * this.random()));
  }

  private observe(w: Watch, r: ProbeResult): void {
    // The proxy's own shortage (net/network-error.ts) is no result of the backend's: shown as
    // the last check, counted neither way.
    if (r.local !== undefined) return;
    // Passive detection may have changed health since the last probe: count from there.
    if (w.tally.isHealthy !== w.backend.isHealthy) w.tally.reset(w.backend.isHealthy);
    const flip = w.tally.observe(r.ok);
    if (flip === undefined || flip === w.backend.isHealthy) return;
    const n = flip ? w.check.rise : w.check.fall;
    this.flip(w, flip, r, `after ${n} consecutive ${flip ? (n === 1 ? "success" : "successes") : n === 1 ? "failure" : "failures"}`);
  }

  private flip(w: Watch, healthy: boolean, r: ProbeResult, why: string): void {
    w.tally.reset(healthy);
    // "http check failed after 3 consecutive failures: status 503"
    w.backend.setHealthy(healthy, `${w.check.type} check ${healthy ? "passed" : "failed"} ${why}: ${r.detail}`);
  }

  private probeOnce(w: Watch): Promise<ProbeResult> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), w.check.timeout);
    const started = performance.now();
    const done = w.probe.run(controller.signal).then(
      (r) => r,
      // A probe reports failures as results; a throw is a bug, but still a failed check.
      (e: unknown): ProbeResult => ({ ok: false, detail: `probe error: ${e instanceof Error ? e.message : String(e)}` }),
    ).then((r) => {
      clearTimeout(timer);
      w.inflight = undefined;
      // A probe cut short by stop()/unwatch() says nothing about the backend.
      if (!(controller.signal.aborted && (this.run === undefined || w.removed))) {
        w.backend.recordCheck({ ok: r.ok, detail: r.detail, at: Date.now(), durationMs: performance.now() - started });
      }
      return r;
    });
    w.inflight = { controller, done };
    return done;
  }
}
