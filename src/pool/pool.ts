/**
 * The set of backends and the choice among them.
 *
 * `Pool` is the interface the proxy and the TCP relay use; `LocalPool` keeps its state in this
 * process. A multi-process mode can implement the same interface over shared counters.
 */
import { Backend, type BackendOptions, type StateChange } from "./backend.ts";
import type { SelectionPolicy } from "../policy/policy.ts";

export interface Pool {
  readonly backends: readonly Backend[];
  readonly policy: SelectionPolicy;
  /**
   * Choose an available backend not in `exclude`; when every available backend is excluded,
   * fall back to one of those (a retry on the same backend beats no retry). Undefined when no
   * backend is available at all.
   */
  pick(exclude?: ReadonlySet<Backend>): Backend | undefined;
  availableCount(now?: number): number;
  get(name: string): Backend | undefined;
  add(opts: BackendOptions): Backend;
  remove(name: string): Backend | undefined;
  onStateChange(fn: (change: StateChange) => void): () => void;
}

export class LocalPool implements Pool {
  private list: Backend[] = [];
  private listeners: ((change: StateChange) => void)[] = [];
  /** Reused by pick(): selection allocates nothing per request. */
  private scratch: Backend[] = [];

  /** Backends given to the constructor take a full share at once; later ones ramp up. */
  private running = false;

  constructor(
    readonly policy: SelectionPolicy,
    backends: BackendOptions[] = [],
    private readonly random: () => number = Math.random,
  ) {
    for (const b of backends) this.add(b);
    this.running = true;
  }

  get backends(): readonly Backend[] {
    return this.list;
  }

  get(name: string): Backend | undefined {
    return this.list.find((b) => b.name === name);
  }

  add(opts: BackendOptions): Backend {
    if (this.get(opts.name)) throw new Error(`a backend named "${opts.name}" already exists`);
    // A backend added to a running pool slow-starts like one that came back (HAProxy's
    // slowstart applies to servers that join, not to those present when the process starts).
    const b = new Backend(this.running && opts.rampFrom === undefined ? { ...opts, rampFrom: Date.now() } : opts);
    b.onStateChange((c) => this.listeners.forEach((fn) => fn(c)));
    this.list = [...this.list, b];
    return b;
  }

  remove(name: string): Backend | undefined {
    const b = this.get(name);
    if (b) this.list = this.list.filter((x) => x !== b);
    return b;
  }

  onStateChange(fn: (change: StateChange) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  availableCount(now = Date.now()): number {
    let n = 0;
    for (const b of this.list) if (b.available(now)) n++;
    return n;
  }

  pick(exclude?: ReadonlySet<Backend>): Backend | undefined {
    const now = Date.now();
    const c = this.scratch;
    c.length = 0;
    let fallback = false;
    for (const b of this.list) if (b.available(now) && !exclude?.has(b)) c.push(b);
    if (c.length === 0 && exclude && exclude.size > 0) {
      fallback = true;
      for (const b of this.list) if (b.available(now)) c.push(b);
    }
    if (c.length === 0) return undefined;
    if (!fallback) this.applySlowStart(c, now);
    const chosen = this.policy.pick(c);
    c.length = 0;
    return chosen;
  }

  /**
   * Slow start for every policy at once: a ramping backend stays a candidate for this pick with
   * probability equal to its ramp factor, so its expected share grows linearly from a trickle to
   * a full share. Only thins the list when something else remains to choose from.
   */
  private applySlowStart(c: Backend[], now: number): void {
    let kept = 0;
    for (let i = 0; i < c.length; i++) {
      const b = c[i]!;
      const f = b.rampFactor(now);
      if (f >= 1 || this.random() < f) c[kept++] = b;
    }
    if (kept > 0) c.length = kept;
  }
}
