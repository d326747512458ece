/**
 * One direction of a byte relay between two Bun sockets, with backpressure: what TCP mode
 * (src/tcp/relay.ts) and the socket engine's tunnel after a 101 (src/engine/socket/tunnel.ts)
 * both move bytes with, written once.
 *
 * Bun's `socket.write()` does not buffer: it returns how many bytes the kernel took (-1 once
 * the socket is closed). What it did not take is kept here, the source is paused (its kernel
 * window fills and TCP pushes back on the peer), and the rest is written from the
 * destination's `drain`, after which the source resumes. A chunk already read when the source
 * was paused may still arrive; it is queued behind the rest. Memory per direction is thus
 * bounded by about one read plus what was queued when the pause took effect.
 */
import type { Socket } from "bun";

/** Bytes taken by the destination, for the caller's counters. */
export type Count = (n: number) => void;

export class Flow {
  /** Bytes read but not yet taken by the destination, oldest first. */
  private chunks: Uint8Array[] = [];
  queued = 0;
  /** The source sent its FIN (or closed): nothing more will come. */
  ended = false;
  /** Our FIN has gone to the destination. */
  finSent = false;
  /** The destination is gone: what arrives is dropped. */
  dead = false;
  /** This flow paused its source and must resume it once drained. */
  pausedSource = false;

  /** Put bytes before everything queued (a PROXY header that did not go at once). */
  unshift(chunk: Uint8Array): void {
    this.chunks.unshift(chunk);
    this.queued += chunk.length;
  }

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  /**
   * A chunk that just arrived from `from`: write it to `to`; keep what it did not take and
   * pause `from` until the destination drains.
   */
  pass(from: Socket<unknown>, to: Socket<unknown>, chunk: Uint8Array, count: Count): void {
    if (this.dead) return;
    if (this.queued > 0) {
      // Already waiting for drain (a read that was in progress when we paused).
      this.push(chunk);
      this.pause(from);
      return;
    }
    const n = to.write(chunk);
    if (n < 0) {
      this.kill();
      return;
    }
    if (n > 0) count(n);
    if (n < chunk.length) {
      this.push(n === 0 ? chunk : chunk.subarray(n));
      this.pause(from);
    }
  }

  pause(from: Socket<unknown>): void {
    if (this.pausedSource) return;
    this.pausedSource = true;
    from.pause();
  }

  /** Write what is queued; true when the queue is empty. Bytes taken are passed to `count`. */
  writeQueued(to: Socket<unknown>, count: Count): boolean {
    while (this.chunks.length > 0) {
      const head = this.chunks[0]!;
      const n = to.write(head);
      if (n < 0) {
        this.kill();
        return true;
      }
      if (n > 0) count(n);
      this.queued -= n;
      if (n < head.length) {
        this.chunks[0] = head.subarray(n);
        return false;
      }
      this.chunks.shift();
    }
    return true;
  }

  /**
   * From the destination's `drain` (or once it exists): write what is held; once all of it
   * went, resume the source and pass on its FIN as a half-close. Returns false while bytes are
   * still held (or the flow was dead already).
   */
  flush(from: Socket<unknown>, fromClosed: boolean, to: Socket<unknown>, count: Count): boolean {
    if (this.dead) return false;
    if (!this.writeQueued(to, count)) return false;
    if (this.pausedSource && !fromClosed) {
      this.pausedSource = false;
      from.resume();
    }
    if (this.ended && !this.finSent && !this.dead) {
      this.finSent = true;
      // A half-close: the other direction keeps flowing.
      to.shutdown();
    }
    return true;
  }

  kill(): void {
    this.dead = true;
    this.chunks = [];
    this.queued = 0;
  }
}
