/**
 * Just enough of WebSocket framing (RFC 6455 §5.2) for a proxy that relays the bytes without
 * decoding them: where frames begin and end, whether a Close frame has passed, and a Close
 * frame of its own to send at a frame boundary (a byte tunnel cannot put one inside another
 * frame, but may put one between the fragments of a message: control frames may be
 * interleaved, §5.4).
 */

const OPCODE_CLOSE = 0x8;

/** Follows one direction of a WebSocket byte stream, frame header by frame header. */
export class FrameTracker {
  /** Payload bytes still to come in the current frame. */
  private left = 0;
  /** Header bytes of the next frame seen so far (at most 14: 2 + 8 length + 4 mask). */
  private readonly head = new Uint8Array(14);
  private headLen = 0;
  /** A Close frame has started in this direction: the endpoint is closing on its own. */
  sawClose = false;

  /** Bytes that passed; payloads are skipped in bulk, only headers are read byte by byte. */
  feed(b: Uint8Array): void {
    let i = 0;
    const n = b.length;
    while (i < n) {
      if (this.left > 0) {
        const take = Math.min(this.left, n - i);
        this.left -= take;
        i += take;
        continue;
      }
      this.head[this.headLen++] = b[i++]!;
      const need = headerLength(this.head, this.headLen);
      if (need === 0 || this.headLen < need) continue;
      if ((this.head[0]! & 0x0f) === OPCODE_CLOSE) this.sawClose = true;
      this.left = payloadLength(this.head);
      this.headLen = 0;
    }
  }

  /** Between two frames: a frame of our own may go here. */
  get atBoundary(): boolean {
    return this.left === 0 && this.headLen === 0;
  }
}

/** The whole header's length once its first two bytes are known; 0 before that. */
function headerLength(h: Uint8Array, have: number): number {
  if (have < 2) return 0;
  const len7 = h[1]! & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (h[1]! & 0x80 ? 4 : 0);
}

function payloadLength(h: Uint8Array): number {
  const len7 = h[1]! & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return (h[2]! << 8) | h[3]!;
  // 64-bit length, most significant bit 0 (§5.2); above 2^53 is no real frame.
  let v = 0;
  for (let i = 2; i < 10; i++) v = v * 256 + h[i]!;
  return v;
}

/**
 * A Close frame with a status code (§5.5.1, §7.4). Frames to a server are masked, frames to a
 * client are not (§5.3): `masked` for the one sent to the backend.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Uint8Array {
  const text = new TextEncoder().encode(reason).subarray(0, 123);
  const len = 2 + text.length;
  const out = new Uint8Array(2 + (masked ? 4 : 0) + len);
  out[0] = 0x80 | OPCODE_CLOSE;
  out[1] = (masked ? 0x80 : 0) | len;
  const payload = new Uint8Array(len);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  if (masked) {
    const key = crypto.getRandomValues(new Uint8Array(4));
    out.set(key, 2);
    for (let i = 0; i < len; i++) out[6 + i] = payload[i]! ^ key[i & 3]!;
  } else {
    out.set(payload, 2);
  }
  return out;
}

/**
 * The code the proxy sends on when one side's close code cannot itself be sent (§7.4.1):
 * 1005 (no code was given) becomes 1000; 1006 (the connection dropped) and 1015 (TLS failed)
 * mean the other side vanished, which to this side is 1011, an unexpected condition.
 */
export function sendableCode(code: number): number {
  if (code === 1005) return 1000;
  if (code === 1006 || code === 1015) return 1011;
  if ((code >= 1000 && code <= 1014 && code !== 1004) || (code >= 3000 && code <= 4999)) return code;
  return 1011;
}
