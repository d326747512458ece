import { afterEach, describe, expect, test } from "bun:test";
import { PeakEwmaPolicy, cost } from "../../src/policy/peak-ewma.ts";
import { backends, counts } from "./conformance.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

describe("peak-ewma policy", () => {
  test("cost is the average × (in-flight + 1) ÷ weight", () => {
    const [a, b] = backends(2, [1, 2]);
    a!.stats.ewma.observe(10, 1);
    b!.stats.ewma.observe(10, 1);
    const leases = [a!.acquire(), a!.acquire(), b!.acquire()];
    expect(cost(a!, 1)).toBe(30);
    expect(cost(b!, 1)).toBe(10);
    leases.forEach((l) => l.release());
  });

  test("prefers the fast backend until its queue costs more than the slow one's answer", () => {
    let now = 1;
    const p = new PeakEwmaPolicy(() => now);
    const [fast, slow] = backends(2);
    fast!.stats.ewma.observe(2, now);
    slow!.stats.ewma.observe(40, now);
    const leases = [];
    // 2 × (k + 1) < 40 for k up to 18 requests in flight on the fast one.
    for (let k = 0; k < 19; k++) {
      const chosen = p.pick([fast!, slow!]);
      expect(chosen).toBe(fast!);
      leases.push(chosen.acquire());
    }
    expect(p.pick([fast!, slow!])).toBe(slow!);
    leases.forEach((l) => l.release());
  });

  test("a backend that turned slow is tried again once its average has decayed, and wins back traffic if it recovered", () => {
    let now = 1;
    const p = new PeakEwmaPolicy(() => now);
    const [a, b] = backends(2);
    a!.stats.ewma.observe(5, now);
    b!.stats.ewma.observe(500, now);
    for (let i = 0; i < 50; i++) expect(p.pick([a!, b!])).toBe(a!);
    // No sample from b for a while (it is not chosen); a keeps answering in 5 ms. With τ 1 s,
    // 500 ms decays to 5 ms in about 4.6 s.
    let tried = false;
    for (let step = 0; step < 1000 && !tried; step++) {
      now += 100;
      a!.stats.ewma.observe(5, now);
      tried = p.pick([a!, b!]) === b!;
    }
    expect(tried).toBe(true);
    expect(now).toBeGreaterThan(4000);
    // b has recovered: its answers are now quicker than a's and it takes the traffic.
    b!.stats.ewma.observe(1, now);
    now += 10_000;
    a!.stats.ewma.observe(5, now);
    b!.stats.ewma.observe(1, now);
    expect(counts(Array.from({ length: 10 }, () => p.pick([a!, b!]))).b2).toBe(10);
  });

  test("an unmeasured backend takes one request at a time until its first answer", () => {
    const p = new PeakEwmaPolicy(() => 1);
    const [known, fresh] = backends(2);
    known!.stats.ewma.observe(50, 1);
    expect(p.pick([known!, fresh!])).toBe(fresh!);
    const lease = fresh!.acquire();
    for (let i = 0; i < 10; i++) expect(p.pick([known!, fresh!])).toBe(known!);
    lease.release();
  });

  test("with no response times at all (TCP mode) it is least-connections, weights included", () => {
    const p = new PeakEwmaPolicy(() => 1);
    const [a, b] = backends(2, [1, 2]);
    const leases = [];
    const picks: string[] = [];
    for (let i = 0; i < 6; i++) {
      const chosen = p.pick([a!, b!]);
      picks.push(chosen.name);
      leases.push(chosen.acquire());
    }
    // Weight 2 takes twice the connections of weight 1.
    expect([a!.inFlight, b!.inFlight]).toEqual([2, 4]);
    leases.forEach((l) => l.release());
  });

  test("idle and unmeasured backends share in turn", () => {
    const p = new PeakEwmaPolicy(() => 1);
    const list = backends(3);
    expect(Array.from({ length: 6 }, () => p.pick(list).name).sort()).toEqual(["b1", "b1", "b2", "b2", "b3", "b3"]);
  });
});

describe("peak-ewma end to end", () => {
  let rig: TestRig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  test("traffic keeps away from a backend answering in 60 ms, and returns to it once it is quick again", async () => {
    rig = await startRig(3, { strategy: "peak-ewma", peakEwma: { decay: "300ms" } });
    const slow = rig.cluster.backends[2]!;
    slow.setLatency({ min: 60, max: 60 });
    const url = `${rig.balancer.url}/`;
    const run = async (n: number, concurrency: number) => {
      let left = n;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (left-- > 0) await (await fetch(url)).text();
        }),
      );
    };
    await run(300, 4);
    // Only the first tries and the occasional probe after decay reach the slow one.
    expect(slow.requests).toBeLessThan(30);
    expect(rig.cluster.backends[0]!.requests + rig.cluster.backends[1]!.requests).toBeGreaterThan(270);
    slow.setLatency({ min: 0, max: 0 });
    slow.resetCount();
    // Its average decays (τ 300 ms), it is tried, answers quickly, and takes a share again.
    await waitFor(async () => {
      await run(40, 4);
      return slow.requests >= 20;
    }, "the recovered backend to take traffic again", 10_000);
  });
});
