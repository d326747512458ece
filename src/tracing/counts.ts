/**
 * What the span exporter did, all time: the figures of /stats (`tracing`) and /metrics
 * (`switchyard_tracing_spans_*_total`). Changed only through these methods, by the exporter;
 * with workers, each worker's are summed (workers/reports.ts).
 */
export class TracingCounts {
  /** Spans the collector accepted (a 2xx answer). */
  exported = 0;
  /** Spans dropped because the export queue was full. */
  dropped = 0;
  /** Spans in exports that failed: an error status, a network error, a timeout. */
  failed = 0;
  /** Export requests sent, and those that failed. */
  exports = 0;
  exportFailures = 0;

  countDropped(): void {
    this.dropped++;
  }

  countExport(spans: number, ok: boolean): void {
    this.exports++;
    if (ok) this.exported += spans;
    else {
      this.exportFailures++;
      this.failed += spans;
    }
  }
}

export type TracingFigures = Pick<TracingCounts, "exported" | "dropped" | "failed" | "exports" | "exportFailures">;

export function tracingFiguresOf(c: TracingFigures): TracingFigures {
  return { exported: c.exported, dropped: c.dropped, failed: c.failed, exports: c.exports, exportFailures: c.exportFailures };
}
