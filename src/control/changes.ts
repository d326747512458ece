/**
 * The record of changes made to the running balancer: reloads, and what operators did through
 * the admin API. Each change is written to the log once, kept in a short ring for /stats and the
 * dashboard, and handed to listeners (the admin event stream). Bounded: the last `size` changes.
 */
import type { Logger } from "../log/logger.ts";

export interface Change {
  /** 1, 2, 3...: the order of changes since start. */
  seq: number;
  /** ISO 8601. */
  at: string;
  /** "drain backend-2", "reload from switchyard.yaml", ... */
  what: string;
  /** Who asked: a token's name, "SIGHUP", "file watch". */
  by: string;
  /** From where: the client's address, or "signal"/"local". */
  from: string;
  ok: boolean;
  /** What it did or why it failed, one line per item. */
  detail: string[];
}

export type ChangeListener = (change: Change) => void;

export class ChangeLog {
  private readonly ring: Change[] = [];
  private readonly listeners = new Set<ChangeListener>();
  private seq = 0;

  constructor(
    private readonly logger: Logger,
    private readonly size = 50,
  ) {}

  record(c: Omit<Change, "seq" | "at">): Change {
    const change: Change = { ...c, seq: ++this.seq, at: new Date().toISOString() };
    this.ring.push(change);
    if (this.ring.length > this.size) this.ring.shift();
    const line = `change #${change.seq} ${change.ok ? "" : "REFUSED "}${change.what} (by ${change.by} from ${change.from})${change.detail.length ? ": " + change.detail.join("; ") : ""}`;
    if (change.ok) this.logger.info(line);
    else this.logger.warn(line);
    for (const fn of this.listeners) fn(change);
    return change;
  }

  /** The last changes, oldest first. */
  recent(n = this.size): Change[] {
    return this.ring.slice(-n);
  }

  onChange(fn: ChangeListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
