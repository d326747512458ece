/**
 * A bound on upstream requests in flight at once, with a FIFO queue for the rest, and a second
 * lane for requests whose response head is long in coming (long-polls, slow backends).
 *
 * Bun's fetch keeps at most 64 idle upstream connections (oven-sh/bun#42608): with more
 * requests in flight than that, connections are closed after use and opened again, and a
 * proxy at 256 client connections measured about half the requests/s it did at 64. Queueing
 * here instead keeps the upstream connections reused: with 256 clients, a gate of 64 took a
 * bare forwarder from 14k to 25k req/s on the 2-core reference machine (bench/http.ts).
 * Requests wait in arrival order, and no longer than their own deadline.
 *
 * Why a second lane. The bound is there for the connection churn of
 * many quick requests; a request that has waited `longWait.after` for its response head is not
 * one of those, and holding a shared slot for the rest of its wait (a long-poll: 20 s, 60 s)
 * is what let 64 of them push every other request into SY_QUEUE_TIMEOUT. Such a request gives
 * its shared slot to the first waiter and counts in the long-wait lane instead, bounded by
 * `longWait.limit`. What it costs is at most one new upstream connection when it ends (the
 * idle pool may be full by then), small beside a wait of `after` or more. The two bounds
 * together (with limits.uploadConcurrency) stay within the 256 requests Bun's fetch runs at
 * once (BUN_CONFIG_MAX_HTTP_REQUESTS): past that, requests would queue inside fetch, behind
 * the long waits, where no deadline of ours reaches them. With the long-wait lane full, a long
 * wait keeps its shared slot, as it would with no lane.
 *
 * Nothing moves while nobody waits: a holder is moved only when a request is queued for a
 * slot, the oldest holder first (holders are kept in the order they entered, so the oldest is
 * the first). The gate needs one timer, armed only while requests wait and the oldest holder
 * has not yet waited `after`; no timer per request.
 */

/** Which of the gate's counts a holder is in: none, a shared slot (`limit`), the long-wait lane. */
export const Lane = { None: 0, Shared: 1, Long: 2 } as const;
export type Lane = (typeof Lane)[keyof typeof Lane];

/**
 * What the gate keeps of a request holding a slot: the fields live on the holder itself (the
 * forwarding loop's Trip), so that entering allocates nothing. Start with `newSlot()`.
 */
export interface GateSlot {
  slotLane: Lane;
  /** When it took its shared slot (performance.now()). */
  slotAt: number;
  slotPrev: GateSlot | undefined;
  slotNext: GateSlot | undefined;
  /** Its place in the queue while it waits for a slot (withdraw() ends it). */
  slotWaiter: Waiter | undefined;
}

export function newSlot(): GateSlot {
  return { slotLane: Lane.None, slotAt: 0, slotPrev: undefined, slotNext: undefined, slotWaiter: undefined };
}

export interface LongWait {
  /** Milliseconds a holder waits before it may leave its shared slot for the long-wait lane. */
  after: number;
  /** Long waits in flight at once (0: none move; they keep their shared slot). */
  limit: number;
}

export interface Waiter {
  done: boolean;
  slot: GateSlot;
  resolve: (ok: boolean) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class AdmissionGate {
  private active = 0;
  private long = 0;
  private readonly queue: Waiter[] = [];
  private head = 0;
  /** Waiters still waiting: the queue also holds, until handOver() passes them, ones that are done. */
  private waiters = 0;
  /** Shared-slot holders, oldest first (only while `limit` > 0). */
  private first: GateSlot | undefined;
  private last: GateSlot | undefined;
  /** Armed for when the oldest holder will have waited `longWait.after`, while requests wait. */
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = 0;
  private readonly longLimit: number;
  private readonly longAfter: number;

  /** `limit` 0 means no bound. `longWait` absent or with limit 0: no long-wait lane. */
  constructor(
    private readonly limit: number,
    longWait?: LongWait,
  ) {
    this.longLimit = longWait?.limit ?? 0;
    this.longAfter = longWait?.after ?? 0;
  }

  /** Requests holding a slot now, in either lane. */
  get inFlight(): number {
    return this.active + this.long;
  }

  /** Requests in the long-wait lane now. */
  get longWaits(): number {
    return this.long;
  }

  /** Requests waiting for a slot now. */
  get waiting(): number {
    return this.waiters;
  }

  /**
   * Take a slot for `slot`, waiting at most `maxWaitMs`. Resolves true with the slot held
   * (leave() it exactly once), or false when the wait ran out (no slot held).
   */
  enter(maxWaitMs: number, slot: GateSlot): Promise<boolean> | true {
    if (this.limit === 0) {
      this.active++;
      slot.slotLane = Lane.Shared;
      return true;
    }
    if (this.active < this.limit && this.head === this.queue.length) {
      this.active++;
      this.link(slot);
      return true;
    }
    if (maxWaitMs <= 0) return Promise.resolve(false);
    const promise = new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        done: false,
        slot,
        resolve,
        timer: setTimeout(() => this.give(waiter, false), maxWaitMs),
      };
      slot.slotWaiter = waiter;
      this.queue.push(waiter);
      this.waiters++;
    });
    this.moveLongWaits();
    return promise;
  }

  /**
   * A waiter's client has gone: it stops waiting now (enter() resolves false), rather than
   * holding its place, its timer and its request until a slot or its deadline comes.
   */
  withdraw(slot: GateSlot): void {
    const w = slot.slotWaiter;
    if (w !== undefined && !w.done) this.give(w, false);
  }

  /** End a wait, once: with a slot (`ok`) or without. */
  private give(w: Waiter, ok: boolean): void {
    w.done = true;
    w.slot.slotWaiter = undefined;
    this.waiters--;
    clearTimeout(w.timer);
    w.resolve(ok);
  }

  /** Give a slot back: to the longest-waiting request, or to the pool of free slots. */
  leave(slot: GateSlot): void {
    const lane = slot.slotLane;
    slot.slotLane = Lane.None;
    if (lane === Lane.Long) {
      this.long--;
      // Room in the long-wait lane: a holder that has waited long enough may move now.
      if (this.waiters > 0) this.moveLongWaits();
      return;
    }
    if (lane !== Lane.Shared) throw new Error("AdmissionGate.leave() without a matching enter()");
    if (this.limit === 0) {
      this.active--;
      return;
    }
    this.unlink(slot);
    if (!this.handOver()) this.active--;
  }

  /** Pass a freed shared slot to the longest-waiting request; false when none waits. */
  private handOver(): boolean {
    while (this.head < this.queue.length) {
      const next = this.queue[this.head++]!;
      if (next.done) continue;
      this.compact();
      // The slot passes straight to the waiter: `active` does not change.
      this.link(next.slot);
      this.give(next, true);
      return true;
    }
    this.compact();
    return false;
  }

  /**
   * While requests wait and the long-wait lane has room, move each holder that has waited
   * `longWait.after` (oldest first) to that lane, and give its shared slot to a waiter. Then,
   * if requests still wait, arm the timer for the next holder to reach `after`.
   */
  private moveLongWaits(): void {
    if (this.longLimit === 0) return;
    const now = performance.now();
    let oldest = this.first;
    while (oldest !== undefined && this.long < this.longLimit && this.waiters > 0 && now - oldest.slotAt >= this.longAfter) {
      const slot = oldest;
      oldest = slot.slotNext;
      this.unlink(slot);
      slot.slotLane = Lane.Long;
      this.long++;
      if (!this.handOver()) this.active--;
    }
    if (oldest === undefined || this.long >= this.longLimit || this.waiters === 0) return;
    const at = oldest.slotAt + this.longAfter;
    if (this.timer !== undefined) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.moveLongWaits();
    }, Math.max(1, Math.ceil(at - now)));
    // Waiters have timers of their own; this one alone keeps no process alive.
    this.timer.unref();
  }

  private link(slot: GateSlot): void {
    slot.slotLane = Lane.Shared;
    slot.slotAt = performance.now();
    slot.slotNext = undefined;
    slot.slotPrev = this.last;
    if (this.last === undefined) this.first = slot;
    else this.last.slotNext = slot;
    this.last = slot;
  }

  private unlink(slot: GateSlot): void {
    const { slotPrev: prev, slotNext: next } = slot;
    if (prev === undefined) this.first = next;
    else prev.slotNext = next;
    if (next === undefined) this.last = prev;
    else next.slotPrev = prev;
    slot.slotPrev = slot.slotNext = undefined;
  }

  private compact(): void {
    if (this.head === 0) return;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}
