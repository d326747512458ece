/**
 * A raw HTTP/2 client for tests that need what a well-behaved client library will not send
 * (upper-case field names, connection-specific fields, a content-length that lies, more
 * streams than the server allows) and to see the server's frames as they are (RST_STREAM and
 * its error code, GOAWAY). Field blocks are HPACK literals without indexing or Huffman
 * (RFC 7541 §6.2.2), which every decoder must take; the server's own blocks are not decoded.
 */
import type { Socket } from "bun";
import { PREFACE } from "../../src/engine/h2/preface.ts";
import { waitFor } from "./wait.ts";

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(n: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (n < max) return [first | n];
  const out = [first | max];
  n -= max;
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A literal with incremental indexing, new name (RFC 7541 §6.2.1): it enters the dynamic table. */
export function indexedLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, "latin1");
  const v = Buffer.from(value, "latin1");
  return Buffer.from([0x40, ...hpackInt(n.length, 7, 0), ...n, ...hpackInt(v.length, 7, 0), ...v]);
}

/** An indexed field (RFC 7541 §6.1): entry `index` of the static (1-61) or dynamic (62-) table. */
export function indexedField(index: number): Buffer {
  return Buffer.from(hpackInt(index, 7, 0x80));
}

/** A field block of literals without indexing, new names (RFC 7541 §6.2.2). */
export function fieldBlock(fields: [string, string][]): Buffer {
  const parts: number[] = [];
  for (const [name, value] of fields) {
    parts.push(0);
    const n = Buffer.from(name, "latin1");
    const v = Buffer.from(value, "latin1");
    parts.push(...hpackInt(n.length, 7, 0), ...n, ...hpackInt(v.length, 7, 0), ...v);
  }
  return Buffer.from(parts);
}

export class RawH2 {
  readonly frames: Frame[] = [];
  private buf = Buffer.alloc(0);
  closed = false;

  /** Bytes the socket did not take yet (Bun's write takes what it can), sent on drain. */
  private pending: Buffer[] = [];
  /** Bytes handed to the socket so far (a flood's progress). */
  written = 0;
  /** Acknowledge the server's SETTINGS (false: an attacker that never does). */
  ackSettings = true;

  private constructor(private readonly socket: Socket<unknown>) {}

  /** Bytes queued in this process, not yet taken by the kernel. */
  get backlog(): number {
    let n = 0;
    for (const b of this.pending) n += b.length;
    return n;
  }

  /** As connect(), the preface written in three pieces (to a server that must wait for all of it). */
  static async connectInPieces(port: number): Promise<RawH2> {
    return RawH2.connect(port, [3, 10]);
  }

  /** Connect, send the preface and an empty SETTINGS; the server's SETTINGS are acknowledged as they come. */
  static async connect(port: number, cuts: number[] = [], before?: Uint8Array): Promise<RawH2> {
    let self: RawH2 | undefined;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => self!.onData(d),
        drain: () => self!.drain(),
        close: () => {
          self!.closed = true;
        },
      },
    });
    self = new RawH2(socket as Socket<unknown>);
    const opening = Buffer.concat([before ?? Buffer.alloc(0), PREFACE, frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))]);
    let at = 0;
    for (const cut of cuts) {
      self.write(opening.subarray(at, cut));
      at = cut;
      await Bun.sleep(10);
    }
    self.write(opening.subarray(at));
    return self;
  }

  /** Write `bytes` whole: what the socket does not take now waits for its drain. */
  write(bytes: Uint8Array): void {
    if (this.closed) return;
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (this.pending.length > 0) {
      this.pending.push(b);
      return;
    }
    const n = this.socket.write(b);
    this.written += Math.max(n, 0);
    if (n < b.length) this.pending.push(b.subarray(Math.max(n, 0)));
  }

  private drain(): void {
    while (this.pending.length > 0) {
      const b = this.pending[0]!;
      const n = this.socket.write(b);
      this.written += Math.max(n, 0);
      if (n < b.length) {
        this.pending[0] = b.subarray(Math.max(n, 0));
        return;
      }
      this.pending.shift();
    }
  }

  /** Stop reading the socket (the server's writes pile up in the kernel, then in the server). */
  stopReading(): void {
    (this.socket as unknown as { pause(): void }).pause();
  }

  resumeReading(): void {
    (this.socket as unknown as { resume(): void }).resume();
  }

  /**
   * Send what `next` makes, a piece at a time and only once the socket took the last one (so
   * that the attacker's own memory stays one piece), until `total` bytes went, the connection
   * closed, or `ms` passed. Yields to the event loop between pieces. Resolves with bytes sent.
   */
  async flood(next: () => Uint8Array, total: number, ms: number): Promise<number> {
    const until = performance.now() + ms;
    const start = this.written;
    while (!this.closed && this.written - start < total && performance.now() < until) {
      if (this.pending.length === 0) this.write(next());
      await Bun.sleep(this.pending.length === 0 ? 0 : 1);
    }
    return this.written - start;
  }

  /** One frame as given. */
  send(type: number, flags: number, stream: number, payload: Uint8Array = Buffer.alloc(0)): void {
    this.write(frame(type, flags, stream, payload));
  }

  /** RST_STREAM with `code` (RFC 9113 §6.4; 8 is CANCEL). */
  rst(stream: number, code = 8): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code);
    this.send(FRAME.RST_STREAM, 0, stream, p);
  }

  /** A SETTINGS frame (RFC 9113 §6.5) of `[identifier, value]` pairs. */
  settings(pairs: [number, number][] = []): void {
    const p = Buffer.alloc(6 * pairs.length);
    pairs.forEach(([id, v], i) => {
      p.writeUInt16BE(id, 6 * i);
      p.writeUInt32BE(v, 6 * i + 2);
    });
    this.send(FRAME.SETTINGS, 0, 0, p);
  }

  /** A PING (RFC 9113 §6.7) that the server must acknowledge. */
  ping(n = 0): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(n >>> 0, 4);
    this.send(FRAME.PING, 0, 0, p);
  }

  /** WINDOW_UPDATE (RFC 9113 §6.9) of `stream` (0: the connection). */
  windowUpdate(stream: number, increment: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(increment);
    this.send(FRAME.WINDOW_UPDATE, 0, stream, p);
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Frame = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      this.frames.push(f);
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && this.ackSettings) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0)));
    }
  }

  headers(stream: number, fields: [string, string][], endStream: boolean): void {
    this.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, fieldBlock(fields)));
  }

  data(stream: number, bytes: Uint8Array, endStream: boolean): void {
    this.write(frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, bytes));
  }

  /** The usual pseudo-headers of a GET of `path`. */
  static getFields(path: string): [string, string][] {
    return [[":method", "GET"], [":scheme", "http"], [":authority", "localhost"], [":path", path]];
  }

  /** The GET of `path` with the usual pseudo-headers, and `extra` fields. */
  get(stream: number, path: string, extra: [string, string][] = [], endStream = true): void {
    this.headers(stream, [[":method", "GET"], [":scheme", "http"], [":authority", "localhost"], [":path", path], ...extra], endStream);
  }

  /** The DATA of `stream` so far, as text (DATA is not compressed: a body can be read without HPACK). */
  body(stream: number): string {
    return Buffer.concat(this.frames.filter((f) => f.type === FRAME.DATA && f.stream === stream).map((f) => f.payload)).toString();
  }

  /** The error code of the server's RST_STREAM on `stream`, once one comes; undefined if a response HEADERS came first. */
  async outcome(stream: number): Promise<{ reset?: number; headers?: true }> {
    let found: Frame | undefined;
    await waitFor(() => (found = this.frames.find((f) => f.stream === stream && (f.type === FRAME.RST_STREAM || f.type === FRAME.HEADERS))) !== undefined, `an answer on stream ${stream}`);
    return found!.type === FRAME.RST_STREAM ? { reset: found!.payload.readUInt32BE(0) } : { headers: true };
  }

  /** The first GOAWAY's error code (RFC 9113 §6.8), once one came. */
  goAwayCode(): number | undefined {
    const f = this.frames.find((f) => f.type === FRAME.GOAWAY);
    return f === undefined ? undefined : f.payload.readUInt32BE(4);
  }

  close(): void {
    this.pending = [];
    this.socket.end();
  }

  /** Cut at once, dropping what is queued. */
  terminate(): void {
    this.pending = [];
    this.socket.terminate();
  }
}

/** The settings of a SETTINGS frame's payload (RFC 9113 §6.5.1), by identifier. */
export function settingsOf(payload: Buffer): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i + 6 <= payload.length; i += 6) m.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
  return m;
}
