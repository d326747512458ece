/**
 * The span exporter of one process (each worker has its own): a bounded queue, drained in
 * batches to the collector by OTLP/HTTP with protobuf (OTLP specification, "OTLP/HTTP").
 * Nothing here runs on a request's path but `add`, which is a push or a counted drop: a slow,
 * dead or hanging collector fills the queue and costs dropped spans, never request latency.
 * At most one export is in flight; its timeout bounds how long the queue waits on it.
 *
 * Lifecycle: `configure` (start or a reload), `stop` (a last flush, bounded by the timeout).
 */
import type { SpanRecord, SpanSink } from "./span.ts";
import { encodeExport, type ExportIdentity } from "./otlp.ts";
import type { TracingCounts } from "./counts.ts";

export interface ExporterSettings {
  endpoint: string;
  headers: Readonly<Record<string, string>>;
  timeout: number;
  queueSize: number;
  batchSize: number;
  batchDelay: number;
  identity: ExportIdentity;
}

/** Explicit states, not flags: Idle (nothing due), Waiting (a batch timer armed), Sending (an export in flight), Stopped. */
const enum State {
  Idle = 0,
  Waiting = 1,
  Sending = 2,
  Stopped = 3,
}

export class SpanExporter implements SpanSink {
  private queue: SpanRecord[] = [];
  private state = State.Idle;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sending: Promise<unknown> | undefined;
  private settings: ExporterSettings;
  private headers: Record<string, string>;

  constructor(
    settings: ExporterSettings,
    private readonly counts: TracingCounts,
  ) {
    this.settings = settings;
    this.headers = headersOf(settings);
  }

  /** A reload: new settings apply from the next export; spans already queued go to the new endpoint. */
  configure(settings: ExporterSettings): void {
    this.settings = settings;
    this.headers = headersOf(settings);
  }

  /** From a request: queue a finished span, or count it dropped when the queue is full. */
  add(span: SpanRecord): void {
    const q = this.queue;
    if (q.length >= this.settings.queueSize || this.state === State.Stopped) return this.counts.countDropped();
    q.push(span);
    if (this.state === State.Sending) return;
    if (q.length >= this.settings.batchSize) {
      // A full batch goes now, but out of this request's turn: encoding is not its cost.
      this.arm(0);
    } else if (this.state === State.Idle) this.arm(this.settings.batchDelay);
  }

  private arm(ms: number): void {
    if (this.timer !== undefined) {
      if (ms > 0) return;
      clearTimeout(this.timer);
    }
    this.state = State.Waiting;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.send();
    }, ms);
    // The process exits on its own terms; stop() flushes what is left.
    this.timer.unref();
  }

  private send(): void {
    if (this.state === State.Stopped || this.state === State.Sending) return;
    if (this.queue.length === 0) {
      this.state = State.Idle;
      return;
    }
    this.state = State.Sending;
    this.sending = this.exportBatch().finally(() => {
      this.sending = undefined;
      if (this.state !== State.Sending) return;
      this.state = State.Idle;
      if (this.queue.length >= this.settings.batchSize) this.arm(0);
      else if (this.queue.length > 0) this.arm(this.settings.batchDelay);
    });
  }

  /** Take one batch from the queue and POST it; the counts say how it went. Never throws. */
  private async exportBatch(): Promise<boolean> {
    const s = this.settings;
    const batch = this.queue.length <= s.batchSize ? this.queue : this.queue.slice(0, s.batchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(s.batchSize);
    let ok = false;
    try {
      const res = await fetch(s.endpoint, {
        method: "POST",
        headers: this.headers,
        body: encodeExport(s.identity, batch),
        signal: AbortSignal.timeout(s.timeout),
      });
      // OTLP/HTTP: a 2xx is success (a partial success is still counted as sent).
      ok = res.ok;
      await res.arrayBuffer().catch(() => undefined);
    } catch {
      ok = false;
    }
    this.counts.countExport(batch.length, ok);
    return ok;
  }

  /** Spans waiting for export. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Stop: the export in flight finishes (or times out), then what is queued goes in batches,
   * each bounded by the timeout, until one fails (a dead collector delays a stop by one
   * timeout, not one per batch: the rest count as failed). New spans are dropped from now on.
   */
  async stop(): Promise<void> {
    if (this.state === State.Stopped) return;
    if (this.sending !== undefined) await this.sending;
    this.state = State.Stopped;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.queue.length > 0) {
      if (await this.exportBatch()) continue;
      this.counts.countExport(this.queue.length, false);
      this.queue = [];
    }
  }
}

function headersOf(s: ExporterSettings): Record<string, string> {
  return { ...s.headers, "content-type": "application/x-protobuf" };
}
