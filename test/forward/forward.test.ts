/**
 * The forwarding loop's contract with a wire (forward/forward.ts), with a scripted wire and no
 * sockets: a wire reports each try by callback (TryReceiver), exactly once, possibly before
 * send() returns; a fault of ours goes to DownstreamWire.internalError or rejects forward()'s promise,
 * and either way the try's in-flight slot and the admission gate's slot are given back.
 * The engines' own tests (engine/, proxy/forwarding) cover the same loop over real sockets.
 */
import { describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/wait.ts";
import { createForwarder, type ForwardOptions, type ForwardRequest, type TryReceiver, type UpstreamResponse, type UpstreamWire, type DownstreamWire } from "../../src/forward/forward.ts";
import { Router, type Destination, type PoolTarget } from "../../src/forward/router.ts";
import { RouteTable } from "../../src/route/table.ts";
import { NO_GUARDS } from "../../src/guard/guard.ts";
import { RouteSchema } from "../../src/route/schema.ts";
import * as v from "valibot";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { TrafficStats } from "../../src/stats/traffic.ts";
import { cidrMatcher } from "../../src/net/cidr.ts";
import { FieldList } from "../../src/http/fields.ts";
import { Cancel } from "../../src/forward/cancel.ts";
import { NetworkError } from "../../src/net/network-error.ts";
import type { Backend } from "../../src/pool/backend.ts";
import type { ErrorAnswer } from "../../src/errors.ts";
import type { RetryBudgetConfig } from "../../src/forward/retry.ts";

type Out = { kind: "answered" | "answer" | "gone" | "internal"; status: number };
/** What the scripted wire does with try number n (0-based): report now, later, or twice. */
type Script = (n: number, backend: Backend, t: TryReceiver, cancel: Cancel) => void;

function setup(script: Script, opts: { internalError?: boolean; attempts?: number; concurrency?: number; respondThrows?: boolean; perTryTimeout?: number; timeout?: number; budget?: RetryBudgetConfig } = {}) {
  const pool = new LocalPool(createPolicy("round-robin"), [
    { name: "a", url: "http://127.0.0.1:1" },
    { name: "b", url: "http://127.0.0.1:2" },
  ]);
  const traffic = new TrafficStats();
  const passive = { connectFailed() {}, succeeded() {}, failed() {} };
  const errors: unknown[] = [];
  const answers: ErrorAnswer[] = [];
  let tries = 0;
  let responds = 0;
  const upstream: UpstreamWire<null> = {
    send(backend, _req, cancel, t) {
      script(tries++, backend, t, cancel);
    },
    wholeBody: () => null,
  };
  const wire: DownstreamWire<null, Out> = {
    respond(_req, res, end) {
      responds++;
      if (opts.respondThrows) throw new Error("a bug in respond");
      end.bodyEnded(0);
      return { kind: "answered", status: res.status };
    },
    answer: (_req, a: ErrorAnswer) => {
      answers.push(a);
      return { kind: "answer", status: a.status };
    },
    gone: () => ({ kind: "gone", status: 499 }),
  };
  if (opts.internalError) {
    wire.internalError = (_req, e) => {
      errors.push(e);
      return { kind: "internal", status: 500 };
    };
  }
  const retry = { attempts: opts.attempts ?? 2, perTryTimeout: opts.perTryTimeout ?? 1000, timeout: opts.timeout ?? 5000, onStatus: [503], nonIdempotent: false, onGrpcStatus: [],
    budget: opts.budget ?? { percent: 20, minRetriesPerSecond: 3 } };
  // One route to one pool, as the single-pool form expands to.
  const target: PoolTarget = { name: "default", pool, passive };
  const routeTraffic = new TrafficStats();
  const dest: Destination = { route: "default", target, retry, retryOn: new Set(retry.onStatus), retryOnGrpc: new Set<number>(), bufferBody: 65536, sendTimeout: 0, traffic: routeTraffic, guards: NO_GUARDS };
  const table = RouteTable.compile([v.parse(RouteSchema, { name: "default", pool: "default" })], () => target);
  const router = new Router(table, [{ name: "default", maxBodySize: 1 << 20, bufferBody: 65536, traffic: routeTraffic, destination: () => dest }], { maxBodySize: 1 << 20, bufferBody: 65536 });
  const fo: ForwardOptions = {
    router, traffic, trusted: cidrMatcher([]), preserveHost: true,
    upstreamConcurrency: opts.concurrency ?? 0,
  };
  const forwarder = createForwarder(fo, upstream, wire);
  const request = (): ForwardRequest<null> => {
    const headers = new FieldList(["Host", "example"]);
    const routed = forwarder.route({ method: "GET", target: "/", host: "example", headers, clientIp: "127.0.0.1" });
    return { method: "GET", target: "/", routed, headers, clientIp: "127.0.0.1", proto: "http", own: null, replayable: true, cancel: new Cancel() };
  };
  const inFlight = () => pool.backends.reduce((n, b) => n + b.inFlight, 0);
  return { forwarder, request, errors, answers, inFlight, pool, traffic, tries: () => tries, responds: () => responds };
}

/** `p`, or "stuck" if it has not settled within `ms` (the timer is cleared either way). */
function within<T>(p: Promise<T>, ms = 2000): Promise<T | "stuck"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<"stuck">((resolve) => (timer = setTimeout(() => resolve("stuck"), ms)));
  return Promise.race([p, stuck]).finally(() => clearTimeout(timer));
}

const head = (status: number): UpstreamResponse => ({ status, headers: new FieldList([]), discard() {} });

describe("forwarding loop: the wire's reports", () => {
  test("a head reported before send() returns is answered", async () => {
    const { forwarder, request, inFlight } = setup((_n, _b, t) => t.headReceived(head(200)));
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    expect(inFlight()).toBe(0);
  });

  test("failures reported at once are retried on the next backend, then answered 502", async () => {
    const seen: string[] = [];
    const { forwarder, request, inFlight, tries } = setup((_n, b, t) => {
      seen.push(b.name);
      t.tryFailed(new NetworkError("ECONNREFUSED", "refused"));
    });
    expect(await forwarder.forward(request())).toEqual({ kind: "answer", status: 502 });
    expect(tries()).toBe(2);
    expect(new Set(seen).size).toBe(2);
    expect(inFlight()).toBe(0);
  });

  test("a report after the first is ignored: one answer, one release", async () => {
    const { forwarder, request, inFlight, responds } = setup((_n, _b, t) => {
      queueMicrotask(() => {
        t.headReceived(head(200));
        t.headReceived(head(201));
        t.tryFailed(new NetworkError("ECONNRESET", "late"));
      });
    });
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    expect(responds()).toBe(1);
    expect(inFlight()).toBe(0);
  });

  test("a retried status: the first head is discarded and the next backend answers", async () => {
    const { forwarder, request, inFlight } = setup((n, _b, t) => setTimeout(() => t.headReceived(head(n === 0 ? 503 : 200)), 1));
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    expect(inFlight()).toBe(0);
  });
});

describe("forwarding loop: a fault of ours", () => {
  test("with internalError: the wire answers it, and the slots are given back", async () => {
    const { forwarder, request, errors, inFlight } = setup((_n, _b, t) => setTimeout(() => t.headReceived(head(200)), 1), {
      internalError: true, concurrency: 1,
    });
    // A response whose headers break the header rules stands for any bug past the head.
    const broken: UpstreamResponse = { status: 200, headers: null as unknown as FieldList, discard() {} };
    const { forwarder: f2, request: r2, errors: e2, inFlight: i2 } = setup((_n, _b, t) => setTimeout(() => t.headReceived(broken), 1), {
      internalError: true, concurrency: 1,
    });
    expect(await f2.forward(r2())).toEqual({ kind: "internal", status: 500 });
    expect(e2.length).toBe(1);
    expect(i2()).toBe(0);
    // The gate (one slot) was left: the next request through the same forwarder goes on.
    const second = await within(f2.forward(r2()));
    expect(second).toEqual({ kind: "internal", status: 500 });
    // The healthy forwarder beside it is unaffected.
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    expect(errors.length).toBe(0);
    expect(inFlight()).toBe(0);
  });

  test("without internalError: forward() rejects, and the slots are given back", async () => {
    const broken: UpstreamResponse = { status: 200, headers: null as unknown as FieldList, discard() {} };
    const { forwarder, request, inFlight } = setup((_n, _b, t) => t.headReceived(broken), { concurrency: 1 });
    await expect(forwarder.forward(request())).rejects.toBeInstanceOf(TypeError);
    expect(inFlight()).toBe(0);
    await expect(within(forwarder.forward(request()))).rejects.toBeInstanceOf(TypeError);
  });

  test("start(): no promise, the answer comes through the wire", () => {
    const { forwarder, request, inFlight, responds } = setup((_n, _b, t) => t.headReceived(head(204)));
    forwarder.start(request());
    expect(responds()).toBe(1);
    expect(inFlight()).toBe(0);
  });

  test("a respond that throws is a failed try, not a fault: retried, then 502", async () => {
    const { forwarder, request, inFlight, tries, errors } = setup((_n, _b, t) => t.headReceived(head(200)), { respondThrows: true, internalError: true });
    expect(await forwarder.forward(request())).toEqual({ kind: "answer", status: 502 });
    expect(tries()).toBe(2);
    expect(errors.length).toBe(0);
    expect(inFlight()).toBe(0);
  });

  test("timers: a retry's timer cut short by the overall deadline fires at the deadline, and every try's timer is disarmed", async () => {
    // A backend that never answers: each try ends only when its cancel fires.
    const hang: Script = (_n, _b, t, cancel) => cancel.on({ onCancel: () => t.tryFailed(new NetworkError("ECONNRESET", "reset")) });
    // perTryTimeout 300, timeout 450: the first try times out at 300 ms, the retry has 150 ms
    // left, so its timer is the deadline's (the forwarder's second list), not a per-try one.
    const { forwarder, request, inFlight, tries } = setup(hang, { internalError: true, perTryTimeout: 300, timeout: 450 });
    const started = performance.now();
    const many = Array.from({ length: 20 }, () => forwarder.forward(request()));
    const outs = await within(Promise.all(many), 3000);
    const took = performance.now() - started;
    expect(outs).toEqual(Array.from({ length: 20 }, () => ({ kind: "answer", status: 504 })));
    expect(tries()).toBe(40);
    expect(took).toBeGreaterThanOrEqual(440);
    expect(took).toBeLessThan(1500);
    expect(inFlight()).toBe(0);
  });
});

describe("forwarding loop: the retry budget (retry.budget)", () => {
  const NONE = { percent: 0, minRetriesPerSecond: 0 };

  test("refused, a retryable status goes to the client as the backend sent it, and the pool counts it", async () => {
    const { forwarder, request, pool, tries, traffic } = setup((_n, _b, t) => t.headReceived(head(503)), { budget: NONE });
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 503 });
    expect([tries(), pool.retryBudget.exhausted, traffic.retries]).toEqual([1, 1, 0]);
  });

  test("refused, a network failure is answered as the last failure (502), saying why, and counted", async () => {
    const { forwarder, request, pool, tries, inFlight, answers } = setup((_n, _b, t) => t.tryFailed(new NetworkError("ECONNRESET", "reset")), { budget: NONE });
    expect(await forwarder.forward(request())).toEqual({ kind: "answer", status: 502 });
    expect(JSON.parse(answers[0]!.body).message).toBe("every try to reach a backend failed: connection reset (ECONNRESET); not retried: the pool's retry budget is spent");
    expect([tries(), pool.retryBudget.exhausted, inFlight()]).toEqual([1, 1, 0]);
  });

  test("a failure that may not be retried anyway (out of tries) is no exhaustion", async () => {
    const { forwarder, request, pool, tries } = setup((_n, _b, t) => t.headReceived(head(503)), { attempts: 1, budget: NONE });
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 503 });
    expect([tries(), pool.retryBudget.exhausted]).toEqual([1, 0]);
  });

  test("each request earns its share; a retried status is paid for once, not once in answer() and again in tryOver()", async () => {
    // 50%: each request earns half a retry, so every second request may be retried.
    const { forwarder, request, pool, tries, traffic } = setup((n, _b, t) => t.headReceived(head(n % 3 === 0 ? 503 : 200)), {
      budget: { percent: 50, minRetriesPerSecond: 0 },
    });
    // Request 1: try 0 is 503, and half a retry is not a whole one: refused, 503 to the client.
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 503 });
    // Request 2: try 1 is 200.
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    // Request 3: try 2 is 200; request 4: try 3 is 503, retried with the credit of 4 requests
    // (2 retries), try 4 answers 200.
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    expect(await forwarder.forward(request())).toEqual({ kind: "answered", status: 200 });
    expect([tries(), traffic.retries, pool.retryBudget.exhausted]).toEqual([5, 1, 1]);
    expect(pool.retryBudget.window(performance.now())).toEqual({ requests: 4, retries: 1 });
  });

  test("concurrent failures: the window's credit is shared, the rest answer at once with their failure", async () => {
    // The floor alone: 0.3 a second over 10 s is 3 retries; ten requests all fail their first try.
    const held: TryReceiver[] = [];
    const { forwarder, request, pool, traffic } = setup(
      (n, _b, t) => (n < 10 ? queueMicrotask(() => t.headReceived(head(503))) : held.push(t)),
      { budget: { percent: 0, minRetriesPerSecond: 0.3 } },
    );
    const outs = Array.from({ length: 10 }, () => forwarder.forward(request()));
    await waitFor(() => held.length + pool.retryBudget.exhausted === 10, "every first try decided");
    expect([held.length, pool.retryBudget.exhausted, traffic.retries]).toEqual([3, 7, 3]);
    for (const t of held) t.headReceived(head(200));
    const statuses = (await Promise.all(outs)).map((o) => o.status).sort();
    expect(statuses).toEqual([200, 200, 200, 503, 503, 503, 503, 503, 503, 503]);
  });

  test("false: no budget; every retry goes, none is refused", async () => {
    const { forwarder, request, pool, tries } = setup((_n, _b, t) => t.headReceived(head(503)), { attempts: 3, budget: false });
    const outs = await Promise.all(Array.from({ length: 20 }, () => forwarder.forward(request())));
    expect(outs.every((o) => o.status === 503)).toBe(true);
    expect([tries(), pool.retryBudget.exhausted]).toEqual([60, 0]);
  });
});
