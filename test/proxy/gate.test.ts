import { afterEach, describe, expect, test } from "bun:test";
import { AdmissionGate } from "../../src/proxy/gate.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

describe("AdmissionGate", () => {
  test("admits up to the limit at once, then in arrival order", async () => {
    const gate = new AdmissionGate(2);
    expect(gate.enter(1000)).toBe(true);
    expect(gate.enter(1000)).toBe(true);
    const order: number[] = [];
    const third = (gate.enter(1000) as Promise<boolean>).then((ok) => order.push(3) && ok);
    const fourth = (gate.enter(1000) as Promise<boolean>).then((ok) => order.push(4) && ok);
    expect(gate.waiting).toBe(2);
    gate.leave();
    gate.leave();
    expect(await third).toBe(true);
    expect(await fourth).toBe(true);
    expect(order).toEqual([3, 4]);
    expect(gate.inFlight).toBe(2);
    gate.leave();
    gate.leave();
    expect(gate.inFlight).toBe(0);
    expect(() => gate.leave()).toThrow();
  });

  test("a waiter gives up after its own wait, and holds no slot", async () => {
    const gate = new AdmissionGate(1);
    expect(gate.enter(1000)).toBe(true);
    expect(await gate.enter(30)).toBe(false);
    expect(gate.waiting).toBe(0);
    gate.leave();
    expect(gate.inFlight).toBe(0);
    expect(gate.enter(0)).toBe(true);
  });

  test("a newcomer does not overtake waiting requests", async () => {
    const gate = new AdmissionGate(1);
    gate.enter(1000);
    const waiting = gate.enter(1000) as Promise<boolean>;
    gate.leave();
    // The freed slot went to the waiter, so the newcomer queues.
    expect(gate.enter(1000)).not.toBe(true);
    expect(await waiting).toBe(true);
  });

  test("0 means no bound", () => {
    const gate = new AdmissionGate(0);
    for (let i = 0; i < 1000; i++) expect(gate.enter(0)).toBe(true);
  });
});

describe("upstream concurrency through the proxy", () => {
  let rig: TestRig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  test("requests beyond limits.upstreamConcurrency wait their turn instead of reaching a backend", async () => {
    rig = await startRig(2, { engine: "fetch", limits: { upstreamConcurrency: 1 } }); // the gate is the fetch engine's
    let most = 0;
    const sampler = setInterval(() => {
      most = Math.max(most, rig!.balancer.pool.backends.reduce((n, b) => n + b.inFlight, 0));
    }, 5);
    const done: string[] = [];
    const first = fetch(`${rig.balancer.url}/delay/300`).then(async (r) => done.push(`first ${r.status}`));
    await waitFor(() => rig!.cluster.backends.some((b) => b.active === 1), "the first request to reach a backend");
    const second = fetch(`${rig.balancer.url}/`).then(async (r) => done.push(`second ${r.status}`));
    await Promise.all([first, second]);
    clearInterval(sampler);
    // The second request, to an idle backend, still waited for the first one's slot.
    expect(done).toEqual(["first 200", "second 200"]);
    expect(most).toBe(1);
  });

  test("queued requests all complete once slots free up", async () => {
    rig = await startRig(2, { engine: "fetch", limits: { upstreamConcurrency: 2 } });
    const results = await Promise.all(Array.from({ length: 12 }, () => fetch(`${rig!.balancer.url}/delay/50`).then((r) => r.status)));
    expect(results).toEqual(Array(12).fill(200));
    expect(rig.cluster.backends.every((b) => b.requests > 0)).toBe(true);
  });
});
