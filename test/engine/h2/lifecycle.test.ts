/**
 * HTTP/2 connections under the socket engine's time limits and lifecycle: timeouts.header and
 * timeouts.idle, graceful stop (GOAWAY, streams in flight finish) and forced stop, and a reload
 * whose new limits reach new sessions only.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { rigDefaults, startRig, type RigConfig, type TestRig } from "../../helpers/balancer.ts";
import { waitFor } from "../../helpers/wait.ts";
import { FRAME, FLAG, RawH2, settingsOf } from "../../helpers/h2raw.ts";
import { validateConfig } from "../../../src/config/load.ts";

const rigs: TestRig[] = [];
const raws: RawH2[] = [];
afterEach(async () => {
  for (const h of raws.splice(0)) h.close();
  for (const r of rigs.splice(0)) await r.stop();
});

async function rig(config: RigConfig = {}): Promise<TestRig> {
  const r = await startRig(1, (c) => ({ engine: "socket", ...(typeof config === "function" ? config(c) : config) }));
  rigs.push(r);
  return r;
}

async function raw(port: number): Promise<RawH2> {
  const h = await RawH2.connect(port);
  raws.push(h);
  return h;
}

const SETTINGS_MAX_CONCURRENT_STREAMS = 3;
const has = (h: RawH2, type: number, stream?: number, flags = 0) =>
  h.frames.some((f) => f.type === type && (stream === undefined || f.stream === stream) && (f.flags & flags) === flags);

describe("HTTP/2 connection lifecycle (socket engine)", () => {
  test("timeouts.header: a connection that sends the preface and no request is closed", async () => {
    const r = await rig({ timeouts: { header: 200 } });
    const h = await raw(r.balancer.port);
    await waitFor(() => h.closed, "the silent connection to be closed");
  });

  test("timeouts.idle: with no stream open the connection gets GOAWAY and closes", async () => {
    const r = await rig({ timeouts: { idle: 300 } });
    const h = await raw(r.balancer.port);
    h.get(1, "/");
    await waitFor(() => has(h, FRAME.DATA, 1, FLAG.END_STREAM) || has(h, FRAME.HEADERS, 1, FLAG.END_STREAM), "the answer");
    await waitFor(() => has(h, FRAME.GOAWAY), "GOAWAY after the idle time");
    await waitFor(() => h.closed, "the connection to close");
  });

  test("a request body that stalls for timeouts.idle is answered 408, never held open", async () => {
    const r = await rig({ timeouts: { idle: 300 }, retry: { bufferBody: 1024 } });
    const h = await raw(r.balancer.port);
    h.headers(1, [[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", "/echo"], ["content-length", "100"]], false);
    h.data(1, new Uint8Array(10), false);
    await waitFor(() => has(h, FRAME.DATA, 1, FLAG.END_STREAM), "an answer", 5000);
    expect(JSON.parse(h.body(1)).error).toBe("SY_CLIENT_TIMEOUT");
    // A stalled body with the try under way (past retry.bufferBody): the try is stopped, 408 too.
    h.headers(3, [[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", "/echo"]], false);
    h.data(3, new Uint8Array(8192), false);
    h.data(3, new Uint8Array(8192), false);
    await waitFor(() => has(h, FRAME.DATA, 3, FLAG.END_STREAM) || has(h, FRAME.RST_STREAM, 3), "an answer", 5000);
    expect(JSON.parse(h.body(3)).error).toBe("SY_CLIENT_TIMEOUT");
    await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 0, "nothing left in flight");
  });

  test("graceful stop: GOAWAY, and the stream in flight still gets its whole answer", async () => {
    const r = await rig({ timeouts: { shutdownGrace: 5000 } });
    const h = await raw(r.balancer.port);
    h.get(1, "/delay/400");
    await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 1, "the request to reach the backend");
    const stopped = r.balancer.stop(true);
    await waitFor(() => has(h, FRAME.GOAWAY), "GOAWAY");
    await waitFor(() => has(h, FRAME.DATA, 1, FLAG.END_STREAM), "the stream's whole answer");
    expect(h.frames.some((f) => f.type === FRAME.RST_STREAM)).toBe(false);
    await stopped;
    await waitFor(() => h.closed, "the connection to close");
  });

  test("forced stop: the connection is cut at once, the backend's slot released", async () => {
    const r = await rig();
    const h = await raw(r.balancer.port);
    h.get(1, "/delay/5000");
    await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 1, "the request to reach the backend");
    await r.balancer.stop(false);
    await waitFor(() => h.closed, "the connection to be cut");
    await waitFor(() => r.balancer.pool.backends[0]!.inFlight === 0, "the in-flight slot to be released");
  });

  test("a reload's new limits reach new sessions; an open session keeps its own", async () => {
    const base = { engine: "socket", http2: { maxConcurrentStreams: 7 } };
    const r = await startRig(1, base);
    rigs.push(r);
    const maxStreams = async (h: RawH2) => {
      await waitFor(() => has(h, FRAME.SETTINGS), "the server's SETTINGS");
      return settingsOf(h.frames.find((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0)!.payload).get(SETTINGS_MAX_CONCURRENT_STREAMS);
    };
    const before = await raw(r.balancer.port);
    expect(await maxStreams(before)).toBe(7);
    const next = validateConfig({
      ...rigDefaults(), ...base, backends: r.cluster.backends.map((b) => ({ name: b.name, url: b.url })),
      http2: { maxConcurrentStreams: 3 },
    });
    await r.balancer.apply(next);
    const after = await raw(r.balancer.port);
    expect(await maxStreams(after)).toBe(3);
    // The open one is still served.
    before.get(1, "/");
    expect(await before.outcome(1)).toEqual({ headers: true });
  });
});
