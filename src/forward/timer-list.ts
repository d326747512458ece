/**
 * Many timers of nearly the same length, on one setTimeout: the response-head timers of one
 * forwarder's tries. A try arms its timer when it starts and disarms it when the head comes,
 * usually within milliseconds of a timeout of seconds, so a timer per try (a Timeout object,
 * a heap insert and a removal) was pure overhead on the hot path.
 *
 * Entries are kept in an intrusive list in deadline order. Insertion walks back from the tail,
 * so it is O(1) while deadlines are armed in order, and O(entries passed) otherwise: a list is
 * meant for one kind of deadline, armed in order. The forwarder keeps two: tries armed with the
 * same retry.perTryTimeout, and tries cut short by their request's overall deadline (which
 * come in request order). Removal unlinks, and neither allocates. The one setTimeout is for
 * the earliest deadline; it is not moved when that entry leaves (the common case), only when
 * it fires early and finds nothing due, so a forwarder re-arms it about once per timeout
 * period, however many requests pass. nginx keeps its timers in one red-black tree for the
 * same reason.
 */

/** An entry: the object that owns the timer, linked in place (no node is allocated). */
export interface TimerEntry {
  /** When it is due (performance.now() time); meaningful while listed. */
  timerAt: number;
  timerPrev: TimerEntry | undefined;
  timerNext: TimerEntry | undefined;
  /** Listed now (a removed or fired entry is not). */
  timerListed: boolean;
  /** Called once when due, after being unlinked. */
  timerFired(): void;
}

export class TimerList {
  private head: TimerEntry | undefined;
  private tail: TimerEntry | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires; Infinity when none is armed. */
  private armedAt = Infinity;
  private readonly onTimer = () => this.fire();

  /** Arm `e` to fire `ms` from `now` (disarming it first if it was armed). */
  add(e: TimerEntry, now: number, ms: number): void {
    if (e.timerListed) this.remove(e);
    const at = now + ms;
    e.timerAt = at;
    e.timerListed = true;
    // From the tail: a new deadline is nearly always the latest.
    let after = this.tail;
    while (after !== undefined && after.timerAt > at) after = after.timerPrev;
    e.timerPrev = after;
    e.timerNext = after === undefined ? this.head : after.timerNext;
    if (e.timerNext !== undefined) e.timerNext.timerPrev = e;
    else this.tail = e;
    if (after !== undefined) after.timerNext = e;
    else this.head = e;
    if (at < this.armedAt) this.arm(at, now);
  }

  /** Disarm `e`; nothing if it is not armed. The shared timer stays as it is. */
  remove(e: TimerEntry): void {
    if (!e.timerListed) return;
    e.timerListed = false;
    const { timerPrev: prev, timerNext: next } = e;
    if (prev !== undefined) prev.timerNext = next;
    else this.head = next;
    if (next !== undefined) next.timerPrev = prev;
    else this.tail = prev;
    e.timerPrev = e.timerNext = undefined;
  }

  /** Entries armed now (tests, diagnostics): walks the list. */
  get size(): number {
    let n = 0;
    for (let e = this.head; e !== undefined; e = e.timerNext) n++;
    return n;
  }

  private arm(at: number, now: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(this.onTimer, Math.max(0, at - now));
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = performance.now();
    // Each due entry is unlinked before it is told: what it does (a retry arms a new timer)
    // may change the list, so the head is read afresh every time.
    for (let e = this.head; e !== undefined && e.timerAt <= now; e = this.head) {
      this.remove(e);
      e.timerFired();
    }
    // What is left (a timer may wake a little early) is armed for, unless an entry added
    // meanwhile armed the timer for it already.
    const head = this.head;
    if (head !== undefined && head.timerAt < this.armedAt) this.arm(head.timerAt, now);
  }
}
