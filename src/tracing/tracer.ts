/**
 * Tracing in one process: the Tracing owner keeps the exporter (one per process, carried
 * across reloads) and makes, per config, the RequestTracer the forwarding loop asks at the
 * start of each request (forward/forward.ts, Trip). Config apart from runtime state: the
 * sampling threshold and names are rebuilt on a reload; the queue and its counts stay.
 */
import type { TracingConfig } from "./config.ts";
import { formatTraceparent, newSpanId, newTraceId, parentIdOf, sampledFlag, traceIdOf, validTraceparent } from "./context.ts";
import { SpanExporter, type ExporterSettings } from "./exporter.ts";
import { ratioThreshold, sampledAt } from "./sampler.ts";
import { RequestTrace, type TracedRequest } from "./span.ts";
import type { TracingCounts } from "./counts.ts";
import { hostname } from "node:os";
import pkg from "../../package.json" with { type: "json" };

/** Where the loop keeps the request's trace id (the access log's `traceId`). */
export interface TraceIdHolder {
  traceId: string | undefined;
}

/** What the loop calls per request; built once per config. */
export class RequestTracer {
  private readonly threshold: number;

  constructor(
    private readonly exporter: SpanExporter,
    sampleRatio: number,
  ) {
    this.threshold = ratioThreshold(sampleRatio);
  }

  /**
   * A request starts. Returns its spans when it is recorded, else undefined: then nothing more
   * is done for it than this. Parent-based sampling (OTel's ParentBased): a valid incoming
   * `traceparent` decides by its sampled flag, and when not sampled passes on unchanged, as a
   * proxy that records nothing may do (W3C Trace Context §3.2: a vendor MAY leave it as is).
   * Without one (or with one we cannot parse), a new trace starts and the ratio decides from its
   * id; the backend then gets a `traceparent` either way, so that the services behind follow
   * the same decision, and a `tracestate` of the trace we could not read is not passed on.
   */
  begin(req: TracedRequest, requestId: string, holder: TraceIdHolder, threshold = this.threshold): RequestTrace | undefined {
    const headers = req.headers;
    const incoming = headers.get("traceparent");
    if (validTraceparent(incoming)) {
      const traceId = (holder.traceId = traceIdOf(incoming));
      if (!sampledFlag(incoming)) return undefined;
      return new RequestTrace(this.exporter, traceId, parentIdOf(incoming), headers.get("tracestate") ?? undefined, req, requestId);
    }
    if (incoming !== null || headers.has("tracestate")) headers.delete("tracestate");
    const traceId = (holder.traceId = newTraceId());
    if (!sampledAt(traceId, threshold)) {
      headers.set("traceparent", formatTraceparent(traceId, newSpanId(), false));
      return undefined;
    }
    // Recorded: each try sets the traceparent naming its own span (RequestTrace.tryStarted).
    if (incoming !== null) headers.delete("traceparent");
    return new RequestTrace(this.exporter, traceId, undefined, undefined, req, requestId);
  }
}

export function exporterSettings(t: TracingConfig): ExporterSettings {
  return {
    endpoint: t.otlp.endpoint, headers: t.otlp.headers, timeout: t.otlp.timeout,
    queueSize: t.queueSize, batchSize: t.batchSize, batchDelay: t.batchDelay,
    // service.instance.id tells the processes apart: with workers, each exports its own spans.
    identity: { serviceName: t.serviceName, resource: [["service.version", pkg.version], ["service.instance.id", `${hostname()}:${process.pid}`]], scopeName: "switchyard", scopeVersion: pkg.version },
  };
}

/** The owner of one process's tracing: its exporter, made when a config first asks for tracing, stopped with the process. */
export class Tracing {
  private exporter: SpanExporter | undefined;
  private current: { config: TracingConfig; tracer: RequestTracer } | undefined;

  constructor(private readonly counts: TracingCounts) {}

  /** The tracer of a config (undefined: tracing is off). The same object for the same config section. */
  tracerFor(config: { tracing?: TracingConfig }): RequestTracer | undefined {
    const t = config.tracing;
    if (t === undefined) return undefined;
    if (this.current?.config === t) return this.current.tracer;
    const settings = exporterSettings(t);
    if (this.exporter === undefined) this.exporter = new SpanExporter(settings, this.counts);
    else this.exporter.configure(settings);
    const tracer = new RequestTracer(this.exporter, t.sampleRatio);
    this.current = { config: t, tracer };
    return tracer;
  }

  /** Spans waiting for export (the /stats figure). */
  get queued(): number {
    return this.exporter?.queued ?? 0;
  }

  async stop(): Promise<void> {
    await this.exporter?.stop();
  }
}

