import { afterEach, describe, expect, test } from "bun:test";
import { AdmissionGate, Lane, newSlot } from "../../src/forward/gate.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

describe("AdmissionGate", () => {
  test("admits up to the limit at once, then in arrival order", async () => {
    const gate = new AdmissionGate(2);
    const [a, b, c, d] = [newSlot(), newSlot(), newSlot(), newSlot()];
    expect(gate.enter(1000, a)).toBe(true);
    expect(gate.enter(1000, b)).toBe(true);
    const order: number[] = [];
    const third = (gate.enter(1000, c) as Promise<boolean>).then((ok) => order.push(3) && ok);
    const fourth = (gate.enter(1000, d) as Promise<boolean>).then((ok) => order.push(4) && ok);
    expect(gate.waiting).toBe(2);
    gate.leave(a);
    gate.leave(b);
    expect(await third).toBe(true);
    expect(await fourth).toBe(true);
    expect(order).toEqual([3, 4]);
    expect(gate.inFlight).toBe(2);
    gate.leave(c);
    gate.leave(d);
    expect(gate.inFlight).toBe(0);
    expect(() => gate.leave(a)).toThrow();
  });

  test("a waiter whose client left is withdrawn at once: it holds no place, and the next slot goes to the one behind it", async () => {
    const gate = new AdmissionGate(1);
    const [a, b, c] = [newSlot(), newSlot(), newSlot()];
    expect(gate.enter(1000, a)).toBe(true);
    const second = gate.enter(60_000, b) as Promise<boolean>;
    const third = gate.enter(60_000, c) as Promise<boolean>;
    expect(gate.waiting).toBe(2);
    gate.withdraw(b);
    expect(await second).toBe(false);
    expect(gate.waiting).toBe(1);
    gate.withdraw(b); // once only
    gate.leave(a);
    expect(await third).toBe(true);
    expect(gate.inFlight).toBe(1);
    gate.leave(c);
    expect(gate.inFlight).toBe(0);
  });

  test("a waiter gives up after its own wait, and holds no slot", async () => {
    const gate = new AdmissionGate(1);
    const a = newSlot();
    expect(gate.enter(1000, a)).toBe(true);
    expect(await gate.enter(30, newSlot())).toBe(false);
    expect(gate.waiting).toBe(0);
    gate.leave(a);
    expect(gate.inFlight).toBe(0);
    expect(gate.enter(0, newSlot())).toBe(true);
  });

  test("a newcomer does not overtake waiting requests", async () => {
    const gate = new AdmissionGate(1);
    const a = newSlot();
    gate.enter(1000, a);
    const waiting = gate.enter(1000, newSlot()) as Promise<boolean>;
    gate.leave(a);
    // The freed slot went to the waiter, so the newcomer queues.
    expect(gate.enter(1000, newSlot())).not.toBe(true);
    expect(await waiting).toBe(true);
  });

  test("0 means no bound", () => {
    const gate = new AdmissionGate(0);
    for (let i = 0; i < 1000; i++) expect(gate.enter(0, newSlot())).toBe(true);
  });
});

describe("AdmissionGate's long-wait lane", () => {
  test("a holder that has waited longWait.after gives its slot to a waiter at once", async () => {
    const gate = new AdmissionGate(1, { after: 20, limit: 4 });
    const poll = newSlot();
    expect(gate.enter(1000, poll)).toBe(true);
    await Bun.sleep(25);
    const next = newSlot();
    // The holder is old enough: the newcomer takes its slot without waiting on a timer.
    expect(await gate.enter(1000, next)).toBe(true);
    expect(poll.slotLane).toBe(Lane.Long);
    expect(gate.longWaits).toBe(1);
    expect(gate.inFlight).toBe(2);
    gate.leave(poll);
    gate.leave(next);
    expect(gate.inFlight).toBe(0);
    expect(gate.longWaits).toBe(0);
  });

  test("a waiter behind a young holder gets its slot once that holder has waited longWait.after", async () => {
    const gate = new AdmissionGate(1, { after: 50, limit: 4 });
    const poll = newSlot();
    const started = performance.now();
    gate.enter(1000, poll);
    expect(await gate.enter(1000, newSlot())).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(49);
    expect(poll.slotLane).toBe(Lane.Long);
  });

  test("nothing moves while nobody waits", async () => {
    const gate = new AdmissionGate(2, { after: 1, limit: 4 });
    const a = newSlot();
    gate.enter(1000, a);
    await Bun.sleep(10);
    expect(a.slotLane).toBe(Lane.Shared);
    expect(gate.longWaits).toBe(0);
  });

  test("with the lane full, a long wait keeps its slot until a long wait ends", async () => {
    const gate = new AdmissionGate(1, { after: 1, limit: 1 });
    const [a, b, c] = [newSlot(), newSlot(), newSlot()];
    gate.enter(1000, a);
    await Bun.sleep(5);
    expect(await gate.enter(1000, b)).toBe(true); // a moved to the lane
    await Bun.sleep(5);
    let third = false;
    const waiting = (gate.enter(1000, c) as Promise<boolean>).then((ok) => (third = ok));
    await Bun.sleep(20);
    // b is old enough, but the lane holds a already: c waits.
    expect(third).toBe(false);
    expect(b.slotLane).toBe(Lane.Shared);
    gate.leave(a);
    expect(await waiting).toBe(true);
    expect(b.slotLane).toBe(Lane.Long);
    expect(gate.inFlight).toBe(2);
  });

  test("limit 0: no lane, a long wait keeps its slot", async () => {
    const gate = new AdmissionGate(1, { after: 1, limit: 0 });
    const a = newSlot();
    gate.enter(1000, a);
    await Bun.sleep(5);
    expect(await gate.enter(20, newSlot())).toBe(false);
    expect(a.slotLane).toBe(Lane.Shared);
  });
});

describe("upstream concurrency through the proxy", () => {
  let rig: TestRig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  test("requests beyond limits.upstreamConcurrency wait their turn instead of reaching a backend", async () => {
    // The gate is the fetch engine's; the long-wait lane (tested below) is off, so that a slow
    // first request cannot move out of its slot while the bound is being checked.
    rig = await startRig(2, { engine: "fetch", limits: { upstreamConcurrency: 1, longWaitConcurrency: 0 } });
    let most = 0;
    const balancer = rig.balancer;
    const sampler = setInterval(() => {
      most = Math.max(most, balancer.pool.backends.reduce((n, b) => n + b.inFlight, 0));
    }, 5);
    const done: string[] = [];
    try {
      const first = fetch(`${rig.balancer.url}/delay/300`).then(async (r) => done.push(`first ${r.status}`));
      await waitFor(() => rig!.cluster.backends.some((b) => b.active === 1), "the first request to reach a backend");
      const second = fetch(`${rig.balancer.url}/`).then(async (r) => done.push(`second ${r.status}`));
      await Promise.all([first, second]);
    } finally {
      clearInterval(sampler);
    }
    // The second request, to an idle backend, still waited for the first one's slot.
    expect(done).toEqual(["first 200", "second 200"]);
    expect(most).toBe(1);
  });

  test("a request long in waiting for its head gives its slot up (limits.longWaitAfter)", async () => {
    rig = await startRig(2, { engine: "fetch", limits: { upstreamConcurrency: 1, longWaitAfter: "100ms" } });
    const done: string[] = [];
    const poll = fetch(`${rig.balancer.url}/delay/3000`).then(async (r) => done.push(`poll ${r.status}`));
    await waitFor(() => rig!.cluster.backends.some((b) => b.active === 1), "the long request to reach a backend");
    // The one slot is the long request's; the next request gets it once that has waited 100ms.
    const next = await fetch(`${rig.balancer.url}/`);
    done.push(`next ${next.status}`);
    await poll;
    expect(done).toEqual(["next 200", "poll 200"]);
  });

  test("queued requests all complete once slots free up", async () => {
    rig = await startRig(2, { engine: "fetch", limits: { upstreamConcurrency: 2 } });
    const results = await Promise.all(Array.from({ length: 12 }, () => fetch(`${rig!.balancer.url}/delay/50`).then((r) => r.status)));
    expect(results).toEqual(Array(12).fill(200));
    expect(rig.cluster.backends.every((b) => b.requests > 0)).toBe(true);
  });
});
