/**
 * The set of backends and the choice among them.
 *
 * `Pool` is the interface the proxy and the TCP relay use; `LocalPool` keeps its state in this
 * process. A multi-process mode can implement the same interface over shared counters.
 */
import { Backend, type BackendOptions, type StateChange } from "./backend.ts";
import type { SelectionPolicy } from "../policy/policy.ts";
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
  availableCount(now?: number): number;
  /**
   * The priority of the tier that takes new traffic now (see tiers.ts): every pick chooses
   * among available backends of this priority only. Undefined when no backend is available.
   */
  activePriority(now?: number): number | undefined;
  /** The requests and retries retry.budget counts, and its refusals: runtime state, carried by reloads. */
  readonly retryBudget: RetryBudget;
  get(name: string): Backend | undefined;
  /** A new backend (from options), or one built by the caller (reconcile builds them). */
  add(opts: BackendOptions | Backend): Backend;
  /** Take a backend out: it gets no new traffic, and the pool stops listening to it. */
  remove(name: string): Backend | undefined;
  /** Put the backends in this order of names (the config's), those not named last. */
  order(names: readonly string[]): void;
  onStateChange(fn: (change: StateChange) => void): () => void;
}

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
    this.subscriptions.set(b, b.onStateChange((c) => this.listeners.forEach((fn) => fn(c))));
    this.list = [...this.list, b];
    this.currentPolicy.membersChanged?.(this.list);
    return b;
  }

  remove(name: string): Backend | undefined {
    const b = this.get(name);
    if (!b) return undefined;
    this.list = this.list.filter((x) => x !== b);
    this.subscriptions.get(b)?.();
    this.subscriptions.delete(b);
    this.currentPolicy.membersChanged?.(this.list);
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
    return activePriority(this.list, now);
  }

  pick(exclude?: ReadonlySet<Backend>, key?: string, preferred?: Backend): Backend | undefined {
    const now = Date.now();
    // The tier first (tiers.ts): the policy, affinity and slow start act within it.
    const c = this.scratch;
    let tier = activeTier(this.list, now, exclude, c);
    let fallback = false;
    if (tier === undefined && exclude !== undefined && exclude.size > 0) {
      fallback = true;
      tier = activeTier(this.list, now, undefined, c);
    }
    if (tier === undefined) return undefined;
    // Session affinity outranks the policy and slow start: the session's backend is taken
    // while it can take it (available, not excluded, in the tier). A removed backend is no
    // longer a candidate, and a standby's sessions come back to the active tier when it is.
    if (!fallback && preferred !== undefined && c.includes(preferred)) {
      c.length = 0;
      return preferred;
    }
    if (!fallback) this.applySlowStart(c, now);
    const chosen = this.currentPolicy.pick(c, key);
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
