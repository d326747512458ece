/**
 * The last failed requests, for the dashboard's "recent failures" list and /stats
 * `recentFailures`: what an operator looks at first when the error rate moves. A ring of a
 * fixed size (RECENT_FAILURES), so memory stays bounded whatever the failure rate; a request
 * that did not fail costs nothing here.
 *
 * A failure is an answer of status 500 or more (a backend's 5xx, or the proxy's own 502, 503,
 * 504), or an answer cut short by its backend (SY_UPSTREAM_TRUNCATED). Refusals of the client's
 * own making (4xx: no route, rate limits, authentication) are counted in the figures, not here,
 * so that a flood of them cannot push the backends' failures out of the list.
 *
 * With workers, each worker keeps its own ring and sends what is new in each report
 * (sinceSeq); the owner absorbs them into its ring, which the admin port reads.
 */

/** Failures kept. */
export const RECENT_FAILURES = 50;
/** The longest target kept (a failure record is for reading, not for replaying). */
const MAX_TARGET = 256;

export interface FailureRecord {
  /** When it was answered, ISO 8601. */
  time: string;
  method: string;
  target: string;
  status: number;
  /** The proxy's code when it answered itself or the backend cut the answer. */
  error?: string;
  /** Why the last try failed, in the log's words ("status 503", "connection refused"), when one did. */
  reason?: string;
  route?: string;
  pool?: string;
  /** Backends tried, in order. */
  backends: string[];
  tries: number;
  requestId: string;
  traceId?: string;
}

export class RecentFailures {
  private readonly ring: (FailureRecord | undefined)[];
  /** Records added, all time: the next one's sequence number. */
  private added = 0;

  constructor(readonly capacity = RECENT_FAILURES) {
    this.ring = new Array(capacity);
  }

  /** Whether an answer is a failure this list keeps. */
  static isFailure(status: number, error?: string): boolean {
    return status >= 500 || error === "SY_UPSTREAM_TRUNCATED";
  }

  add(r: FailureRecord): void {
    if (r.target.length > MAX_TARGET) r.target = `${r.target.slice(0, MAX_TARGET)}…`;
    this.ring[this.added % this.capacity] = r;
    this.added++;
  }

  /** Newest first. */
  list(): FailureRecord[] {
    const n = Math.min(this.added, this.capacity);
    const out: FailureRecord[] = [];
    for (let i = 1; i <= n; i++) out.push(this.ring[(this.added - i) % this.capacity]!);
    return out;
  }

  /** The sequence number the next record will get (a worker's report mark). */
  get seq(): number {
    return this.added;
  }

  /** Records added since `seq` (at most the ring's size), oldest first. */
  since(seq: number): FailureRecord[] {
    const from = Math.max(seq, this.added - this.capacity);
    const out: FailureRecord[] = [];
    for (let i = from; i < this.added; i++) out.push(this.ring[i % this.capacity]!);
    return out;
  }

  /** A worker's records, oldest first, into this (the owner's) ring. */
  absorb(records: readonly FailureRecord[]): void {
    for (const r of records) this.add(r);
  }
}
