/**
 * Hostile HTTP/2 input (ISSUE 24 §4), each case against a real proxy (socket engine, sim
 * backends) with the raw frame client: the attacker is cut off or bounded within a bounded time,
 * the process's memory stays bounded while the attack offers far more than the bound, and a
 * normal client on another connection keeps getting its answers meanwhile.
 */
import { afterEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { startRig, type RigConfig, type TestRig } from "../../helpers/balancer.ts";
import { waitFor } from "../../helpers/wait.ts";
import { FLAG, FRAME, RawH2, fieldBlock, frame, indexedField, indexedLiteral } from "../../helpers/h2raw.ts";

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_REFUSED_STREAM } = http2.constants;
const MiB = 2 ** 20;
/** Growth the process may show during an attack: generous, and far below what each attack offers. */
const BOUND = 64 * MiB;

const rigs: TestRig[] = [];
const raws: RawH2[] = [];
const bigs: { stop(): void }[] = [];
afterEach(async () => {
  for (const h of raws.splice(0)) h.terminate();
  for (const r of rigs.splice(0)) await r.stop();
  for (const b of bigs.splice(0)) b.stop();
});

async function rig(config: RigConfig = {}, count = 1): Promise<TestRig> {
  const r = await startRig(count, (c) => ({ engine: "socket", ...(typeof config === "function" ? config(c) : config) }));
  rigs.push(r);
  return r;
}

async function raw(port: number): Promise<RawH2> {
  const h = await RawH2.connect(port);
  raws.push(h);
  return h;
}

function memory(): number {
  Bun.gc(true);
  return process.memoryUsage().rss;
}

/** A normal HTTP/1.1 client asking `GET /` one request after another until stop(). */
function normalClient(url: string): { stop(): Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  const out = { ok: 0, failed: [] as string[] };
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        if (res.status === 200) out.ok++;
        else out.failed.push(`status ${res.status}`);
      } catch (e) {
        out.failed.push(String(e));
      }
    }
  })();
  return {
    async stop() {
      // At least a few answers came during the attack before it is judged.
      await waitFor(() => out.ok >= 3 || out.failed.length > 0, "a normal client's answers", 15_000);
      running = false;
      await loop;
      return out;
    },
  };
}

/** Requests the rig's one backend saw that the normal client did not make. */
const attackRequests = (r: TestRig, n: { ok: number; failed: string[] }) => r.cluster.backends[0]!.requests - n.ok - n.failed.length;

/** A backend whose `/big` is a 256 MiB body made as it is read: how much was read, and whether it was given up. */
function bigBackend(): { port: number; pulled: number; cancelled: boolean; stop(): void } {
  const piece = new Uint8Array(64 * 1024).fill(97);
  const state = { port: 0, pulled: 0, cancelled: false, stop: () => server.stop(true) };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      if (new URL(req.url).pathname !== "/big") return new Response("ok");
      return new Response(new ReadableStream({
        pull(c) {
          if (state.pulled >= BIG) return c.close();
          state.pulled += piece.length;
          c.enqueue(piece);
        },
        cancel() {
          state.cancelled = true;
        },
      }), { headers: { "content-length": String(BIG) } });
    },
  });
  state.port = server.port!;
  return state;
}
const BIG = 256 * MiB;

/** A rig in front of a bigBackend (timeouts.idle 500 ms), a normal client, the memory before, and an attacker's connection. */
async function bigRig() {
  const big = bigBackend();
  bigs.push(big);
  const r = await rig({ backends: [{ name: "big", url: `http://127.0.0.1:${big.port}` }], timeouts: { idle: 500 } }, 0);
  const normal = normalClient(r.balancer.url);
  return { big, r, normal, m0: memory(), h: await raw(r.balancer.port) };
}

const get = (path = "/") => fieldBlock(RawH2.getFields(path));

describe("hostile HTTP/2 input is bounded (socket engine)", () => {
  test("rapid reset (CVE-2023-44487): past maxResetsPerSecond the session ends with GOAWAY ENHANCE_YOUR_CALM", async () => {
    const r = await rig({ http2: { maxResetsPerSecond: 50 } });
    const normal = normalClient(r.balancer.url);
    const m0 = memory();
    const h = await raw(r.balancer.port);
    // Streams opened and reset at once, paced so that each one reaches the proxy's loop
    // (a pair a write), up to 100000 of them for 10 s.
    let id = 1;
    const t0 = performance.now();
    const sent = await h.flood(() => {
      const pair = Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, get()), frame(FRAME.RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8]))]);
      id += 2;
      return pair;
    }, 100_000 * 60, 10_000);
    await waitFor(() => h.closed, "the attacker to be cut off", 10_000);
    const streams = (id - 1) / 2;
    const n = await normal.stop();
    const backend = attackRequests(r, n);
    console.log(`rapid reset: ${streams} streams opened and reset (${sent} bytes) before the cut after ${Math.round(performance.now() - t0)} ms; the backend saw ${backend} of them; GOAWAY ${h.goAwayCode()}`);
    expect(h.goAwayCode()).toBe(NGHTTP2_ENHANCE_YOUR_CALM);
    expect(streams).toBeLessThan(100_000);
    // The burst (50) and the refill over the attack's short life, whatever the client offered.
    expect(backend).toBeLessThanOrEqual(200);
    expect(n.failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);

  test("rapid reset, each stream reset only once its try reached the backend: cut after the budget all the same", async () => {
    const r = await rig({ http2: { maxResetsPerSecond: 20 } });
    const h = await raw(r.balancer.port);
    const backend = r.balancer.pool.backends[0]!;
    let id = 1;
    const t0 = performance.now();
    for (; id < 2000 && !h.closed; id += 2) {
      h.get(id, "/delay/5000");
      await waitFor(() => backend.inFlight > 0 || h.closed, "the try to be under way");
      h.rst(id);
      await waitFor(() => backend.inFlight === 0 || h.closed, "the try given up");
    }
    await waitFor(() => h.closed, "the attacker to be cut off");
    const seconds = (performance.now() - t0) / 1000;
    console.log(`rapid reset, paced: cut after ${(id - 1) / 2} streams in ${seconds.toFixed(2)} s, each a try to the backend; GOAWAY ${h.goAwayCode()}`);
    expect(h.goAwayCode()).toBe(NGHTTP2_ENHANCE_YOUR_CALM);
    // The burst (20), what refilled while the streams went one at a time (20 a second), and the
    // stream in flight when the budget ran out.
    expect((id - 1) / 2).toBeLessThanOrEqual(20 + Math.ceil(20 * seconds) + 2);
  }, 40_000);

  test("CONTINUATION flood (CVE-2024-27316): a header block past maxHeaderListSize is cut, never buffered", async () => {
    const r = await rig({ http2: { maxHeaderListSize: 16 * 1024 } });
    const normal = normalClient(r.balancer.url);
    const m0 = memory();
    const h = await raw(r.balancer.port);
    h.send(FRAME.HEADERS, 0, 1, get());
    const piece = frame(FRAME.CONTINUATION, 0, 1, fieldBlock([["x-a", "b".repeat(16_000)]]));
    // 256 MiB offered in CONTINUATION frames that never end the block.
    const sent = await h.flood(() => piece, 256 * MiB, 20_000);
    await waitFor(() => h.closed, "the attacker to be cut off", 10_000);
    console.log(`CONTINUATION flood: ${(sent / MiB).toFixed(1)} MiB sent before the cut; GOAWAY ${h.goAwayCode()}`);
    expect(sent).toBeLessThan(BOUND);
    const n = await normal.stop();
    expect(attackRequests(r, n)).toBe(0);
    expect(n.failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);

  test("HPACK bomb: a small block that decodes to a huge field list is refused, memory bounded", async () => {
    const r = await rig();
    const normal = normalClient(r.balancer.url);
    const m0 = memory();
    const h = await raw(r.balancer.port);
    // A 4000-byte value entered in the dynamic table, then referenced 4000 times: ~8 KB encoded,
    // 16 MB decoded, a stream; 200 streams offer 3.2 GB of fields.
    const block = Buffer.concat([get(), indexedLiteral("x-bomb", "a".repeat(4000)), Buffer.concat(Array.from({ length: 4000 }, () => indexedField(62)))]);
    let id = 1;
    await h.flood(() => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, (id += 2) - 2, block), 200 * block.length, 20_000);
    // Each stream is refused (ENHANCE_YOUR_CALM), and past the session's bound it is ended.
    await waitFor(() => h.closed || h.frames.filter((f) => f.type === FRAME.RST_STREAM).length >= (id - 1) / 2, "every stream refused or the session ended", 10_000);
    const resets = h.frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => f.payload.readUInt32BE(0));
    console.log(`HPACK bomb: ${(id - 1) / 2} streams sent; ${resets.length} reset, closed ${h.closed}`);
    expect(resets.every((c) => c === NGHTTP2_ENHANCE_YOUR_CALM)).toBe(true);
    expect(resets.length > 0 || h.closed).toBe(true);
    const n = await normal.stop();
    expect(attackRequests(r, n)).toBe(0);
    expect(n.failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);

  for (const kind of ["SETTINGS", "PING"] as const) {
    test(`${kind} flood from a client that never reads: the session is ended, the proxy's output bounded`, async () => {
      const r = await rig();
      const normal = normalClient(r.balancer.url);
      const m0 = memory();
      const h = await raw(r.balancer.port);
      await waitFor(() => h.frames.some((f) => f.type === FRAME.SETTINGS), "the server's SETTINGS");
      h.stopReading();
      // Each frame asks for an ACK the attacker never reads; 4096 frames a piece, 512 MiB offered.
      const one = kind === "PING" ? frame(FRAME.PING, 0, 0, Buffer.alloc(8)) : frame(FRAME.SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0, 0xff, 0xff]));
      const piece = Buffer.concat(Array.from({ length: 4096 }, () => one));
      const sent = await h.flood(() => piece, 512 * MiB, 15_000);
      // Cut off though it never reads (nothing sent to it could go anyway).
      await waitFor(() => h.closed, "the attacker to be cut off", 10_000);
      const grown = memory() - m0;
      console.log(`${kind} flood: ${(sent / MiB).toFixed(1)} MiB taken before the proxy stopped reading or closed; memory grew ${(grown / MiB).toFixed(1)} MiB`);
      expect(sent).toBeLessThan(BOUND);
      expect(grown).toBeLessThan(BOUND);
      expect((await normal.stop()).failed).toEqual([]);
    }, 60_000);
  }

  test("more streams than maxConcurrentStreams, sustained: refused, then the session ends after maxSessionRejectedStreams", async () => {
    const r = await rig({ http2: { maxConcurrentStreams: 2, maxSessionRejectedStreams: 50 } });
    const normal = normalClient(r.balancer.url);
    const m0 = memory();
    const h = await raw(r.balancer.port);
    let id = 1;
    // Each stream held open by the backend (a slow answer), 100000 offered.
    await h.flood(() => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, (id += 2) - 2, get("/delay/5000")), 100_000 * 40, 10_000);
    await waitFor(() => h.closed, "the attacker to be cut off", 10_000);
    const refused = h.frames.filter((f) => f.type === FRAME.RST_STREAM && f.payload.readUInt32BE(0) === NGHTTP2_REFUSED_STREAM).length;
    const n = await normal.stop();
    console.log(`over maxConcurrentStreams: ${(id - 1) / 2} streams sent, ${refused} refused; the backend saw ${attackRequests(r, n)} of them`);
    expect(refused).toBeLessThanOrEqual(51);
    expect(attackRequests(r, n)).toBeLessThanOrEqual(2);
    expect(n.failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);

  test("a zero flow-control window held open: the backend is read a bounded amount, the stream reset after timeouts.idle", async () => {
    const { big, r, normal, m0, h } = await bigRig();
    // SETTINGS_INITIAL_WINDOW_SIZE 0 (RFC 9113 §6.5.2): the proxy may send no DATA at all.
    h.settings([[4, 0]]);
    h.get(1, "/big");
    await waitFor(() => h.frames.some((f) => f.type === FRAME.RST_STREAM && f.stream === 1) || h.closed, "the stream reset after timeouts.idle", 10_000);
    console.log(`zero window: the backend was read ${(big.pulled / MiB).toFixed(1)} MiB of ${BIG / MiB} MiB`);
    expect(big.pulled).toBeLessThan(BOUND);
    await waitFor(() => big.cancelled && r.balancer.pool.backends[0]!.inFlight === 0, "the try given up");
    expect((await normal.stop()).failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);

  test("a client that opens its windows wide and never reads its socket: the connection is cut after timeouts.idle", async () => {
    const { big, r, normal, m0, h } = await bigRig();
    // The largest windows there are (RFC 9113 §6.9.1): flow control holds nothing back, only
    // the socket does.
    h.settings([[4, 2 ** 31 - 1]]);
    h.windowUpdate(0, 2 ** 31 - 1 - 65_535);
    h.get(1, "/big");
    await waitFor(() => big.pulled > 0, "the answer to start");
    h.stopReading();
    // Writes stuck behind a client that does not read (ClientConnection's write deadline).
    await waitFor(() => h.closed, "the connection to be cut", 10_000);
    console.log(`not reading: the backend was read ${(big.pulled / MiB).toFixed(1)} MiB of ${BIG / MiB} MiB`);
    expect(big.pulled).toBeLessThan(BOUND);
    await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 0, "the try given up");
    expect((await normal.stop()).failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);

  test("streams that never end, 10 on each of 20 connections: each answered 408 after timeouts.idle", async () => {
    const r = await rig({ timeouts: { idle: 500 } });
    const normal = normalClient(r.balancer.url);
    const m0 = memory();
    const conns = await Promise.all(Array.from({ length: 20 }, () => raw(r.balancer.port)));
    for (const h of conns) {
      for (let id = 1; id <= 19; id += 2) {
        h.headers(id, [[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", "/echo"]], false);
        // One more stream, a GET answered at once, must not clear the stalled ones' deadline.
        if (id === 9) h.get(101, "/");
      }
    }
    const answered = (h: RawH2, id: number) => h.frames.some((f) => f.stream === id && (f.type === FRAME.RST_STREAM || (f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0)));
    await waitFor(() => conns.every((h) => [1, 3, 5, 7, 9, 11, 13, 15, 17, 19].every((id) => answered(h, id))), "every stalled stream answered", 15_000);
    for (const h of conns) for (const id of [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]) expect(JSON.parse(h.body(id)).error).toBe("SY_CLIENT_TIMEOUT");
    expect((await normal.stop()).failed).toEqual([]);
    expect(memory() - m0).toBeLessThan(BOUND);
  }, 40_000);
});
