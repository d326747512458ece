/**
 * The OTLP/protobuf body of a trace export, written by hand against the official definitions
 * (opentelemetry-proto: collector/trace/v1/trace_service.proto, trace/v1/trace.proto,
 * common/v1/common.proto, resource/v1/resource.proto), only the fields Switchyard sets:
 *
 *   ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
 *   ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
 *   Resource      { repeated KeyValue attributes = 1; }
 *   ScopeSpans    { InstrumentationScope scope = 1; repeated Span spans = 2; }
 *   InstrumentationScope { string name = 1; string version = 2; }
 *   Span { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
 *          string name = 5; SpanKind kind = 6; fixed64 start_time_unix_nano = 7;
 *          fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9; Status status = 15;
 *          fixed32 flags = 16; }
 *   Status   { string message = 2; StatusCode code = 3; }      // STATUS_CODE_ERROR = 2
 *   KeyValue { string key = 1; AnyValue value = 2; }
 *   AnyValue { string string_value = 1; int64 int_value = 3; }  // a oneof
 *
 * Why by hand (measured: bench/tracing-sdk.ts, docs/observability.md): the official SDK's
 * span and exporter cost several times this per sampled request, and pull in a dozen packages.
 * Test: test/tracing/ decodes these bodies with the official definitions' generated code.
 */
import type { SpanRecord } from "./span.ts";

const enum Wire {
  Varint = 0,
  Fixed64 = 1,
  Len = 2,
  Fixed32 = 5,
}

const utf8 = new TextEncoder();

/** A growable buffer with protobuf's primitives; a nested message reserves 5 bytes for its length, then closes up. */
class ProtoWriter {
  buf: Uint8Array<ArrayBuffer> = new Uint8Array(64 * 1024);
  view = new DataView(this.buf.buffer);
  pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  varint(n: number): void {
    this.room(10);
    // Up to 2^53: past 32 bits `>>>` would wrap, so divide.
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  tag(field: number, wire: Wire): void {
    this.varint((field << 3) | wire);
  }

  string(field: number, s: string): void {
    this.tag(field, Wire.Len);
    // At most 3 bytes per UTF-16 unit.
    this.room(5 + s.length * 3);
    const start = this.begin();
    this.pos += utf8.encodeInto(s, this.buf.subarray(this.pos)).written;
    this.end(start);
  }

  hexBytes(field: number, hex: string): void {
    this.tag(field, Wire.Len);
    const n = hex.length >> 1;
    this.varint(n);
    this.room(n);
    for (let i = 0; i < n; i++) this.buf[this.pos++] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }

  /** Nanoseconds since the epoch from ms with a fraction; exact to the nanosecond the double holds. */
  fixed64Ns(field: number, ms: number): void {
    this.tag(field, Wire.Fixed64);
    this.room(8);
    const whole = Math.floor(ms);
    const ns = BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
    this.view.setBigUint64(this.pos, ns, true);
    this.pos += 8;
  }

  fixed32(field: number, n: number): void {
    this.tag(field, Wire.Fixed32);
    this.room(4);
    this.view.setUint32(this.pos, n, true);
    this.pos += 4;
  }

  /** Open a length-delimited field (after its tag): 5 bytes held for the length. */
  begin(): number {
    this.room(5);
    this.pos += 5;
    return this.pos;
  }

  /** Close it: write the length in as few bytes as it needs and move the body up to it. */
  end(start: number): void {
    const len = this.pos - start;
    let p = start - 5;
    for (let x = len; ; ) {
      if (x < 0x80) {
        this.buf[p++] = x;
        break;
      }
      this.buf[p++] = (x % 0x80) | 0x80;
      x = Math.floor(x / 0x80);
    }
    if (p !== start) this.buf.copyWithin(p, start, this.pos);
    this.pos = p + len;
  }

  message(field: number, body: () => void): void {
    this.tag(field, Wire.Len);
    const start = this.begin();
    body();
    this.end(start);
  }

  keyValue(field: number, key: string, value: string | number): void {
    this.message(field, () => {
      this.string(1, key);
      this.message(2, () => {
        if (typeof value === "string") this.string(1, value);
        else {
          this.tag(3, Wire.Varint);
          this.varint(value);
        }
      });
    });
  }
}

/** What every export names once: the resource (the service) and the instrumentation scope. */
export interface ExportIdentity {
  serviceName: string;
  /** Further resource attributes (service.version, service.instance.id, ...). */
  resource: readonly (readonly [string, string])[];
  scopeName: string;
  scopeVersion: string;
}

/** W3C trace-flags in Span.flags (bits 0-7): sampled. Bit 8 says whether the parent was remote is not set. */
const SAMPLED = 1;

/** One ExportTraceServiceRequest holding `spans`, ready to POST. */
export function encodeExport(id: ExportIdentity, spans: readonly SpanRecord[]): Uint8Array<ArrayBuffer> {
  const w = new ProtoWriter();
  w.message(1, () => {
    w.message(1, () => {
      w.keyValue(1, "service.name", id.serviceName);
      for (const [k, v] of id.resource) w.keyValue(1, k, v);
    });
    w.message(2, () => {
      w.message(1, () => {
        w.string(1, id.scopeName);
        w.string(2, id.scopeVersion);
      });
      for (const s of spans) w.message(2, () => span(w, s));
    });
  });
  return w.buf.slice(0, w.pos);
}

function span(w: ProtoWriter, s: SpanRecord): void {
  w.hexBytes(1, s.traceId);
  w.hexBytes(2, s.spanId);
  if (s.traceState !== undefined && s.traceState !== "") w.string(3, s.traceState);
  if (s.parentId !== undefined) w.hexBytes(4, s.parentId);
  w.string(5, s.name);
  w.tag(6, Wire.Varint);
  w.varint(s.kind);
  w.fixed64Ns(7, s.startMs);
  w.fixed64Ns(8, s.endMs);
  const a = s.attrs;
  for (let i = 0; i < a.length; i += 2) w.keyValue(9, a[i] as string, a[i + 1]!);
  if (s.error) w.message(15, () => {
    w.tag(3, Wire.Varint);
    w.varint(2);
  });
  w.fixed32(16, SAMPLED);
}
