/**
 * A bound on upstream requests in flight at once, with a FIFO queue for the rest.
 *
 * Bun's fetch keeps at most 64 idle upstream connections (oven-sh/bun#42608): with more
 * requests in flight than that, connections are closed after use and opened again, and a
 * proxy at 256 client connections measured about half the requests/s it did at 64. Queueing
 * here instead keeps the upstream connections reused: with 256 clients, a gate of 64 took a
 * bare forwarder from 14k to 25k req/s on the 2-core reference machine (bench/http.ts).
 * Requests wait in arrival order, and no longer than their own deadline.
 */
export class AdmissionGate {
  private active = 0;
  private readonly queue: Waiter[] = [];
  private head = 0;

  /** `limit` 0 means no bound. */
  constructor(private readonly limit: number) {}

  /** Requests holding a slot now. */
  get inFlight(): number {
    return this.active;
  }

  /** Requests waiting for a slot now. */
  get waiting(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (!this.queue[i]!.done) n++;
    return n;
  }

  /**
   * Take a slot, waiting at most `maxWaitMs`. Resolves true with the slot held (leave() it
   * exactly once), or false when the wait ran out (no slot held).
   */
  enter(maxWaitMs: number): Promise<boolean> | true {
    if (this.limit === 0 || (this.active < this.limit && this.head === this.queue.length)) {
      this.active++;
      return true;
    }
    if (maxWaitMs <= 0) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        done: false,
        resolve,
        timer: setTimeout(() => {
          waiter.done = true;
          resolve(false);
        }, maxWaitMs),
      };
      this.queue.push(waiter);
    });
  }

  /** Give a slot back: to the longest-waiting request, or to the pool of free slots. */
  leave(): void {
    while (this.head < this.queue.length) {
      const next = this.queue[this.head++]!;
      if (next.done) continue;
      next.done = true;
      clearTimeout(next.timer);
      this.compact();
      // The slot passes straight to the waiter: `active` does not change.
      next.resolve(true);
      return;
    }
    this.compact();
    if (this.active <= 0) throw new Error("AdmissionGate.leave() without a matching enter()");
    this.active--;
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

interface Waiter {
  done: boolean;
  resolve: (ok: boolean) => void;
  timer: ReturnType<typeof setTimeout>;
}
