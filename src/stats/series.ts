/**
 * Fixed-capacity time series: one Float64Array per column, written as a ring. Memory is set at
 * construction and never grows, however long the process runs; the oldest point is overwritten.
 * NaN marks "no value" (a backend that did not exist yet, a second with no requests).
 */
export class SeriesRing<K extends string> {
  private readonly data: Record<K, Float64Array>;
  /** Index the next push writes to. */
  private head = 0;
  private count = 0;

  constructor(
    readonly capacity: number,
    readonly columns: readonly K[],
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a whole number >= 1, got ${capacity}`);
    this.data = Object.fromEntries(columns.map((c) => [c, new Float64Array(capacity).fill(NaN)])) as Record<K, Float64Array>;
  }

  get size(): number {
    return this.count;
  }

  push(values: Readonly<Record<K, number>>): void {
    for (const c of this.columns) this.data[c][this.head] = values[c];
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** Push `n` points of NaN: aligns a series that starts late with the others. */
  pad(n: number): void {
    const k = Math.min(n, this.capacity);
    for (let i = 0; i < k; i++) {
      for (const c of this.columns) this.data[c][this.head] = NaN;
      this.head = (this.head + 1) % this.capacity;
      if (this.count < this.capacity) this.count++;
    }
  }

  /** The i-th point from the oldest (0) to the newest (size - 1). */
  at(i: number, column: K): number {
    if (i < 0 || i >= this.count) return NaN;
    return this.data[column][(this.head - this.count + i + this.capacity) % this.capacity]!;
  }

  /** One column, oldest first. `last` limits it to the newest points. */
  column(column: K, last = this.count): number[] {
    const n = Math.min(last, this.count);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.at(this.count - n + i, column);
    return out;
  }

  clear(): void {
    for (const c of this.columns) this.data[c].fill(NaN);
    this.head = 0;
    this.count = 0;
  }
}
