/**
 * GET /events: a server-sent event stream (text/event-stream) the dashboard reads with
 * EventSource. On connect it sends `retry:` (how soon EventSource reconnects), a `hello` event
 * with the chart history and the current figures; then a `tick` event after every sample (once
 * a second) with the figures and the new chart point.
 *
 * One sampler tick builds and serializes the payload once, whatever the number of clients.
 * A client that goes away (its request aborts or the stream is cancelled) is unsubscribed at
 * once and releases its hold on the sampler; a client that reads too slowly misses ticks rather
 * than growing a queue.
 */
import { errorResponse } from "../errors.ts";
import type { Sampler, SeriesPoint } from "./sampler.ts";
import type { StatsDocument } from "./snapshot.ts";

export interface EventHubOptions {
  /** Sent as `retry:`, ms. Default 1000. */
  retryMs?: number;
  /** Streams open at once; more are refused with 503. Default 64. */
  maxClients?: number;
}

interface Client {
  send(chunk: Uint8Array): void;
  close(): void;
}

const encoder = new TextEncoder();

export class EventHub {
  private readonly clients = new Set<Client>();
  private readonly retryMs: number;
  private readonly maxClients: number;
  private readonly unlisten: () => void;
  private seq = 0;

  constructor(
    private readonly sampler: Sampler,
    private readonly snapshot: () => StatsDocument,
    opts: EventHubOptions = {},
  ) {
    this.retryMs = opts.retryMs ?? 1000;
    this.maxClients = opts.maxClients ?? 64;
    this.unlisten = sampler.onSample((point) => this.broadcast(point));
  }

  get size(): number {
    return this.clients.size;
  }

  /** The response for one GET /events. `signal` is the request's: it fires when the client goes. */
  open(signal: AbortSignal): Response {
    if (this.clients.size >= this.maxClients) {
      return errorResponse("SY_TOO_MANY_STREAMS", `too many event streams open (at most ${this.maxClients})`, { retryAfter: 5, extra: { max: this.maxClients } });
    }
    let client: Client | undefined;
    let release: (() => void) | undefined;
    let closeStream = () => {};
    let finished = false;
    /** Idempotent: unsubscribe, release the sampler, end the stream if it is still open. */
    const finish = () => {
      if (finished) return;
      finished = true;
      if (client) this.clients.delete(client);
      release?.();
      signal.removeEventListener("abort", finish);
      closeStream();
    };
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = {
          send: (chunk) => {
            // Past a few unsent events the client is not reading: drop this one.
            if ((controller.desiredSize ?? 0) < -4) return;
            try {
              controller.enqueue(chunk);
            } catch {
              finish();
            }
          },
          close: finish,
        };
        closeStream = () => {
          try {
            controller.close();
          } catch {
            // already closed or errored
          }
        };
        this.clients.add(client);
        release = this.sampler.hold();
        const hello = JSON.stringify({ stats: this.snapshot(), history: this.sampler.history() });
        controller.enqueue(encoder.encode(`retry: ${this.retryMs}\n\n` + frame("hello", this.seq, hello)));
      },
      cancel: () => {
        closeStream = () => {};
        finish();
      },
    });
    if (signal.aborted) finish();
    else signal.addEventListener("abort", finish, { once: true });
    return new Response(stream, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-store",
        // Tell any buffering reverse proxy in front of the admin port to pass events at once.
        "x-accel-buffering": "no",
      },
    });
  }

  /** Send one event to every open stream now (a change made while running). */
  publish(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    this.seq++;
    const chunk = encoder.encode(frame(event, this.seq, JSON.stringify(data)));
    for (const c of this.clients) c.send(chunk);
  }

  /** End every stream and stop listening to the sampler. */
  close(): void {
    this.unlisten();
    for (const c of [...this.clients]) c.close();
    this.clients.clear();
  }

  private broadcast(point: SeriesPoint | undefined): void {
    if (this.clients.size === 0) return;
    this.seq++;
    const chunk = encoder.encode(frame("tick", this.seq, JSON.stringify({ stats: this.snapshot(), point: point ?? null })));
    for (const c of this.clients) c.send(chunk);
  }
}

/** One event. `data` is JSON, so it holds no raw line breaks (JSON escapes them). */
function frame(event: string, id: number, data: string): string {
  return `id: ${id}\nevent: ${event}\ndata: ${data}\n\n`;
}
