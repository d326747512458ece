/**
 * The one raw client the tests use: exact bytes over a plain TCP connection, for what fetch
 * would normalize or refuse (paths, repeated or hop-by-hop fields, framing, pipelining, half
 * closes, slow or vanishing clients), in TCP mode and HTTP mode alike.
 *
 * - rawClient: an open connection the test drives (write, wait for bytes or a condition, half
 *   close, end, reset), with hooks for clients that react as bytes come (pacing, keep-alive
 *   loops, uploads with backpressure).
 * - rawExchange: write exact bytes (at once, in pieces, or dribbled), read until a condition or
 *   a close, and give back the text and the status codes.
 * - rawRequest: one request head with Connection: close, the response parsed.
 */
import type { Socket } from "bun";
import { waitFor } from "./wait.ts";

export type Bytes = string | Uint8Array;

/** Strings go out as latin1: one character, one byte, as the tests write them. */
const toBytes = (b: Bytes): Uint8Array => (typeof b === "string" ? Buffer.from(b, "latin1") : b);

export interface RawClient {
  readonly socket: Socket<undefined>;
  /** Everything received so far, as latin1 text. */
  text(): string;
  /** Bytes received so far. */
  received(): number;
  /** The peer sent FIN (half-open clients; otherwise its FIN closes the connection). */
  readonly ended: boolean;
  /** The connection is closed (both FINs passed, or a reset). */
  readonly closed: boolean;
  /** Write `data` whole (Bun's write takes small writes whole; a short write throws). */
  send(data: Bytes): void;
  /** Write what the socket takes now, as Bun's write does; returns the bytes taken. */
  write(data: Bytes): number;
  /** Write `data` `size` bytes at a time, `pauseMs` apart, so the peer gets it over many reads. */
  dribble(data: Bytes, size: number, pauseMs?: number): Promise<void>;
  /** Resolves when `condition` holds for what was received (or fails naming `what`). */
  waitFor(condition: (text: string) => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Resolves when `n` bytes in total have arrived. */
  waitBytes(n: number, timeoutMs?: number): Promise<void>;
  /** Resolves when the socket has closed (reset, or both FINs passed). */
  waitClosed(timeoutMs?: number): Promise<void>;
  /** Resolves when the peer is done: its FIN came, or the socket closed. */
  waitEof(timeoutMs?: number): Promise<void>;
  /** Resolves when something arrives, the connection closes, or `timeoutMs` passes. */
  settle(timeoutMs: number): Promise<void>;
  /** Half-close: send FIN, keep reading (needs halfOpen). */
  shutdown(): void;
  /** Close gracefully. */
  end(): void;
  /** Close at once (a reset when bytes are unread). */
  terminate(): void;
}

export interface RawClientOptions {
  /** Keep reading after the peer's FIN, and allow shutdown() (TCP half-close tests). */
  halfOpen?: boolean;
  /** Keep what arrives for text() (default); false only counts it (long downloads). */
  keep?: boolean;
  /** Each chunk as it arrives, after it is counted: for clients that pace their reading or answer as they go. */
  onData?(chunk: Uint8Array, socket: Socket<undefined>): void;
  /** The socket takes writes again after a short write (an upload with backpressure). */
  onDrain?(socket: Socket<undefined>): void;
  /** The peer's FIN (half-open clients only). */
  onEnd?(): void;
  /** The connection closed; `error` when it ended in one (a reset). */
  onClose?(error?: Error): void;
  /** An error on the connection (a reset, a broken pipe), before its close. */
  onError?(error: Error): void;
}

/** Connect to 127.0.0.1:`port` and hand the connection to the test. */
export async function rawClient(port: number, opts: RawClientOptions = {}): Promise<RawClient> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let cached: string | undefined;
  const state = { ended: false, closed: false };
  let wake: () => void = () => {};
  const halfOpen = opts.halfOpen ?? false;
  const keep = opts.keep ?? true;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: halfOpen,
    socket: {
      data(s, chunk) {
        if (keep) chunks.push(new Uint8Array(chunk));
        total += chunk.length;
        cached = undefined;
        opts.onData?.(chunk, s);
        wake();
      },
      drain(s) {
        opts.onDrain?.(s);
      },
      // Without half-open, Bun closes on the peer's FIN by itself (an end handler would delay
      // the close a test checks for).
      ...(halfOpen
        ? {
            end() {
              state.ended = true;
              opts.onEnd?.();
              wake();
            },
          }
        : {}),
      close(_s, error) {
        state.closed = true;
        opts.onClose?.(error);
        wake();
      },
      error(_s, error) {
        opts.onError?.(error);
      },
    },
  });
  const text = () => (cached ??= Buffer.concat(chunks).toString("latin1"));
  return {
    socket,
    text,
    received: () => total,
    get ended() {
      return state.ended;
    },
    get closed() {
      return state.closed;
    },
    send(data) {
      const bytes = toBytes(data);
      const n = socket.write(bytes);
      if (n !== bytes.length) throw new Error(`short write (${n} of ${bytes.length}) in a test meant for small writes`);
    },
    write: (data) => socket.write(toBytes(data)),
    async dribble(data, size, pauseMs = 1) {
      const bytes = toBytes(data);
      for (let i = 0; i < bytes.length; i += size) {
        socket.write(bytes.subarray(i, i + size));
        await Bun.sleep(pauseMs);
      }
    },
    waitFor: (condition, what, timeoutMs) => waitFor(() => condition(text()), what, timeoutMs),
    waitBytes: (n, timeoutMs) => waitFor(() => total >= n, `${n} bytes (have ${total})`, timeoutMs),
    waitClosed: (timeoutMs) => waitFor(() => state.closed, "the connection to close", timeoutMs),
    waitEof: (timeoutMs) => waitFor(() => state.ended || state.closed, "the peer to end the connection", timeoutMs),
    settle: (timeoutMs) =>
      new Promise<void>((r) => {
        wake = r;
        setTimeout(r, timeoutMs);
      }),
    shutdown: () => socket.shutdown(),
    end: () => socket.end(),
    terminate: () => socket.terminate(),
  };
}

export interface RawExchange {
  /** Everything the peer wrote, as latin1 text. */
  text: string;
  /** Status codes of the responses in order (interim ones included). */
  statuses: number[];
  /** The peer closed the connection. */
  closed: boolean;
}

export interface RawExchangeOptions {
  /** Write each piece `dribble` bytes at a time, 1 ms apart. */
  dribble?: number;
  /** Pause between pieces when `input` has more than one (20 ms by default). */
  pauseMs?: number;
  /** Stop reading once this holds for what was read. */
  until?: (text: string) => boolean;
  /** Stop reading after this long (3000 ms by default). */
  timeoutMs?: number;
  /** How often to look again when nothing arrives (20 ms by default). */
  pollMs?: number;
}

/**
 * Write `input` (all at once, in pieces with a pause after each, or dribbled), then read until
 * the peer closes the connection, `until` holds for what was read, or `timeoutMs` passes; then
 * end the connection if it is still open.
 */
export async function rawExchange(port: number, input: Bytes | Bytes[], opts: RawExchangeOptions = {}): Promise<RawExchange> {
  const client = await rawClient(port);
  const pieces = Array.isArray(input) ? input : [input];
  for (const piece of pieces) {
    if (opts.dribble) await client.dribble(piece, opts.dribble);
    else {
      client.write(piece);
      if (pieces.length > 1) await Bun.sleep(opts.pauseMs ?? 20);
    }
  }
  const deadline = performance.now() + (opts.timeoutMs ?? 3000);
  while (!client.closed && !(opts.until?.(client.text()) ?? false) && performance.now() < deadline) {
    await client.settle(opts.pollMs ?? 20);
  }
  // Read before ending: our own end() closes the socket at once, and would count as the peer's.
  const closed = client.closed;
  if (!closed) client.end();
  const text = client.text();
  return { text, statuses: statusesOf(text), closed };
}

/** Status codes of the HTTP/1.1 responses in `text`, in order (interim ones included). */
export function statusesOf(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** Complete responses in `text`: a crude count for "n answers arrived" conditions. */
export function countResponses(text: string): number {
  return (text.match(/HTTP\/1\.1 [2-5]\d\d /g) ?? []).length;
}

export interface RawResponse {
  status: number;
  /** Header lines in wire order. */
  headers: [string, string][];
  body: string;
}

/**
 * One response from `text`: the status line's code, the field lines in wire order (names as
 * sent; `lowerCase` folds them) and everything after the head as the body.
 */
export function parseResponse(text: string, { lowerCase = false } = {}): RawResponse {
  const split = text.indexOf("\r\n\r\n");
  const [statusLine = "", ...lines] = text.slice(0, split).split("\r\n");
  return {
    status: Number(statusLine.split(" ")[1]),
    headers: lines.map((l) => {
      const name = l.slice(0, l.indexOf(":"));
      return [lowerCase ? name.toLowerCase() : name, l.slice(l.indexOf(":") + 1).trim()];
    }),
    body: text.slice(split + 4),
  };
}

/**
 * Sends `head` (request line and headers, without the blank line) over a fresh TCP connection
 * with Connection: close, so the test controls the exact bytes (fetch would normalize the path),
 * and reads until the peer closes. Header names come back as sent over the wire; `lowerCase`
 * folds them.
 */
export async function rawRequest(port: number, head: string, { lowerCase = false, timeoutMs = 10_000 } = {}): Promise<RawResponse> {
  const { text, closed } = await rawExchange(port, `${head}\r\nConnection: close\r\n\r\n`, { timeoutMs });
  if (!closed) throw new Error(`the connection was still open ${timeoutMs} ms after ${JSON.stringify(head.split("\r\n")[0])}: ${JSON.stringify(text)}`);
  return parseResponse(text, { lowerCase });
}

/** A TCP server that accepts and then closes every connection as soon as bytes arrive: a backend that resets. */
export function startResettingServer(): { port: number; url: string; connections: () => number; stop(): void } {
  let connections = 0;
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        connections++;
      },
      data(socket) {
        socket.terminate();
      },
    },
  });
  return { port: server.port, url: `http://127.0.0.1:${server.port}`, connections: () => connections, stop: () => server.stop(true) };
}
