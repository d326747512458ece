/**
 * The socket engine after a 101 Switching Protocols: the client's connection and the backend's
 * become one byte tunnel (RFC 9110 §7.8: after the 101 the connection speaks the new protocol,
 * here WebSocket, RFC 6455), relayed both ways with TCP mode's backpressure (net/flow.ts).
 *
 * The bytes are not decoded; only frame headers are followed (http/ws-frames.ts), so that the
 * proxy can speak one Close frame of its own where it must, between two frames:
 * - the backend's connection drops without a Close frame: the client gets 1011 (RFC 6455
 *   §7.4.1, an unexpected condition), or, when the drop came in the middle of a frame, just a
 *   closed connection, which the client reads as 1006;
 * - a shutdown whose grace period ran out (goAway): 1001 "going away" to both sides.
 * A client whose connection drops has its backend connection closed the same way (1006 there).
 *
 * The tunnel holds the try's in-flight unit (the Lease) for its whole life, through `BodyEnd`:
 * the forwarding loop releases it when the tunnel reports its end, so least-connections counts
 * an open WebSocket as one request in flight.
 */
import type { Socket } from "bun";
import type { Backend } from "../../pool/backend.ts";
import type { BodyEnd, BodyFailure } from "../../forward/forward.ts";
import { OpenWebSocket } from "../../pool/backend.ts";
import { FrameTracker, closeFrame } from "../../http/ws-frames.ts";
import { Flow } from "../../net/flow.ts";

export class Tunnel {
  /** client -> backend */
  private readonly up = new Flow();
  /** backend -> client */
  private readonly down = new Flow();
  private readonly upFrames = new FrameTracker();
  private readonly downFrames = new FrameTracker();
  private clientClosed = false;
  private backendClosed = false;
  private finished = false;
  private bytesOut = 0;
  private backendError: string | undefined;
  private readonly open: OpenWebSocket;

  private readonly countIn = (n: number): void => {
    this.backend.stats.countBytes(n, 0);
  };
  private readonly countOut = (n: number): void => {
    this.bytesOut += n;
  };

  constructor(
    private readonly client: Socket<unknown>,
    private readonly upstream: Socket<unknown>,
    private readonly backend: Backend,
    private readonly end: BodyEnd,
  ) {
    this.open = new OpenWebSocket(backend);
  }

  /**
   * Start relaying. `toClient`: what the client is owed first (bytes still queued for it, the
   * 101 head), then `fromBackend`, tunnel bytes that came with or after the 101; `toBackend`:
   * bytes still queued for the backend, then `fromClient`, tunnel bytes the client sent early.
   */
  start(toClient: Uint8Array[], fromBackend: Uint8Array[], toBackend: Uint8Array[], fromClient: Uint8Array[]): void {
    for (const c of toClient) this.down.push(c);
    for (const c of fromBackend) {
      this.downFrames.feed(c);
      this.down.push(c);
    }
    for (const c of toBackend) this.up.push(c);
    for (const c of fromClient) {
      this.upFrames.feed(c);
      this.up.push(c);
    }
    this.flushDown();
    this.flushUp();
  }

  clientData(chunk: Uint8Array): void {
    if (this.up.dead) return;
    this.upFrames.feed(chunk);
    this.up.pass(this.client, this.upstream, chunk, this.countIn);
  }

  backendData(chunk: Uint8Array): void {
    if (this.down.dead) return;
    this.downFrames.feed(chunk);
    this.down.pass(this.upstream, this.client, chunk, this.countOut);
  }

  /** The client can take more. */
  clientDrain(): void {
    this.flushDown();
  }

  /** The backend can take more. */
  backendDrain(): void {
    this.flushUp();
  }

  /** The client sent its FIN: pass it on once what it sent has gone. */
  clientEnded(): void {
    this.up.ended = true;
    this.flushUp();
  }

  clientClose(): void {
    if (this.clientClosed) return;
    this.clientClosed = true;
    this.up.ended = true;
    this.down.kill();
    this.flushUp();
    this.settle();
  }

  backendClose(err?: Error): void {
    if (this.backendClosed) return;
    this.backendClosed = true;
    // Gone first and without a Close frame: the backend's failure (passive health hears of it).
    if (!this.downFrames.sawClose && !this.clientClosed) {
      this.backendError = err !== undefined ? `connection reset (${(err as { code?: string }).code ?? err.message})` : "connection closed without a Close frame";
    }
    this.down.ended = true;
    this.up.kill();
    // Gone without a Close frame: tell the client, if a frame of ours can go in here.
    if (!this.downFrames.sawClose && this.downFrames.atBoundary && !this.down.dead) {
      this.down.push(closeFrame(1011, "backend connection lost", false));
    }
    this.flushDown();
    this.settle();
  }

  /** Shutdown after the grace period: 1001 to both sides where a frame can go, then close. */
  goAway(): void {
    if (this.finished) return;
    if (!this.clientClosed && !this.downFrames.sawClose && this.downFrames.atBoundary) this.down.push(closeFrame(1001, "going away", false));
    if (!this.backendClosed && !this.upFrames.sawClose && this.upFrames.atBoundary) this.up.push(closeFrame(1001, "going away", true));
    if (!this.clientClosed) this.down.writeQueued(this.client, this.countOut);
    if (!this.backendClosed) this.up.writeQueued(this.upstream, this.countIn);
    // Marked closed first: end() fires `close` synchronously, and finish() runs once, here.
    const client = !this.clientClosed;
    const backend = !this.backendClosed;
    this.clientClosed = this.backendClosed = true;
    this.up.kill();
    this.down.kill();
    if (client) this.client.end();
    if (backend) this.upstream.end();
    this.finish();
  }

  private flushUp(): void {
    if (this.backendClosed) return;
    const empty = this.up.flush(this.client, this.clientClosed, this.upstream, this.countIn);
    // The client is gone and all it sent has gone on: close the backend's side too.
    if (empty && this.clientClosed) this.upstream.end();
  }

  private flushDown(): void {
    if (this.clientClosed) return;
    const empty = this.down.flush(this.upstream, this.backendClosed, this.client, this.countOut);
    if (empty && this.backendClosed) this.client.end();
  }

  private settle(): void {
    if (this.clientClosed && this.backendClosed) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.open.close();
    let failure: BodyFailure | undefined;
    if (this.backendError !== undefined) failure = { by: "backend", detail: this.backendError };
    else if (!this.upFrames.sawClose && !this.downFrames.sawClose) failure = { by: "client", detail: "connection closed without a Close frame" };
    this.end.bodyEnded(this.bytesOut, failure);
  }
}
