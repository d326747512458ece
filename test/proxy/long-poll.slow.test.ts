/**
 * Long-poll requests alongside ordinary traffic (the long-wait lane, forward/gate.ts): 100 requests whose
 * backend holds them for 20 s must not take the upstream slots ordinary requests need. The
 * ordinary traffic's throughput while they hold is compared with its own throughput without
 * them, measured in the same run (before and after the hold, so that drift of a shared machine
 * falls on both sides).
 *
 * What starvation looks like, measured before the long-wait lane (fetch engine): ordinary
 * traffic fell to 0.0% of its baseline, each ordinary request waiting until the first long-polls
 * ended at 20 s. So the test holds every ordinary request to an answer within
 * MAX_ORDINARY_WAIT_MS (the lane lets a holder go after limits.longWaitAfter, 500 ms; the rest
 * is room for a busy machine), no 503, and at least half of the baseline throughput. A tighter
 * throughput bar is not a property of the proxy on this machine: with the lane, the ratio
 * measured 80–146% across runs on the shared 2-core machine, the baseline itself drifting by
 * up to 25% between before and after.
 *
 * Slow by nature (the 20 s hold is the case under test), hence a *.slow.test.ts file. It names its
 * engines itself: both, or only SWITCHYARD_TEST_ENGINE's when that is set (CI's second pass).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { rawClient, rawRequest, type RawClient } from "../helpers/raw.ts";
import { waitFor } from "../helpers/wait.ts";

const HOLD_MS = 20_000;
const LONG_POLLS = 100;
/** Keep-alive connections of ordinary traffic. */
const CLIENTS = 16;
/** Ordinary traffic alone, before and after the hold. */
const BASELINE_MS = 4_000;
/** Ordinary traffic first, not counted: the first second of a fresh process runs cold code. */
const WARM_UP_MS = 1_500;
/** The longest an ordinary request may take to be answered while the long-polls hold. */
const MAX_ORDINARY_WAIT_MS = 1_500;
const ENGINES = process.env.SWITCHYARD_TEST_ENGINE ? [process.env.SWITCHYARD_TEST_ENGINE] : ["fetch", "socket"];

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** One keep-alive HTTP/1.1 connection sending GETs back to back, counting statuses. */
class KeepAliveClient {
  private socket!: RawClient;
  private buf: Buffer = Buffer.alloc(0);
  private stopped = false;
  private onIdle: (() => void) | undefined;
  private sentAt = 0;
  /** The longest a request of this client waited for its answer. */
  slowest = 0;
  statuses = new Map<number, number>();
  failure: Error | undefined;

  /** Connected (the raw client), and its first GET sent. */
  static async open(port: number, path: string): Promise<KeepAliveClient> {
    const c = new KeepAliveClient(path);
    c.socket = await rawClient(port, {
      keep: false,
      onData: (chunk) => c.read(Buffer.from(chunk)),
      onError: (e) => c.fail(e),
      onClose: () => {
        if (!c.stopped) c.fail(new Error("the proxy closed a keep-alive connection"));
      },
    });
    c.send();
    return c;
  }

  private constructor(private readonly path: string) {}

  private send(): void {
    if (this.stopped) return this.onIdle?.();
    this.sentAt = performance.now();
    this.socket.send(`GET ${this.path} HTTP/1.1\r\nHost: ordinary.test\r\n\r\n`);
  }

  private read(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = this.buf.subarray(0, end).toString("latin1");
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (length === null) return this.fail(new Error(`a response without Content-Length: ${head}`));
      const total = end + 4 + Number(length[1]);
      if (this.buf.length < total) return;
      const status = Number(head.slice(9, 12));
      this.slowest = Math.max(this.slowest, performance.now() - this.sentAt);
      this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
      this.buf = this.buf.subarray(total);
      this.send();
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.stopped = true;
    this.onIdle?.();
  }

  /** Counts so far, summed over statuses. */
  get answered(): number {
    let n = 0;
    for (const v of this.statuses.values()) n += v;
    return n;
  }

  /** Stop after the response in flight; resolves once it is in. */
  stop(): Promise<void> {
    this.stopped = true;
    return new Promise((resolve) => {
      this.onIdle = () => {
        this.socket.terminate();
        resolve();
      };
      if (this.failure !== undefined) this.onIdle();
    });
  }
}

/** CLIENTS keep-alive connections for `ms`: responses per second and statuses. */
async function ordinaryTraffic(port: number, ms: number): Promise<{ rate: number; statuses: Map<number, number>; slowest: number }> {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => KeepAliveClient.open(port, "/")));
  const started = performance.now();
  await Bun.sleep(ms);
  await Promise.all(clients.map((c) => c.stop()));
  const elapsed = performance.now() - started;
  const statuses = new Map<number, number>();
  for (const c of clients) {
    if (c.failure !== undefined) throw c.failure;
    for (const [s, n] of c.statuses) statuses.set(s, (statuses.get(s) ?? 0) + n);
  }
  const total = clients.reduce((n, c) => n + c.answered, 0);
  return { rate: (total * 1000) / elapsed, statuses, slowest: Math.max(...clients.map((c) => c.slowest)) };
}

/** A long-poll over its own connection: resolves with the status once the backend answers. */
async function longPoll(port: number): Promise<number> {
  return (await rawRequest(port, `GET /delay/${HOLD_MS} HTTP/1.1\r\nHost: poll.test`, { timeoutMs: HOLD_MS + 20_000 })).status;
}

describe.each(ENGINES)("%s engine", (engine) => {
  test(`${LONG_POLLS} requests held ${HOLD_MS / 1000} s: every ordinary request answered within ${MAX_ORDINARY_WAIT_MS / 1000} s, no 503, throughput kept`, async () => {
    rig = await startRig(2, {
      engine,
      // A long-poll deployment: a response head may take longer than the hold.
      retry: { perTryTimeout: "30s", timeout: "30s" },
      log: { access: false },
    });
    const port = rig.balancer.port;

    await ordinaryTraffic(port, WARM_UP_MS);
    const before = await ordinaryTraffic(port, BASELINE_MS);
    const polls = Array.from({ length: LONG_POLLS }, () => longPoll(port));
    const sent = performance.now();
    // Ordinary traffic from the moment the long-polls are sent until just before the first of
    // them can be answered: the time they take to settle counts against it.
    const during = await ordinaryTraffic(port, HOLD_MS - 2_000);
    const heldAtBackends = rig.cluster.backends.reduce((n, b) => n + b.active, 0);
    const statuses = await Promise.all(polls);
    const held = performance.now() - sent;
    const after = await ordinaryTraffic(port, BASELINE_MS);

    const baseline = (before.rate + after.rate) / 2;
    const ratio = during.rate / baseline;
    console.log(
      `long-poll (${engine}): ordinary ${before.rate.toFixed(0)} req/s before, ${during.rate.toFixed(0)} during (${(ratio * 100).toFixed(1)}% of the baseline), ` +
        `${after.rate.toFixed(0)} after; slowest ordinary answer during ${during.slowest.toFixed(0)} ms; during: ${JSON.stringify([...during.statuses])}; ${heldAtBackends} long-polls at the backends; held ${(held / 1000).toFixed(1)} s`,
    );
    expect(statuses).toEqual(Array(LONG_POLLS).fill(200));
    expect(heldAtBackends).toBe(LONG_POLLS);
    expect([...during.statuses]).toEqual([[200, during.statuses.get(200) ?? 0]]);
    expect(during.slowest).toBeLessThan(MAX_ORDINARY_WAIT_MS);
    expect(ratio).toBeGreaterThanOrEqual(0.5);
    await waitFor(() => rig!.balancer.pool.backends.every((b) => b.inFlight === 0), "no request left in flight");
  }, 60_000);
});
