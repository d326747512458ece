/**
 * peak-ewma against least-connections in a model of bench/skewed.ts, in virtual time: 64
 * closed-loop clients, one proxy CPU that handles requests and responses in turn (a fixed cost
 * each, and pauses now and then, as GC and other processes cause), and three backends that
 * answer in parallel after 2, 2 and 40 ms. Each response's measured time includes its wait for
 * the proxy's CPU, as it does in a real JavaScript proxy. Seeded, so every run is the same.
 */
import { describe, expect, test } from "bun:test";
import { Backend } from "../../src/pool/backend.ts";
import type { SelectionPolicy } from "../../src/pool/selection.ts";
import { PeakEwmaPolicy } from "../../src/policy/peak-ewma.ts";
import { LeastConnections } from "../../src/policy/least-connections.ts";

interface Outcome {
  slowShare: number;
  p99: number;
  rps: number;
}

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function run(kind: "peak-ewma" | "least-connections", pause: { every: number; ms: number }, seed = 1): Outcome {
  const random = prng(seed);
  const clients = 64;
  const cpuCost = 0.05;
  const duration = 12_000;
  const warmup = 2000;
  let now = 0;
  const latencies = [2, 2, 40];
  const backends = latencies.map((_, i) => new Backend({ name: `b${i}`, url: `http://10.0.0.${i + 1}` }));
  const policy: SelectionPolicy = kind === "peak-ewma" ? new PeakEwmaPolicy(() => now) : new LeastConnections();

  // Events in time order (a binary heap; ties in insertion order do not matter here).
  const heap: { t: number; fn: () => void }[] = [];
  const push = (t: number, fn: () => void) => {
    heap.push({ t, fn });
    for (let i = heap.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (heap[p]!.t <= heap[i]!.t) break;
      [heap[p], heap[i]] = [heap[i]!, heap[p]!];
      i = p;
    }
  };
  const pop = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        let m = i;
        if (l < heap.length && heap[l]!.t < heap[m]!.t) m = l;
        if (l + 1 < heap.length && heap[l + 1]!.t < heap[m]!.t) m = l + 1;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i]!, heap[m]!];
        i = m;
      }
    }
    return top;
  };

  // The proxy's one CPU: jobs in arrival order, paused now and then.
  let cpuFree = 0;
  let nextPause = pause.every * random();
  const cpu = (job: () => void) => {
    let start = Math.max(now, cpuFree);
    if (start >= nextPause) {
      start += pause.ms * (0.5 + random());
      nextPause += pause.every * (0.5 + random());
    }
    cpuFree = start + cpuCost;
    push(cpuFree, job);
  };

  const seen: number[] = [];
  const counts = [0, 0, 0];
  const client = () => {
    const started = now;
    cpu(() => {
      const b = policy.pick(backends);
      const i = backends.indexOf(b);
      const lease = b.acquire();
      const sent = now;
      push(now + latencies[i]! * (0.9 + 0.2 * random()), () =>
        cpu(() => {
          b.stats.ewma.observe(now - sent, now);
          lease.release();
          if (now > warmup) {
            counts[i]!++;
            seen.push(now - started);
          }
          client();
        }),
      );
    });
  };
  for (let i = 0; i < clients; i++) client();
  while (heap.length > 0 && now < duration) {
    const e = pop();
    now = e.t;
    e.fn();
  }
  seen.sort((a, b) => a - b);
  const total = counts[0]! + counts[1]! + counts[2]!;
  return { slowShare: counts[2]! / total, p99: seen[Math.floor(0.99 * seen.length)]!, rps: total / ((duration - warmup) / 1000) };
}

describe("skewed cluster model: two 2 ms backends and one 40 ms, 64 connections", () => {
  for (const pause of [{ every: 300, ms: 5 }, { every: 300, ms: 10 }]) {
    test(`pauses of ${pause.ms} ms every ~${pause.every} ms: peak-ewma keeps the slow backend under 1% and halves least-connections' p99`, () => {
      const lc = run("least-connections", pause);
      const ewma = run("peak-ewma", pause);
      expect(lc.slowShare).toBeGreaterThan(0.03);
      expect(ewma.slowShare).toBeLessThan(0.01);
      expect(ewma.p99).toBeLessThanOrEqual(0.5 * lc.p99);
      expect(ewma.rps).toBeGreaterThanOrEqual(0.98 * lc.rps);
    });
  }

  test("stalls of ~70 ms every ~2 s lift every backend's average at once; forgotten within τ, they do not hand the slow one traffic", () => {
    const pause = { every: 2000, ms: 70 };
    const lc = run("least-connections", pause);
    const ewma = run("peak-ewma", pause);
    expect(ewma.slowShare).toBeLessThan(0.01);
    expect(ewma.p99).toBeLessThanOrEqual(0.5 * lc.p99);
  });

  test("with long pauses (30 ms every ~1 s), which set every policy's p99, the slow backend still gets under 1%", () => {
    const pause = { every: 1000, ms: 30 };
    expect(run("least-connections", pause).slowShare).toBeGreaterThan(0.03);
    expect(run("peak-ewma", pause).slowShare).toBeLessThan(0.01);
  });

  test("different seeds, same picture", () => {
    for (const seed of [2, 3, 4]) {
      const pause = { every: 300, ms: 10 };
      expect(run("peak-ewma", pause, seed).slowShare).toBeLessThan(0.01);
    }
  });
});
