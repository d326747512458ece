/**
 * The socket engine's JavaScript cost per request with the kernel taken out, as an A/B of two
 * source trees in one process. On this machine a change worth 0.3 µs of a request's ~24 µs of
 * CPU is lost in the noise of any run over real sockets (±1 µs between rounds of bench/cpu.ts),
 * so changes to the hot path are measured here first:
 *
 * - Bun.listen and Bun.connect are replaced by fakes before the engines load: a client socket
 *   is a handler call with the bytes a socket would deliver (a fresh Buffer per read, as Bun
 *   gives), and an upstream socket records what was written and is answered with a fixed
 *   response, three fields and a 10-byte body (what the sim sends).
 * - Each tree's balancer (src/balancer.ts, socket engine, no admin, no access log, no checks)
 *   serves 64 clients over three backends; everything above the socket is the real code.
 * - Rounds alternate between the trees, first one then the other, and the report gives each
 *   tree's median CPU time per request (process.cpuUsage, so JIT and GC threads count too) and
 *   the per-round difference. A tree loaded first or second is not quite the same (JIT state,
 *   heap age): run it both ways round and take both into account.
 *
 *   bun bench/engine-js.ts TREE_A TREE_B [--requests 20000] [--rounds 60]
 *
 * e.g. `git worktree add /tmp/base HEAD~1 && (cd /tmp/base && bun install)`, then
 * `bun bench/engine-js.ts /tmp/base .` and `bun bench/engine-js.ts . /tmp/base`.
 * No ports are opened: nothing here reaches the network.
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { median } from "./harness.ts";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  allowPositionals: true,
  options: {
    requests: { type: "string", default: "20000" },
    rounds: { type: "string", default: "60" },
  },
});
if (positionals.length !== 2) {
  console.error("usage: bun bench/engine-js.ts TREE_A TREE_B [--requests 20000] [--rounds 60]");
  process.exit(2);
}
const [treeA, treeB] = positionals.map((p) => resolve(p)) as [string, string];
const N = Number(values.requests);
const ROUNDS = Number(values.rounds);
const CLIENTS = 64;

const REQUEST = Buffer.from("GET / HTTP/1.1\r\nHost: 127.0.0.1:19100\r\n\r\n");
const RESPONSE = Buffer.from(
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Sat, 21 Nov 2026 18:02:47 GMT\r\nContent-Length: 10\r\n\r\nbackend-1\n",
);

/** The parts of Bun's Socket the engine touches. */
interface FakeSocket {
  data: unknown;
  remoteAddress: string;
  write(b: Uint8Array): number;
}
type Handlers = { open?(s: FakeSocket): void; data(s: FakeSocket, chunk: Buffer): void };

function fakeSocket(data: unknown, onWrite: () => void): FakeSocket {
  const nothing = () => {};
  return Object.assign(
    { data, remoteAddress: "127.0.0.1", write: (b: Uint8Array) => (onWrite(), b.length) },
    { setNoDelay: nothing, pause: nothing, resume: nothing, end: nothing, terminate: nothing, shutdown: nothing, flush: nothing, timeout: nothing, ref: nothing, unref: nothing },
  );
}

/** One tree's engine and its fake sockets. */
class Side {
  clientHandlers: Handlers | undefined;
  upstreamHandlers: Handlers | undefined;
  /** Upstream sockets written to since they were last answered. */
  written: FakeSocket[] = [];
  answered = 0;
  private readonly clients: FakeSocket[] = [];

  constructor(readonly tree: string) {}

  async start(port: number): Promise<void> {
    listening = this;
    const { startBalancer } = await import(`${this.tree}/src/balancer.ts`);
    const { validateConfig } = await import(`${this.tree}/src/config/load.ts`);
    const config = validateConfig({
      listen: { host: "127.0.0.1", port }, admin: false, engine: "socket", log: { access: false }, healthCheck: false,
      backends: [1, 2, 3].map((i) => ({ url: `http://127.0.0.1:1900${i}` })),
    });
    const quiet = () => {};
    await startBalancer(config, { logger: { info: quiet, warn: quiet, error: (m: string) => console.error(m) } });
    for (let i = 0; i < CLIENTS; i++) {
      const s = fakeSocket(undefined, () => this.answered++);
      this.clientHandlers!.open!(s);
      this.clients.push(s);
    }
  }

  /** `n` requests, each read by a client and answered by its backend. */
  async run(n: number): Promise<void> {
    dialling = this;
    let sent = 0;
    while (sent < n) {
      for (let i = 0; i < CLIENTS && sent < n; i++, sent++) this.clientHandlers!.data(this.clients[i]!, Buffer.from(REQUEST));
      // New upstream connections (the first rounds) open in a later turn.
      if (this.written.length < CLIENTS) await new Promise((r) => setTimeout(r, 0));
      const written = this.written;
      this.written = [];
      for (const u of written) this.upstreamHandlers!.data(u, Buffer.from(RESPONSE));
    }
  }
}

let listening: Side | undefined;
let dialling: Side | undefined;
const fakes = Bun as unknown as { listen: unknown; connect: unknown };
fakes.listen = (o: { port: number; socket: Handlers }) => {
  listening!.clientHandlers = o.socket;
  const nothing = () => {};
  return { port: o.port, stop: nothing, ref: nothing, unref: nothing, reload: nothing };
};
fakes.connect = (o: { data: unknown; socket: Handlers }) => {
  const side = dialling!;
  side.upstreamHandlers = o.socket;
  const s = fakeSocket(o.data, () => side.written.push(s));
  return Promise.resolve(s);
};

const a = new Side(treeA);
const b = new Side(treeB);
await a.start(1);
await b.start(2);
// Warm-up: every upstream connection opened, the hot path compiled.
for (const side of [a, b, a, b]) await side.run(CLIENTS * 100);

const cpu = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
const times = new Map<Side, number[]>([[a, []], [b, []]]);
for (let r = 0; r < ROUNDS; r++) {
  for (const side of r % 2 === 0 ? [a, b] : [b, a]) {
    const before = side.answered;
    const t = cpu();
    await side.run(N);
    times.get(side)!.push((cpu() - t) / N);
    if (side.answered - before !== N) throw new Error(`${side.tree}: ${side.answered - before} answers to ${N} requests`);
  }
}
const ta = times.get(a)!;
const tb = times.get(b)!;
const diffs = ta.map((v, i) => tb[i]! - v);
console.log(`A ${treeA}: ${median(ta).toFixed(3)} µs per request (median of ${ROUNDS} rounds of ${N})`);
console.log(`B ${treeB}: ${median(tb).toFixed(3)} µs per request`);
console.log(`B - A per round: median ${median(diffs).toFixed(3)} µs; B lower in ${diffs.filter((d) => d < 0).length} of ${ROUNDS} rounds`);
process.exit(0);
