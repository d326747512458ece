/**
 * Where access-log lines go: stdout or a file (`log.file`), written off the event loop and
 * never waited for.
 *
 * - **Bounded.** Lines wait in memory up to `maxBuffer` (counted in characters, bytes for the
 *   ASCII lines common/combined write); a line that would pass it is dropped and counted
 *   (`onDrop`: /stats and switchyard_access_log_dropped_total). A stalled disk or a stdout
 *   nobody reads costs at most that memory, and requests never wait for it.
 * - **Whole lines, atomically.** Each write is a batch of whole lines, one write in flight at a
 *   time (node:fs write). To a stdout pipe that workers share a batch is at most PIPE_BUF
 *   (4096) bytes, which POSIX makes a pipe take whole; to a regular file, opened O_APPEND, at
 *   most 64 KiB, which Linux appends whole (it holds the inode's lock for the write); to a
 *   stdout this process has alone, 64 KiB too. So with `workers`, where every process writes
 *   its own lines to the same stdout or file, lines never interleave. A single line longer
 *   than a batch is written alone, in one write: whole in a file, but a pipe may split it.
 *   A write costs the event loop far more than its bytes (docs/performance.md, The access
 *   log): the larger batches cut the cost per request from about 7 µs to under 2.
 * - **Reopened on SIGUSR1** (`reopen`): the next batch goes to a file opened anew at `path`,
 *   as logrotate's `postrotate kill -USR1` expects; a write in flight ends in the old file.
 */
import { close as closeFd, closeSync, constants as fsConstants, fstatSync, open, openSync, write } from "node:fs";
import type { LineSink } from "./access.ts";

/** POSIX's PIPE_BUF on Linux: the largest write a pipe takes whole. */
export const PIPE_BUF = 4096;
/**
 * A batch to a regular file: O_APPEND writes of any size land whole (Linux holds the inode's
 * lock for the write), and a write costs the event loop about as much whatever its size, so
 * larger batches make fewer of them (docs/performance.md, The access log).
 */
export const FILE_BATCH = 64 * 1024;
/** `log.maxBuffer`'s default. */
export const DEFAULT_MAX_BUFFER = 1024 * 1024;
/**
 * close() waits this long at most: a disk or a pipe that takes nothing must not hold a
 * shutdown forever. What is still queued then is dropped and counted.
 */
export const CLOSE_WAIT_MS = 2000;

export interface AccessSinkOptions {
  /** Characters queued at most; past it lines are dropped. */
  maxBuffer?: number;
  /** Told of lines dropped (a full queue, or a write that failed). */
  onDrop?(lines: number): void;
  /** Told when reopening the file fails (the old one is kept). */
  onError?(message: string): void;
  /** How long close() waits for the queue to drain before it gives up on it (ms). */
  closeWaitMs?: number;
  /**
   * Other processes write to the same stdout (a worker): batches to a pipe stay within
   * PIPE_BUF, so that theirs and ours never interleave. Else a pipe takes FILE_BATCH too.
   */
  sharedStdout?: boolean;
}

const enum State {
  Idle = 0,
  /** A batch is with the thread pool. */
  Writing = 1,
  /** close() wrote out what was queued and closed the file. */
  Closed = 2,
}

function batchFor(fd: number, shared: boolean): number {
  if (!shared) return FILE_BATCH;
  try {
    return fstatSync(fd).isFile() ? FILE_BATCH : PIPE_BUF;
  } catch {
    return PIPE_BUF;
  }
}

export class AccessSink implements LineSink {
  private lines: string[] = [];
  /** The first line of `lines` not yet taken into a batch. */
  private head = 0;
  private queued = 0;
  private state = State.Idle;
  private closing = false;
  private fd: number;
  /** File descriptors replaced by reopen(), closed once the write in flight is done. */
  private retired: number[] = [];
  private waiters: (() => void)[] = [];
  private readonly maxBuffer: number;
  /** PIPE_BUF for a stdout pipe that workers share; FILE_BATCH for a regular file, or a pipe this process has alone. */
  private batch: number;
  /** Queued this much, a write starts at once (else the flush timer starts it): a batch, or half the bound if less. */
  private kick: number;

  /** `path` undefined: stdout. Opening a file may throw (a missing directory, no permission): at start-up or reload, never per request. */
  constructor(readonly path: string | undefined, private readonly o: AccessSinkOptions = {}) {
    this.maxBuffer = o.maxBuffer ?? DEFAULT_MAX_BUFFER;
    this.fd = path === undefined ? 1 : openSync(path, APPEND_FLAGS, 0o644);
    this.batch = batchFor(this.fd, o.sharedStdout === true && path === undefined);
    this.kick = Math.min(this.batch, this.maxBuffer >> 1);
  }

  write(line: string): void {
    if (this.state === State.Closed || this.queued + line.length > this.maxBuffer) {
      this.o.onDrop?.(1);
      return;
    }
    this.lines.push(line);
    this.queued += line.length;
    if (this.queued >= this.kick && this.state === State.Idle) this.pump();
  }

  /** Start writing what is queued; resolves once all of it is written (or dropped). */
  flush(): Promise<void> | undefined {
    if (this.state === State.Idle) this.pump();
    if (this.state === State.Idle || this.state === State.Closed) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Open `path` anew (SIGUSR1 after logrotate renamed it); nothing for stdout. */
  reopen(): Promise<void> {
    const path = this.path;
    if (path === undefined || this.state === State.Closed || this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      open(path, APPEND_FLAGS, 0o644, (err, fd) => {
        if (err) this.o.onError?.(`access log: cannot reopen ${path}: ${err.message}; writing on to the old file`);
        else if (this.state === State.Closed || this.closing) closeFd(fd, () => {});
        else {
          const old = this.fd;
          this.fd = fd;
          this.batch = batchFor(fd, false);
          this.kick = Math.min(this.batch, this.maxBuffer >> 1);
          if (this.state === State.Writing) this.retired.push(old);
          else closeFd(old, () => {});
        }
        resolve();
      });
    });
  }

  /**
   * Write out what is queued (waiting at most closeWaitMs), then close the file. Lines written
   * after this are dropped and counted.
   */
  async close(): Promise<void> {
    this.closing = true;
    const drained = this.flush();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stuck = drained === undefined ? false : await Promise.race([
      drained.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), this.o.closeWaitMs ?? CLOSE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (this.state === State.Closed) return;
    const writing = this.state === State.Writing;
    this.state = State.Closed;
    if (stuck) {
      // The write in flight never returned: its lines and the rest are given up.
      this.o.onDrop?.(this.pending);
      this.lines = [];
      this.head = 0;
      this.queued = 0;
    }
    // A descriptor with a write still blocked on it is left to the process's exit.
    if (this.path !== undefined && !writing) closeSync(this.fd);
  }

  /** Lines queued, not yet written (for tests and /stats). */
  get pending(): number {
    return this.lines.length - this.head;
  }

  /** One batch of whole lines, at most `batch` bytes (or one longer line alone), to the thread pool. */
  private pump(): void {
    if (this.head === this.lines.length) return this.settled();
    const batch = this.batch;
    let buf = Buffer.allocUnsafe(batch);
    let len = 0;
    let taken = 0;
    const lines = this.lines;
    while (this.head < lines.length) {
      const line = lines[this.head]!;
      const n = Buffer.byteLength(line);
      if (len + n > batch) {
        if (len > 0) break;
        // A line longer than a batch goes alone, in one write.
        buf = Buffer.from(line);
        len = n;
      } else {
        buf.write(line, len);
        len += n;
      }
      this.queued -= line.length;
      this.head++;
      taken++;
      if (len > batch) break;
    }
    if (this.head === lines.length) {
      this.lines = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > lines.length) {
      // A writer that stays behind (a slow disk, a slow pipe reader) never empties the queue:
      // lines already written are let go of here, so that memory follows what is queued.
      this.lines = lines.slice(this.head);
      this.head = 0;
    }
    this.state = State.Writing;
    this.send(this.fd, buf, 0, len, taken);
  }

  /** A batch goes whole to the descriptor it began on: a reopen meanwhile takes the next batch. */
  private send(fd: number, buf: Buffer, from: number, len: number, lines: number): void {
    write(fd, buf, from, len - from, null, (err, written) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") {
          // A non-blocking pipe that is full: try the same bytes again shortly.
          setTimeout(() => this.send(fd, buf, from, len, lines), 5);
          return;
        }
        // EPIPE, ENOSPC...: these lines are lost; count them and go on with the next batch.
        this.o.onDrop?.(lines);
      } else if (from + written < len) {
        return this.send(fd, buf, from + written, len, lines);
      }
      for (const fd of this.retired) closeFd(fd, () => {});
      this.retired = [];
      // Given up by close() while this write was blocked: nothing more to do.
      if (this.state === State.Closed) return;
      this.state = State.Idle;
      this.pump();
    });
  }

  /** Nothing queued and nothing in flight: whoever waits for a flush is told. */
  private settled(): void {
    this.state = State.Idle;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Append, create, and never wait in open(2): a FIFO with no reader would otherwise block the
 * event loop at start-up or on a reload (synchronous open) or hold a thread-pool thread on every
 * SIGUSR1 (asynchronous). Non-blocking, such an open fails at once (ENXIO) and says why; on a
 * regular file O_NONBLOCK changes nothing, and a pipe that fills answers EAGAIN, which send()
 * already waits out.
 */
const APPEND_FLAGS = fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NONBLOCK;
