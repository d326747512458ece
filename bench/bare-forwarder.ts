/**
 * The least a Bun.listen / Bun.connect forwarder can do: the reference `bench/cpu.ts` sets the
 * socket engine beside. It forwards plain GETs whose responses carry a Content-Length over
 * pooled keep-alive connections (fewest in flight first), with the Host and X-Forwarded-For
 * rewrite and nothing else: no parser beyond finding the blank line, no header rules, no
 * timeouts, retries, health, stats or logging, no backpressure. Not a product and not safe
 * in front of anything: a measuring stick for what the runtime and the kernel cost per request.
 *
 *   bun bench/bare-forwarder.ts PORT http://host:port [...]
 *
 * It listens with reusePort, so that several copies can share PORT, one per core.
 */
import type { Socket } from "bun";

const port = Number(Bun.argv[2]);
const backends = Bun.argv.slice(3).map((u) => {
  const url = new URL(u);
  return { host: url.hostname, port: Number(url.port), idle: [] as Socket<Up>[], inFlight: 0 };
});
type Backend = (typeof backends)[number];
interface Up { client: Socket<unknown> | undefined; backend: Backend; need: number; got: number }

const latin1 = new TextDecoder("latin1");
const CONTENT_LENGTH = /content-length:\s*(\d+)/i;

function pick(): Backend {
  let best = backends[0]!;
  for (const b of backends) if (b.inFlight < best.inFlight) best = b;
  return best;
}

const upstream = {
  data(s: Socket<Up>, data: Uint8Array) {
    const u = s.data;
    if (u.need === -1) {
      const text = latin1.decode(data);
      const end = text.indexOf("\r\n\r\n");
      u.need = end + 4 + Number(CONTENT_LENGTH.exec(text.slice(0, end))?.[1] ?? 0);
    }
    u.got += data.length;
    u.client?.write(data);
    if (u.got >= u.need) {
      u.backend.inFlight--;
      u.need = -1;
      u.got = 0;
      u.client = undefined;
      u.backend.idle.push(s);
    }
  },
  // A pooled connection the backend closed (its idle timeout) leaves the pool; one closed under
  // a request ends that client, which would otherwise wait for ever.
  close(s: Socket<Up>) {
    const u = s.data;
    const i = u.backend.idle.indexOf(s);
    if (i !== -1) u.backend.idle.splice(i, 1);
    if (u.client !== undefined) {
      u.backend.inFlight--;
      u.client.end();
      u.client = undefined;
    }
  },
  error() {},
};

function send(client: Socket<unknown>, head: string): void {
  const b = pick();
  b.inFlight++;
  const idle = b.idle.pop();
  if (idle !== undefined) {
    idle.data.client = client;
    idle.write(head);
    return;
  }
  Bun.connect<Up>({
    hostname: b.host, port: b.port, data: { client, backend: b, need: -1, got: 0 },
    socket: { ...upstream, open: (s) => void s.write(head) },
  }).catch(() => {
    // No backend to answer: give the slot back and close the client rather than hang it.
    b.inFlight--;
    client.end();
  });
}

Bun.listen({
  // Two copies may share the port (bench/cpu.ts runs it so: one per core).
  hostname: "127.0.0.1", port, reusePort: true,
  socket: {
    data(s, data) {
      const text = latin1.decode(data);
      const end = text.indexOf("\r\n\r\n");
      const line = text.indexOf("\r\n");
      let head = `${text.slice(0, line)}\r\nhost: backend\r\nx-forwarded-for: ${s.remoteAddress}\r\n`;
      for (const field of text.slice(line + 2, end).split("\r\n")) if (!/^host:/i.test(field)) head += `${field}\r\n`;
      send(s, `${head}\r\n`);
    },
    close() {},
    error() {},
  },
});
