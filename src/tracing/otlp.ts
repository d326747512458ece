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

/** 0-9, a-f as 0-15. */
function nibble(c: number): number {
  return c <= 57 ? c - 48 : c - 87;
}

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
    const n = s.length;
    // At most 3 bytes per UTF-16 unit.
    this.room(5 + n * 3);
    if (n < 0x80) {
      // The common case: ASCII under 128 bytes, its length one byte, copied as is.
      const buf = this.buf;
      let p = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = p;
        return;
      }
    }
    const start = this.begin();
    this.pos += utf8.encodeInto(s, this.buf.subarray(this.pos)).written;
    this.end(start);
  }

  /** Lowercase hex (as validated or made by context.ts) as bytes. */
  hexBytes(field: number, hex: string): void {
    this.tag(field, Wire.Len);
    const n = hex.length >> 1;
    this.varint(n);
    this.room(n);
    const buf = this.buf;
    for (let i = 0; i < n; i++) buf[this.pos++] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  }

  /**
   * Nanoseconds since the epoch from ms with a fraction, to the microsecond: a double near
   * 1.7e12 ms holds about 0.24 µs, so finer digits would be noise.
   */
  fixed64Ns(field: number, ms: number): void {
    this.tag(field, Wire.Fixed64);
    this.room(8);
    const whole = Math.floor(ms);
    const ns = BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1000) * 1000);
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
    // No closures: this runs ~25 times per recorded request.
    this.tag(field, Wire.Len);
    const kv = this.begin();
    this.string(1, key);
    this.tag(2, Wire.Len);
    const any = this.begin();
    if (typeof value === "string") this.string(1, value);
    else {
      this.tag(3, Wire.Varint);
      this.varint(value);
    }
    this.end(any);
    this.end(kv);
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
      for (const s of spans) {
        w.tag(2, 2);
        const start = w.begin();
        span(w, s);
        w.end(start);
      }
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
