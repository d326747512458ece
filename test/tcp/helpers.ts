/**
 * Real TCP servers and clients for the layer-4 tests: echo, sink-then-reply and half-closing
 * backends, a client that streams a deterministic payload with backpressure and hashes what
 * comes back, a loopback blackhole. Short interactive exchanges use the raw client
 * (test/helpers/raw.ts, rawClient with halfOpen).
 */
import type { Socket, TCPSocketListener } from "bun";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { rawClient } from "../helpers/raw.ts";


/** Writes with Bun's unbuffered write(): keeps the rest and sends it from drain. */
class Writer {
  private pending: Uint8Array[] = [];
  constructor(private readonly socket: Socket<unknown>) {}
  get backlog(): number {
    return this.pending.reduce((n, c) => n + c.length, 0);
  }
  /** True when everything went out now. */
  write(chunk: Uint8Array): boolean {
    if (this.pending.length === 0) {
      const n = this.socket.write(chunk);
      if (n < 0) return true;
      if (n === chunk.length) return true;
      this.pending.push(chunk.subarray(n));
      return false;
    }
    this.pending.push(chunk);
    return false;
  }
  /** From drain; true when the backlog is empty. */
  flush(): boolean {
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = this.socket.write(head);
      if (n < 0) {
        this.pending = [];
        return true;
      }
      if (n < head.length) {
        this.pending[0] = head.subarray(n);
        return false;
      }
      this.pending.shift();
    }
    return true;
  }
}

export interface TestServer {
  readonly port: number;
  readonly name: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections open now. */
  open: number;
  /** Bytes received over all connections. */
  received: number;
  stop(): void;
}

interface ConnState {
  writer: Writer;
  /** The client's FIN came while writes were waiting: pass it on once they are out. */
  finPending: boolean;
  received: number;
  hasher: Bun.CryptoHasher;
}

type Behaviour = {
  /** On accept. */
  open?(s: Socket<ConnState>, st: ConnState): void;
  /** Per chunk. */
  data?(s: Socket<ConnState>, st: ConnState, chunk: Uint8Array): void;
  /** On the client's FIN. */
  end?(s: Socket<ConnState>, st: ConnState): void;
};

function startServer(name: string, b: Behaviour): TestServer {
  const server: TestServer = {
    port: 0, name, accepted: 0, open: 0, received: 0,
    stop: () => listener.stop(true),
  };
  const listener: TCPSocketListener<ConnState> = Bun.listen<ConnState>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        server.accepted++;
        server.open++;
        s.data = { writer: new Writer(s), finPending: false, received: 0, hasher: new Bun.CryptoHasher("sha256") };
        b.open?.(s, s.data);
      },
      data(s, chunk) {
        server.received += chunk.length;
        s.data.received += chunk.length;
        b.data?.(s, s.data, chunk);
      },
      drain(s) {
        if (!s.data.writer.flush()) return;
        s.resume();
        if (s.data.finPending) s.shutdown();
      },
      end(s) {
        if (b.end) b.end(s, s.data);
        else if (s.data.writer.backlog > 0) s.data.finPending = true;
        else s.shutdown();
      },
      close() {
        server.open--;
      },
    },
  });
  (server as { port: number }).port = listener.port;
  return server;
}

/** Sends back every byte, with backpressure (pauses reading while its own writes wait). */
export function startEchoServer(name = "echo"): TestServer {
  return startServer(name, {
    data(s, st, chunk) {
      if (!st.writer.write(chunk)) s.pause();
    },
  });
}

/**
 * Reads until the client's FIN, then answers "<bytes> <sha256>\n" and closes its side: the
 * answer can only arrive if the proxy passed the FIN on and kept the other direction open.
 */
export function startSummaryServer(name = "summary"): TestServer {
  return startServer(name, {
    data(_s, st, chunk) {
      st.hasher.update(chunk);
    },
    end(s, st) {
      s.write(`${st.received} ${st.hasher.digest("hex")}\n`);
      s.shutdown();
    },
  });
}

/**
 * Greets and half-closes at once ("hello\n", then FIN), then keeps reading: what the client
 * sends after the backend's FIN must still arrive. On the client's FIN it closes.
 */
export function startEarlyFinServer(name = "early-fin"): TestServer {
  return startServer(name, {
    open(s) {
      s.write("hello\n");
      s.shutdown();
    },
    end(s) {
      s.end();
    },
  });
}

/** A deterministic byte stream: 1 MiB blocks of pseudo-random bytes, each block salted with its index. */
export function* payload(total: number, block = 1 << 20): Generator<Uint8Array> {
  const base = new Uint8Array(block);
  let x = 0x9e3779b9;
  for (let i = 0; i < block; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    base[i] = x & 0xff;
  }
  for (let sent = 0, k = 0; sent < total; sent += block, k++) {
    const n = Math.min(block, total - sent);
    const chunk = base.slice(0, n);
    // Salt so that a reordered or repeated block changes the hash.
    new DataView(chunk.buffer).setUint32(0, k);
    yield chunk;
  }
}

export interface StreamResult {
  sentHash: string;
  receivedHash: string;
  received: number;
  /** The other side closed (FIN or close) before we did. */
  closedByPeer: boolean;
}

export interface StreamOptions {
  /** Read at most this many bytes per 10 ms (a slow reader); unlimited by default. */
  readBudgetPer10ms?: number;
  /** Expect this many bytes back before closing (default: as many as sent). */
  expect?: number;
  /** Half-close after sending, and wait for the peer's FIN. */
  halfClose?: boolean;
  timeoutMs?: number;
}

/**
 * Connects to port (the raw client, half-open), streams `total` bytes of payload() with
 * backpressure, hashes both what it sent and what it got back, and resolves once `expect` bytes
 * came back (or the peer closed).
 */
export function streamThrough(port: number, total: number, opts: StreamOptions = {}): Promise<StreamResult> {
  const expect = opts.expect ?? total;
  const sent = new Bun.CryptoHasher("sha256");
  const got = new Bun.CryptoHasher("sha256");
  const source = payload(total);
  let received = 0;
  let windowUsed = 0;
  let paused = false;
  let socket: Socket<undefined> | undefined;
  let writer: Writer | undefined;
  let finished = false;
  return new Promise<StreamResult>((resolve, reject) => {
    const ticker = opts.readBudgetPer10ms
      ? setInterval(() => {
          windowUsed = 0;
          if (paused) {
            paused = false;
            socket?.resume();
          }
        }, 10)
      : undefined;
    const timer = setTimeout(() => done(new Error(`stream of ${total} bytes timed out after ${received} bytes back`)), opts.timeoutMs ?? 20_000);
    const done = (err?: Error, closedByPeer = false) => {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      clearTimeout(timer);
      if (err) {
        socket?.terminate();
        reject(err);
        return;
      }
      socket?.end();
      resolve({ sentHash: sent.digest("hex"), receivedHash: got.digest("hex"), received, closedByPeer });
    };
    let sourceDone = false;
    const pump = () => {
      if (!writer || sourceDone) return;
      if (!writer.flush()) return;
      for (;;) {
        const next = source.next();
        if (next.done) {
          sourceDone = true;
          if (opts.halfClose) socket!.shutdown();
          return;
        }
        sent.update(next.value);
        if (!writer.write(next.value)) return;
      }
    };
    rawClient(port, {
      halfOpen: true,
      keep: false,
      onDrain() {
        pump();
      },
      onData(chunk, s) {
        received += chunk.length;
        got.update(chunk);
        if (opts.readBudgetPer10ms) {
          windowUsed += chunk.length;
          if (windowUsed >= opts.readBudgetPer10ms && !paused) {
            paused = true;
            s.pause();
          }
        }
        if (received >= expect && !opts.halfClose) done();
      },
      onEnd() {
        done(undefined, true);
      },
      onClose(err) {
        if (err) done(err);
        else done(undefined, true);
      },
    }).then((client) => {
      socket = client.socket;
      writer = new Writer(client.socket);
      pump();
    }).catch((e) => done(e as Error));
  });
}

/** sha256 of payload(total), computed without a socket. */
export function payloadHash(total: number): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const c of payload(total)) h.update(c);
  return h.digest("hex");
}

/** A loopback port with nothing listening on it (bound and released; racy in theory only). */
export function refusedPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/**
 * A loopback address that swallows SYNs: a socket that listens with backlog 0 and never
 * accepts (Bun.listen always accepts, so this goes through libc). Once one connection fills
 * its accept queue, Linux drops further SYNs and a connect hangs, as toward a blackholed host.
 */
export async function startBlackhole(): Promise<{ port: number; close(): void }> {
  const libc = dlopen(process.platform === "linux" ? "libc.so.6" : "libc.dylib", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  });
  const AF_INET = 2;
  const SOCK_STREAM = 1;
  const fd = libc.symbols.socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw new Error("blackhole: socket() failed");
  // struct sockaddr_in: family (host order), port (network order), 127.0.0.1, zero padding.
  const addr = new Uint8Array(16);
  const view = new DataView(addr.buffer);
  view.setUint16(0, AF_INET, true);
  addr.set([127, 0, 0, 1], 4);
  const len = new Uint32Array([16]);
  if (libc.symbols.bind(fd, ptr(addr), 16) !== 0 || libc.symbols.listen(fd, 0) !== 0 || libc.symbols.getsockname(fd, ptr(addr), ptr(len)) !== 0) {
    libc.symbols.close(fd);
    throw new Error("blackhole: bind/listen failed");
  }
  const port = view.getUint16(2, false);
  // Fill the accept queue (one entry with backlog 0) so that later SYNs are dropped.
  const filler = await rawClient(port);
  return {
    port,
    close() {
      filler.terminate();
      libc.symbols.close(fd);
      libc.close();
    },
  };
}
