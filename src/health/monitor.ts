/**
 * Active health checking. Each probed backend has one loop that probes, waits, and probes
 * again: probes for one backend never overlap, are spread over the interval with jitter (so a
 * hundred backends are not probed in one burst), each times out on its own AbortController,
 * and every loop stops with stop().
 *
 * Probing is apart from flipping (Pingora's observe_health): `HealthTally` counts consecutive
 * results and reports a flip only when `fall` failures or `rise` successes are reached; only
 * a flip changes the backend (whose state-change event the balancer logs, once).
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
  inflight: AbortController | undefined;
}

export class HealthMonitor {
  private readonly watches: Watch[] = [];
  private running = false;

  constructor(
    checks: ReadonlyMap<Backend, ResolvedCheck>,
    private readonly random: () => number = Math.random,
  ) {
    for (const [backend, check] of checks) {
      this.watches.push({
        backend, check, probe: createProbe(backend, check),
        tally: new HealthTally(backend.isHealthy, check.rise, check.fall),
        timer: undefined, inflight: undefined,
      });
    }
  }

  probes(backend: Backend): boolean {
    return this.watches.some((w) => w.backend === backend);
  }

  /**
   * Probe every backend at once, apply the results (at start-up one result decides: there is
   * no earlier state worth protecting with rise/fall), then start the loops.
   */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await Promise.all(
      this.watches.map(async (w) => {
        const r = await this.probeOnce(w);
        if (!this.running) return;
        if (r.ok !== w.backend.isHealthy) {
          this.flip(w, r.ok, r, "at start-up");
        }
        this.schedule(w, w.check.interval * this.random());
      }),
    );
  }

  stop(): void {
    this.running = false;
    for (const w of this.watches) {
      clearTimeout(w.timer);
      w.timer = undefined;
      w.inflight?.abort();
    }
  }

  /** Timers and probes still pending: zero after stop(). */
  get pending(): number {
    return this.watches.filter((w) => w.timer !== undefined || w.inflight !== undefined).length;
  }

  private schedule(w: Watch, delay: number): void {
    if (!this.running) return;
    w.timer = setTimeout(async () => {
      w.timer = undefined;
      const r = await this.probeOnce(w);
      if (!this.running) return;
      this.observe(w, r);
      // ±10% jitter keeps probes of many backends from lining up again.
      this.schedule(w, w.check.interval * (0.9 + 0.2 * this.random()));
    }, delay);
  }

  private observe(w: Watch, r: ProbeResult): void {
    // Passive detection may have changed health since the last probe: count from there.
    if (w.tally.isHealthy !== w.backend.isHealthy) w.tally.reset(w.backend.isHealthy);
    const flip = w.tally.observe(r.ok);
    if (flip !== undefined && flip !== w.backend.isHealthy) this.flip(w, flip, r, `after ${flip ? w.check.rise : w.check.fall} ${flip ? "successes" : "failures"}`);
  }

  private flip(w: Watch, healthy: boolean, r: ProbeResult, why: string): void {
    w.tally.reset(healthy);
    const reason = `${w.check.type} check ${healthy ? "passed" : "failed"} ${why}: ${r.detail}`;
    w.backend.setHealthy(healthy, reason);
  }

  private async probeOnce(w: Watch): Promise<ProbeResult> {
    const controller = new AbortController();
    w.inflight = controller;
    const timer = setTimeout(() => controller.abort(), w.check.timeout);
    const started = performance.now();
    try {
      const r = await w.probe.run(controller.signal);
      w.backend.lastCheck = { ok: r.ok, detail: r.detail, at: Date.now(), durationMs: performance.now() - started };
      return r;
    } finally {
      clearTimeout(timer);
      w.inflight = undefined;
    }
  }
}
