/**
 * HTTP/2 backends for the h2 upstream tests: real node:http2 servers (h2c, and h2 over TLS with
 * ALPN), and a raw one that speaks just enough HTTP/2 frames to refuse streams (REFUSED_STREAM,
 * GOAWAY), since node:http2's own server does not put its reset code on the wire in Bun 1.4.5.
 */
import http2, { type Http2Server, type Http2SecureServer, type ServerHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import net from "node:net";
import { readFileSync } from "node:fs";

export interface H2Backend {
  readonly url: string;
  readonly port: number;
  /** Streams it was sent, by path. */
  readonly paths: string[];
  /** HTTP/2 connections it accepted, and how many are open now. */
  accepted(): number;
  open(): number;
  stop(): Promise<void>;
}

export type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, name: string) => void;

/** Answers 200 with `name` and what it received: method, path, authority, te, body length. */
export const echo: StreamHandler = (stream, headers, name) => {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("end", () => {
    const body = Buffer.concat(chunks);
    if (stream.destroyed) return;
    stream.respond({ ":status": 200, "content-type": "application/json", "x-backend": name });
    stream.end(JSON.stringify({ backend: name, method: headers[":method"], path: headers[":path"], authority: headers[":authority"], te: headers.te, host: headers.host, length: body.length, sha: new Bun.CryptoHasher("sha256").update(body).digest("hex") }));
  });
};

function track(server: Http2Server | Http2SecureServer, name: string, handler: StreamHandler, paths: string[]) {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    accepted++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("stream", (stream, headers) => {
    paths.push(String(headers[":path"]));
    stream.on("error", () => {});
    handler(stream, headers, name);
  });
  server.on("sessionError", () => {});
  return { accepted: () => accepted, open: () => sockets.size, kill: () => { for (const s of sockets) s.destroy(); } };
}

async function listen(server: net.Server | Http2Server | Http2SecureServer, port = 0): Promise<number> {
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return (server.address() as net.AddressInfo).port;
}

export async function startH2c(name: string, handler: StreamHandler = echo, settings: http2.Settings = {}, port = 0): Promise<H2Backend & { kill(): void }> {
  const server = http2.createServer({ settings });
  const paths: string[] = [];
  const t = track(server, name, handler, paths);
  const bound = await listen(server, port);
  return {
    url: `http://127.0.0.1:${bound}`, port: bound, paths, accepted: t.accepted, open: t.open, kill: t.kill,
    stop: () => { t.kill(); return new Promise<void>((r) => server.close(() => r())); },
  };
}

export async function startH2Tls(name: string, cert: { cert: string; key: string }, handler: StreamHandler = echo, allowHTTP1 = false): Promise<H2Backend> {
  const server = http2.createSecureServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key), allowHTTP1, ...(allowHTTP1 ? { ALPNProtocols: ["http/1.1"] } : {}) });
  const paths: string[] = [];
  const t = track(server, name, handler, paths);
  const port = await listen(server);
  return {
    url: `https://localhost:${port}`, port, paths, accepted: t.accepted, open: t.open,
    stop: () => { t.kill(); return new Promise<void>((r) => server.close(() => r())); },
  };
}

const frame = (type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id, 5);
  payload.copy(b, 9);
  return b;
};
const u32 = (...n: number[]) => {
  const b = Buffer.alloc(4 * n.length);
  n.forEach((x, i) => b.writeUInt32BE(x, 4 * i));
  return b;
};

/**
 * A raw HTTP/2 backend that refuses every request: `rst` answers each stream's HEADERS with
 * RST_STREAM REFUSED_STREAM (RFC 9113 §8.7); `goaway` with a GOAWAY whose last stream id is 0
 * (so every stream is above it, §6.8), then closes; `goaway-after-first` waits for two streams,
 * sends a GOAWAY whose last stream id is the first's, answers the first (200, body "first":
 * in flight below the last id, it finishes), and closes.
 */
export async function startRefusing(how: "rst" | "goaway" | "goaway-after-first"): Promise<H2Backend> {
  const paths: string[] = [];
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    accepted++;
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    let buf = Buffer.alloc(0);
    let preface = false;
    const streams: number[] = [];
    sock.write(frame(4, 0, 0));
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === 4 && !(flags & 1)) sock.write(frame(4, 1, 0));
        if (type !== 1) continue;
        paths.push(`stream ${id}`);
        if (how === "rst") sock.write(frame(3, 0, id, u32(7)));
        else if (how === "goaway") sock.end(frame(7, 0, 0, u32(0, 0)));
        else if (streams.push(id) === 2) {
          const first = streams[0]!;
          // HPACK 0x88 is the static table's ":status: 200" (RFC 7541 Appendix A); END_HEADERS, then DATA with END_STREAM.
          sock.write(Buffer.concat([frame(7, 0, 0, u32(first, 0)), frame(1, 4, first, Buffer.from([0x88])), frame(0, 1, first, Buffer.from("first"))]));
          setTimeout(() => sock.end(), 100);
        }
      }
    });
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`, port, paths, accepted: () => accepted, open: () => sockets.size,
    stop: () => { for (const s of sockets) s.destroy(); return new Promise<void>((r) => server.close(() => r())); },
  };
}
