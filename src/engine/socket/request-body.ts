/**
 * A request body on its way from the client to a backend. The client side pushes what the
 * parser decoded; an upstream connection attaches as the sink and writes it on, re-framed:
 * a body read whole goes with Content-Length, a streamed one keeps its Content-Length or is
 * sent chunked (without trailers: RFC 9110 §6.5.1 lets a proxy drop them, and Bun.serve
 * backends end a chunked body at `0\r\n` and read the trailer lines as the next request:
 * forwarding them to such a backend smuggles a request; measured on Bun 1.4.5).
 */

/** Where a streamed body goes: an upstream connection. */
export interface BodySink {
  /** Write a piece of the body (framed as the head promised). */
  bodyChunk(chunk: Uint8Array): void;
  /** The body is complete: write the end of chunked framing if any. */
  bodyEnd(): void;
  /** True while the sink's socket holds more than it should: the client is paused. */
  readonly congested: boolean;
  /** Called once the congestion clears. */
  onDecongested(fn: () => void): void;
}

export class RequestBody {
  private chunks: Uint8Array[] = [];
  /** Bytes received from the client so far. */
  received = 0;
  /** Bytes received and not yet handed to a sink. */
  held = 0;
  ended = false;
  private sink: BodySink | undefined;

  /**
   * `length`: the declared Content-Length, or -1 for a chunked body. `chunked` upstream framing
   * is used when the body streams without a known length.
   */
  constructor(readonly length: number) {}

  get chunked(): boolean {
    return this.length < 0;
  }

  push(chunk: Uint8Array): void {
    this.received += chunk.length;
    if (this.sink !== undefined) this.sink.bodyChunk(chunk);
    else {
      this.chunks.push(chunk);
      this.held += chunk.length;
    }
  }

  end(): void {
    this.ended = true;
    this.sink?.bodyEnd();
  }

  /** The whole body, for a body read completely before the first try (replayable). */
  bytes(): Uint8Array {
    if (this.chunks.length === 1) return this.chunks[0]!;
    return Buffer.concat(this.chunks, this.held);
  }

  /** Start streaming to `sink`: what is held goes first, the rest as it arrives. */
  attach(sink: BodySink): void {
    this.sink = sink;
    for (const c of this.chunks) sink.bodyChunk(c);
    this.chunks = [];
    this.held = 0;
    if (this.ended) sink.bodyEnd();
  }

  /** The sink is gone (its try failed or finished): further bytes are dropped. */
  detach(): void {
    this.sink = undefined;
  }

  get congested(): boolean {
    return this.sink?.congested ?? false;
  }

  onDecongested(fn: () => void): void {
    if (this.sink) this.sink.onDecongested(fn);
    else fn();
  }
}

/** One chunk in chunked framing (RFC 9112 §7.1): size in hex, CRLF, data, CRLF. */
export function chunkHead(size: number): Uint8Array {
  return Buffer.from(`${size.toString(16)}\r\n`, "latin1");
}
export const CRLF = Buffer.from("\r\n");
/** The last chunk and an empty trailer section. */
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");
