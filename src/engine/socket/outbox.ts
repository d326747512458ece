/**
 * Bytes waiting to be written to one socket. Bun's `socket.write()` does not buffer: it takes
 * what the kernel accepts and returns that count (Bun 1.4.5), so the rest is kept here and
 * written from `drain`. `pending` is what the other side's backpressure looks at: past a high
 * mark the reader feeding this socket is paused, and `onDrained` resumes it.
 */
import type { Socket } from "bun";

/** Past this many unwritten bytes the source feeding a socket is paused. */
export const HIGH_WATER = 64 * 1024;

export class Outbox {
  private chunks: Uint8Array[] = [];
  pending = 0;
  /** Set by the side that paused its source; called once the queue is empty again. */
  onDrained: (() => void) | undefined;

  constructor(private readonly socket: Socket<unknown>) {}

  /**
   * Write now what the kernel takes, keep the rest. False once the socket is closed.
   * `transient`: `data` is a view of a buffer that is about to be reused (bytes.ts headWriter),
   * so what is kept is copied.
   */
  write(data: Uint8Array, transient = false): boolean {
    if (this.pending > 0) {
      this.chunks.push(transient ? data.slice() : data);
      this.pending += data.length;
      return true;
    }
    const n = this.socket.write(data);
    if (n < 0) return false;
    if (n < data.length) {
      const rest = transient ? data.slice(n) : data.subarray(n);
      this.chunks.push(rest);
      this.pending += rest.length;
    }
    return true;
  }

  /** Hand over what is still queued, in order: a tunnel takes the socket over (tunnel.ts). */
  takeAll(): Uint8Array[] {
    const chunks = this.chunks;
    this.chunks = [];
    this.pending = 0;
    this.onDrained = undefined;
    return chunks;
  }

  get full(): boolean {
    return this.pending >= HIGH_WATER;
  }

  /** From the socket's `drain`: write what is queued; call onDrained when all of it went. */
  flush(): void {
    while (this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const n = this.socket.write(c);
      if (n < 0) return;
      this.pending -= Math.max(n, 0);
      if (n < c.length) {
        this.chunks[0] = c.subarray(n);
        return;
      }
      this.chunks.shift();
    }
    const fn = this.onDrained;
    this.onDrained = undefined;
    fn?.();
  }
}
