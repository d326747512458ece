/**
 * The set of backends and the choice among them.
 *
 * `Pool` is the interface the proxy and the TCP relay use; `LocalPool` keeps its state in this
 * process. A multi-process mode can implement the same interface over shared counters.
 */
import { Backend, type BackendOptions, type StateChange } from "./backend.ts";
import type { SelectionPolicy } from "./selection.ts";
import { activePriority, activeTier } from "./tiers.ts";
import { RetryBudget } from "./retry-budget.ts";

export interface Pool {
  /** The members. Replaced, never changed in place, when one is added or removed. */
  readonly backends: readonly Backend[];
  readonly policy: SelectionPolicy;
  /** A new strategy (a reload): selection state starts over, the backends stay. */
  setPolicy(policy: SelectionPolicy): void;
  /**
   * Choose an available backend not in `exclude`, from the best priority tier that has one
   * (tiers.ts); when every available backend is excluded, fall back to one of those, in the
   * active tier (a retry on the same backend beats no retry). Undefined when no backend is
   * available at all.
   *
   * `key` is the request's affinity key for hashing policies (see policy/hash-key.ts).
   * `preferred` is the backend a sticky-session cookie names: chosen whenever it is available,
   * not excluded and in the tier chosen, whatever the policy (see policy/sticky.ts).
   */
  pick(exclude?: ReadonlySet<Backend>, key?: string, preferred?: Backend): Backend | undefined;
  /** Backends available by health, drain, ejection and room: what /readyz reports. */
  availableCount(now?: number): number;
  /**
   * The priority of the tier that takes new traffic now: out of panic mode the tiers rule's
   * (tiers.ts), in panic mode the tier panic balances over. Undefined when pick() would find
   * nothing.
   */
  activePriority(now?: number): number | undefined;
  /** The requests and retries retry.budget counts, and its refusals: runtime state, carried by reloads. */
  readonly retryBudget: RetryBudget;
  /** Backends pick() may choose now: the available ones, or in panic mode every one in service with room. */
  routableCount(now?: number): number;
  /** Whether pick() is in panic mode now (see LocalPool). */
  panicking(now?: number): boolean;
  /** Panic mode's figures: how often it began, and how many picks it made. */
  readonly panic: PanicFigures;
  /** The panic threshold in force, a percentage (0: panic mode off). */
  readonly panicThreshold: number;
  /** With workers: the panic picks they reported, summed (added to this process's own). */
  setRemotePanicPicks(n: number): void;
  /** A new panic threshold (a percentage; 0 turns panic mode off). */
  setPanicThreshold(percent: number): void;
  /** Told once each time panic mode begins or ends. */
  onPanicChange(fn: (change: PanicChange) => void): () => void;
  get(name: string): Backend | undefined;
  /** A new backend (from options), or one built by the caller (reconcile builds them). */
  add(opts: BackendOptions | Backend): Backend;
  /** Take a backend out: it gets no new traffic, and the pool stops listening to it. */
  remove(name: string): Backend | undefined;
  /** Put the backends in this order of names (the config's), those not named last. */
  order(names: readonly string[]): void;
  onStateChange(fn: (change: StateChange) => void): () => void;
}

/** Panic mode's counters, changed only by the pool (and, with workers, set from their reports). */
export interface PanicFigures {
  /** Times panic mode began (in the process that decides health: the owner, with workers). */
  readonly entered: number;
  /** Picks made in panic mode: requests (HTTP) or connections (TCP) balanced over unhealthy backends too. */
  readonly picks: number;
}

export interface PanicChange {
  panic: boolean;
  /** Backends serving (healthy, not ejected) and backends in service (enabled, not forced down). */
  serving: number;
  inService: number;
  threshold: number;
}

/** Envoy's default healthy_panic_threshold. */
export const DEFAULT_PANIC_THRESHOLD = 50;

/**
 * Availability is decided here, in one place, for every policy (they only see the candidates
 * this hands them):
 *
 * - Normal: the backends that are `available()` (healthy, enabled, not ejected, with room).
 * - Panic mode (Envoy's healthy panic threshold): when fewer than `panicThreshold` percent of
 *   the backends in service (enabled and not forced down) are serving (healthy and not
 *   ejected), health is ignored and every backend in service with room is a candidate. When
 *   most of a pool looks unhealthy the likelier fault is the detection (a shared dependency, a
 *   bad check, a burst of errors that ejected too much), and piling all traffic on the few
 *   left would take them down too; spreading it keeps some requests answered. Drained and
 *   forced-down backends stay out: an operator's intent is never overridden.
 * - Priority tiers (tiers.ts) come first: normally the candidates are the available backends of
 *   the best tier that has one. Panic mode is judged per tier, and begins only when every tier
 *   is under the threshold: while a standby tier is healthy enough, failing over to it (or
 *   staying on the primary tier's few) beats spreading traffic over backends that look down.
 *   In panic the candidates are the backends in service with room of one tier: the best with a
 *   backend serving, or the best present when none is.
 *   With one tier (no priorities, the common case) this is the whole-pool rule above.
 */
export class LocalPool implements Pool {
  private list: Backend[] = [];
  private listeners: ((change: StateChange) => void)[] = [];
  /** Per backend, the pool's own subscription to its state changes, ended by remove(). */
  private readonly subscriptions = new Map<Backend, () => void>();
  private currentPolicy: SelectionPolicy;
  readonly retryBudget = new RetryBudget();
  /** Reused by pick(): selection allocates nothing per request. */
  private scratch: Backend[] = [];

  /** Backends given to the constructor take a full share at once; later ones ramp up. */
  private running = false;

  private threshold = DEFAULT_PANIC_THRESHOLD;
  /** The panic mode last seen (by a pick or a state change): announced when it flips. */
  private inPanic = false;
  private readonly panicFigures = { entered: 0, picks: 0 };
  /** With workers: panic picks the workers reported, beside this process's own. */
  private remotePanicPicks = 0;
  private panicListeners: ((change: PanicChange) => void)[] = [];

  constructor(
    policy: SelectionPolicy,
    backends: BackendOptions[] = [],
    private readonly random: () => number = Math.random,
  ) {
    this.currentPolicy = policy;
    for (const b of backends) this.add(b);
    this.running = true;
    // Announced even when empty, so that a policy's per-member state always matches the pool.
    if (backends.length === 0) this.currentPolicy.membersChanged?.(this.list);
  }

  get policy(): SelectionPolicy {
    return this.currentPolicy;
  }

  setPolicy(policy: SelectionPolicy): void {
    this.currentPolicy = policy;
    policy.membersChanged?.(this.list);
  }

  get backends(): readonly Backend[] {
    return this.list;
  }

  get(name: string): Backend | undefined {
    return this.list.find((b) => b.name === name);
  }

  add(opts: BackendOptions | Backend): Backend {
    if (this.get(opts.name)) throw new Error(`a backend named "${opts.name}" already exists`);
    // A backend added to a running pool slow-starts like one that came back (HAProxy's
    // slowstart applies to servers that join, not to those present when the process starts).
    // One built by the caller has said when its ramp starts.
    const b = opts instanceof Backend ? opts : new Backend(this.running && opts.rampFrom === undefined ? { ...opts, rampFrom: Date.now() } : opts);
    this.subscriptions.set(b, b.onStateChange((c) => {
      this.listeners.forEach((fn) => fn(c));
      this.panicking();
    }));
    this.list = [...this.list, b];
    this.currentPolicy.membersChanged?.(this.list);
    if (this.running) this.panicking();
    return b;
  }

  remove(name: string): Backend | undefined {
    const b = this.get(name);
    if (!b) return undefined;
    this.list = this.list.filter((x) => x !== b);
    this.subscriptions.get(b)?.();
    this.subscriptions.delete(b);
    this.currentPolicy.membersChanged?.(this.list);
    this.panicking();
    return b;
  }

  order(names: readonly string[]): void {
    const rank = new Map(names.map((n, i) => [n, i]));
    this.list = [...this.list].sort((a, b) => (rank.get(a.name) ?? names.length) - (rank.get(b.name) ?? names.length));
    // Every reconcile ends here, after it has applied new weights in place: the policy's
    // per-member state (the hash ring) is rebuilt for them, once per reconcile.
    this.currentPolicy.membersChanged?.(this.list);
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

  activePriority(now = Date.now()): number | undefined {
    // In panic the tier is panic mode's (pick() takes no other); otherwise the tiers rule's.
    return this.panicTier(now) ?? activePriority(this.list, now);
  }

  routableCount(now = Date.now()): number {
    const tier = this.panicTier(now);
    let n = 0;
    for (const b of this.list) if (tier === undefined ? b.available(now) : b.priority === tier && b.inService() && b.hasRoom()) n++;
    return n;
  }

  get panic(): PanicFigures {
    return { entered: this.panicFigures.entered, picks: this.panicFigures.picks + this.remotePanicPicks };
  }

  /** With workers: the panic picks they reported, summed (the owner's process makes none). */
  setRemotePanicPicks(n: number): void {
    this.remotePanicPicks = n;
  }

  get panicThreshold(): number {
    return this.threshold;
  }

  setPanicThreshold(percent: number): void {
    this.threshold = percent;
    this.panicking();
  }

  onPanicChange(fn: (change: PanicChange) => void): () => void {
    this.panicListeners.push(fn);
    return () => {
      this.panicListeners = this.panicListeners.filter((l) => l !== fn);
    };
  }

  /**
   * Whether the pool is in panic mode at `now` (see the class comment). Announces a flip, once:
   * called on every pick and on every change of a member's state, so a flip is told when it
   * happens even with no traffic (an ejection that runs out by the clock is told by the pick
   * that sees it, or by its owner's readmit a moment later).
   */
  panicking(now = Date.now()): boolean {
    return this.panicTier(now) !== undefined;
  }

  /**
   * The tier panic mode balances over at `now`, or undefined when the pool is not in panic
   * (no tier has at least the threshold's share of its backends in service serving): the best
   * tier with a backend serving, or the best tier present when none has. Strictly fewer than the
   * threshold, as Envoy: 2 backends at 50% with one serving is no panic. No pass at all with
   * panic mode off; one with one tier; with several, two more per tier (tiers are few, and those
   * run only when the whole pool's share is under the threshold).
   */
  private panicTier(now: number): number | undefined {
    if (this.threshold <= 0) {
      this.observePanic(false, 0, 0);
      return undefined;
    }
    let inService = 0;
    let serving = 0;
    let best = Infinity;
    let worst = -Infinity;
    /** The best priority with a backend serving. */
    let bestServing = Infinity;
    for (const b of this.list) {
      if (!b.inService()) continue;
      inService++;
      const p = b.priority;
      if (b.serving(now)) {
        serving++;
        if (p < bestServing) bestServing = p;
      }
      if (p < best) best = p;
      if (p > worst) worst = p;
    }
    let panic = this.threshold > 0 && inService > 0 && serving * 100 < this.threshold * inService;
    // With several tiers, panic needs every tier under the threshold. The whole pool's share is
    // their average, so when it is at or over the threshold some tier is too (the test above).
    if (panic && best !== worst) {
      for (let p = best; p !== Infinity; p = nextPriority(this.list, p)) {
        let n = 0;
        let up = 0;
        for (const b of this.list) {
          if (b.priority !== p || !b.inService()) continue;
          n++;
          if (b.serving(now)) up++;
        }
        if (n > 0 && up * 100 >= this.threshold * n) {
          panic = false;
          break;
        }
      }
    }
    this.observePanic(panic, serving, inService);
    if (!panic) return undefined;
    // The best tier that still has a backend serving (where the tiers would send traffic
    // anyway), or the best tier present when none has.
    return bestServing !== Infinity ? bestServing : best;
  }

  /** Announce a flip of panic mode, once. */
  private observePanic(panic: boolean, serving: number, inService: number): void {
    if (panic === this.inPanic) return;
    this.inPanic = panic;
    if (panic) this.panicFigures.entered++;
    const change: PanicChange = { panic, serving, inService, threshold: this.threshold };
    for (const fn of this.panicListeners) fn(change);
  }

  pick(exclude?: ReadonlySet<Backend>, key?: string, preferred?: Backend): Backend | undefined {
    const now = Date.now();
    const c = this.scratch;
    const panicTier = this.panicTier(now);
    let fallback = false;
    if (panicTier === undefined) {
      // The tier first (tiers.ts): the policy, affinity and slow start act within it.
      let tier = activeTier(this.list, now, exclude, c);
      if (tier === undefined && exclude !== undefined && exclude.size > 0) {
        fallback = true;
        tier = activeTier(this.list, now, undefined, c);
      }
      if (tier === undefined) return undefined;
    } else {
      // Panic: health is ignored within the best tier; drained and forced-down backends stay out.
      c.length = 0;
      for (const b of this.list) if (b.priority === panicTier && b.inService() && b.hasRoom() && !exclude?.has(b)) c.push(b);
      if (c.length === 0 && exclude !== undefined && exclude.size > 0) {
        fallback = true;
        for (const b of this.list) if (b.priority === panicTier && b.inService() && b.hasRoom()) c.push(b);
      }
      if (c.length === 0) return undefined;
    }
    // Session affinity outranks the policy and slow start: the session's backend is taken
    // while it can take it (a candidate, not excluded). A removed backend is no longer a
    // candidate, and a standby's sessions come back to the active tier when it is.
    if (!fallback && preferred !== undefined && c.includes(preferred)) {
      c.length = 0;
      if (panicTier !== undefined) this.panicFigures.picks++;
      return preferred;
    }
    // In panic every candidate takes a full share: health, and so a ramp after it, is ignored.
    if (!fallback && panicTier === undefined) this.applySlowStart(c, now);
    const chosen = this.currentPolicy.pick(c, key);
    c.length = 0;
    if (panicTier !== undefined && chosen !== undefined) this.panicFigures.picks++;
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

/** The smallest priority above `p` among `list`, or Infinity. */
function nextPriority(list: readonly Backend[], p: number): number {
  let next = Infinity;
  for (const b of list) if (b.priority > p && b.priority < next) next = b.priority;
  return next;
}
