/**
 * Polls each backend's own stats endpoint (`statsPath`, e.g. the sim's /stats) for the uptime
 * and memory it reports, as seed 001 describes: a fixed number of workers take polls from a
 * bounded queue; when the queue is full, or that backend's previous poll is still queued or
 * running, the poll is skipped, so a slow backend never piles up work or holds up the others.
 * Every poll has its own timeout (an AbortController) and a cap on the body it reads. The path
 * is taken from the backend's origin, as the health check's path is.
 *
 * Workers are not loops that wait: a worker runs while there is queued work and ends when the
 * queue is empty, so an idle poller holds no timers and needs no stop to let the process exit.
 */
import type { Backend } from "../pool/backend.ts";
import { formatUptime } from "./tally.ts";
import { describeNetworkError, errorCode } from "../net/network-error.ts";
import { readBounded } from "../http/bounded-body.ts";

export interface PollerOptions {
  /** Polls running at once. Default 3. */
  workers?: number;
  /** Polls waiting for a worker; beyond this a poll is skipped. Default 16. */
  queueSize?: number;
  /** Per-poll timeout, ms. Default 1000. */
  timeoutMs?: number;
  /** Largest body read, bytes. Default 64 KiB. */
  maxBodyBytes?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

/** What a backend said about itself, normalized from the sim's (and seed 001's) field names. */
export interface Reported {
  uptime: string | null;
  uptimeSeconds: number | null;
  /** Bytes. */
  memoryUsage: number | null;
  /** As the backend wrote it, or made from memoryUsage ("12.3 MB"). */
  memory_usage: string | null;
  /** When these values were read, ms since the epoch (0: never). */
  at: number;
  /** The last poll's failure, if it failed (the values above are then from an earlier poll). */
  error: string | null;
  errorAt: number | null;
}

export type PollResult = "ok" | "error" | "skipped";

interface Task {
  backend: Backend;
  url: string;
  done: (() => void)[];
}

export class BackendStatsPoller {
  readonly workers: number;
  readonly queueSize: number;
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;
  private readonly fetchFn: typeof fetch;
  private readonly now: () => number;
  private readonly queue: Task[] = [];
  /** Backends with a poll queued or running. */
  private readonly busy = new Set<Backend>();
  private readonly inflight = new Set<AbortController>();
  private readonly reported = new WeakMap<Backend, Reported>();
  private running = 0;
  private stopped = false;
  readonly counts: Record<PollResult, number> = { ok: 0, error: 0, skipped: 0 };

  constructor(opts: PollerOptions = {}) {
    this.workers = opts.workers ?? 3;
    this.queueSize = opts.queueSize ?? 16;
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024;
    this.fetchFn = opts.fetch ?? fetch;
    this.now = opts.now ?? Date.now;
  }

  /** Polls running now (at most `workers`). */
  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** The last figures a backend reported, undefined if it has no statsPath or was never polled. */
  get(b: Backend): Reported | undefined {
    return this.reported.get(b);
  }

  /**
   * Queue a poll of `b` unless it has no statsPath, is already queued or running, or the
   * queue is full. `done` runs when the poll ends (or at once when skipped). True when queued.
   */
  enqueue(b: Backend, done?: () => void): boolean {
    if (this.stopped || b.statsPath === undefined) {
      done?.();
      return false;
    }
    if (this.busy.has(b) || this.queue.length >= this.queueSize) {
      this.counts.skipped++;
      done?.();
      return false;
    }
    this.busy.add(b);
    this.queue.push({ backend: b, url: statsUrl(b, b.statsPath), done: done ? [done] : [] });
    if (this.running < this.workers) {
      this.running++;
      void this.work();
    }
    return true;
  }

  /** Queue every backend that has a statsPath; resolves when those polls end (skipped ones at once). */
  pollAll(backends: readonly Backend[]): Promise<void> {
    return Promise.all(backends.map((b) => new Promise<void>((resolve) => this.enqueue(b, resolve)))).then(() => {});
  }

  /** Drop queued polls and abort running ones. The poller takes no more work. */
  stop(): void {
    this.stopped = true;
    for (const t of this.queue.splice(0)) {
      this.busy.delete(t.backend);
      for (const fn of t.done) fn();
    }
    for (const c of this.inflight) c.abort();
  }

  private async work(): Promise<void> {
    try {
      for (let task = this.queue.shift(); task !== undefined; task = this.queue.shift()) {
        try {
          await this.poll(task);
        } finally {
          this.busy.delete(task.backend);
          for (const fn of task.done) fn();
        }
      }
    } finally {
      this.running--;
    }
  }

  private async poll(task: Task): Promise<void> {
    const controller = new AbortController();
    this.inflight.add(controller);
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    const previous = this.reported.get(task.backend);
    try {
      const res = await this.fetchFn(task.url, {
        signal: controller.signal,
        headers: { accept: "application/json" },
        redirect: "manual",
      });
      if (res.status !== 200) {
        void res.body?.cancel().catch(() => {});
        throw new Error(`status ${res.status}`);
      }
      const body = await readBounded(res, this.maxBodyBytes);
      if (body === undefined) throw new Error(`body is over the ${this.maxBodyBytes}-byte limit`);
      this.reported.set(task.backend, { ...normalize(JSON.parse(body)), at: this.now(), error: null, errorAt: null });
      this.counts.ok++;
    } catch (e) {
      const error = controller.signal.aborted ? (this.stopped ? "stopped" : `timed out after ${this.timeoutMs}ms`) : describe(e);
      this.reported.set(task.backend, {
        ...(previous ?? { uptime: null, uptimeSeconds: null, memoryUsage: null, memory_usage: null, at: 0 }),
        error,
        errorAt: this.now(),
      });
      this.counts.error++;
    } finally {
      clearTimeout(timer);
      this.inflight.delete(controller);
    }
  }
}

/** The backend's origin and statsPath; a TCP-mode backend (tcp://host:port) is asked over HTTP. */
function statsUrl(b: Backend, path: string): string {
  const origin = b.url.protocol === "http:" || b.url.protocol === "https:" ? b.origin : `http://${b.url.host}`;
  return origin + path;
}

function describe(e: unknown): string {
  if (e instanceof SyntaxError) return "body is not JSON";
  return errorCode(e) !== undefined ? describeNetworkError(e) : e instanceof Error ? e.message : String(e);
}

const MEMORY = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$/i;
const MEMORY_UNIT: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
const UPTIME = /^(?:(\d+)d\s*)?(\d+)h:(\d+)m:(\d+)s$/;

/**
 * Accepts the sim's shape ({uptime: "00h:05m:23s", uptimeSeconds, memory_usage: "1.2 MB",
 * memoryUsage: bytes}) and the common variants (uptime in seconds, memory as a number).
 */
export function normalize(raw: unknown): Omit<Reported, "at" | "error" | "errorAt"> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error("body is not a JSON object");
  const o = raw as Record<string, unknown>;
  let uptimeSeconds = finite(o.uptimeSeconds) ?? finite(o.uptime_seconds) ?? finite(o.uptime);
  let uptime = typeof o.uptime === "string" ? o.uptime : null;
  if (uptimeSeconds === undefined && uptime !== null) {
    const m = UPTIME.exec(uptime);
    if (m) uptimeSeconds = Number(m[1] ?? 0) * 86400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]);
  }
  if (uptime === null && uptimeSeconds !== undefined) uptime = formatUptime(uptimeSeconds);
  let memoryUsage = finite(o.memoryUsage) ?? finite(o.memory_usage) ?? finite(o.memory);
  let memoryText = typeof o.memory_usage === "string" ? o.memory_usage : null;
  if (memoryUsage === undefined && memoryText !== null) {
    const m = MEMORY.exec(memoryText);
    if (m) memoryUsage = Math.round(Number(m[1]) * MEMORY_UNIT[(m[2] ?? "b").toLowerCase()]!);
  }
  if (memoryText === null && memoryUsage !== undefined) memoryText = `${(memoryUsage / 1024 ** 2).toFixed(1)} MB`;
  return { uptime, uptimeSeconds: uptimeSeconds ?? null, memoryUsage: memoryUsage ?? null, memory_usage: memoryText };
}

function finite(x: unknown): number | undefined {
  return typeof x === "number" && Number.isFinite(x) && x >= 0 ? x : undefined;
}
