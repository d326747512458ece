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

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
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

  private constructor(private readonly socket: Socket<unknown>) {}

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
        close: () => {
          self!.closed = true;
        },
      },
    });
    self = new RawH2(socket as Socket<unknown>);
    const opening = Buffer.concat([before ?? Buffer.alloc(0), PREFACE, frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))]);
    let at = 0;
    for (const cut of cuts) {
      socket.write(opening.subarray(at, cut));
      at = cut;
      await Bun.sleep(10);
    }
    socket.write(opening.subarray(at));
    return self;
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Frame = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      this.frames.push(f);
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0)));
    }
  }

  headers(stream: number, fields: [string, string][], endStream: boolean): void {
    this.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, fieldBlock(fields)));
  }

  data(stream: number, bytes: Uint8Array, endStream: boolean): void {
    this.socket.write(frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, bytes));
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

  close(): void {
    this.socket.end();
  }
}

/** The settings of a SETTINGS frame's payload (RFC 9113 §6.5.1), by identifier. */
export function settingsOf(payload: Buffer): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i + 6 <= payload.length; i += 6) m.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
  return m;
}
