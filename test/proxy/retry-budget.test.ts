/**
 * The retry storm that retry.budget (on by default) exists for: a backend answering 503 to
 * everything under 64 connections. Without a budget every request is tried retry.attempts (3)
 * times: its backends get 3x the requests. With the default budget (over 10 s, retries at most
 * 20% of the requests plus 3 a second) they get at most 1.25x, and clients see no more errors
 * than the budget implies: each one is a retry it refused, answered with the backend's own
 * failure. Both engines.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { parseExposition, sampleOf } from "../admin/helpers.ts";
import type { SimCluster } from "../../sim/cluster.ts";
import type { StatsDocument } from "../../src/admin/snapshot.ts";
import { validateConfig } from "../../src/config/load.ts";

const ENGINES = ["fetch", "socket"] as const;
const CONNECTIONS = 64;
/** Requests in all, shared by the connections, so that all 64 stay busy to the end. */
const REQUESTS = CONNECTIONS * 40;
/**
 * What the default budget allows a run of `requests` over `ms`: 20% of the requests, plus the
 * floor of 3 a second, 30 for each 10 s window the run touches (one, unless the machine is so
 * slow that 2,560 requests take more than 9 s; then the bound says how much more it may be).
 */
const budgetFor = (requests: number, ms: number) => Math.floor(requests * 0.2) + 30 * Math.ceil((Math.ceil(ms / 1000) + 1) / 10);

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** One backend answers 503 "simulated failure" to everything; its /health still says 200. */
const overload = (index: number) => (cluster: SimCluster) => {
  cluster.backends[index]!.setFailRate(1);
  cluster.backends[index]!.setFailStatus(503);
};

interface Load {
  sent: number;
  /** How long the run took, ms. */
  ms: number;
  /** Status -> count, as clients saw them. */
  statuses: Record<number, number>;
  errors: number;
  /** Error bodies that were not the backend's own "simulated failure" (a 502 of ours, say). */
  notTheBackends: string[];
}

/** `total` GETs from `connections` loops sharing one count; what came back. */
async function load(url: string, total: number, connections: number): Promise<Load> {
  const out: Load = { sent: 0, ms: 0, statuses: {}, errors: 0, notTheBackends: [] };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (out.sent < total) {
        out.sent++;
        const res = await fetch(url);
        const body = await res.text();
        out.statuses[res.status] = (out.statuses[res.status] ?? 0) + 1;
        if (res.status === 200) continue;
        out.errors++;
        if (res.status !== 503 || body !== "simulated failure") out.notTheBackends.push(`${res.status} ${body.slice(0, 80)}`);
      }
    }),
  );
  out.ms = performance.now() - started;
  return out;
}

const reached = (r: TestRig) => r.cluster.backends.reduce((n, b) => n + b.requests, 0);

describe.each(ENGINES)("%s engine", (engine) => {
  test(`retry storm: one backend answering 503 to everything under ${CONNECTIONS} connections gets at most 1.25x the requests`, async () => {
    rig = await startRig(1, { engine, log: { access: false } }, overload(0));
    const l = await load(rig.balancer.url, REQUESTS, CONNECTIONS);
    const backend = reached(rig);
    const { retries } = rig.balancer.traffic;
    const { exhausted } = rig.balancer.pool.retryBudget;
    console.log(`${engine}: ${l.sent} requests sent, ${backend} reached the backend (${(backend / l.sent).toFixed(3)}x), ${retries} retries, ${exhausted} refused, ${l.errors} client errors`);
    expect(l.sent).toBe(REQUESTS);
    expect(backend).toBeLessThanOrEqual(1.25 * l.sent);
    // The budget, and nothing else, decided: every retry it allowed was made, to this backend.
    expect(backend).toBe(l.sent + retries);
    expect(retries).toBeLessThanOrEqual(budgetFor(l.sent, l.ms));
    expect(exhausted).toBeGreaterThan(0);
    // No request can succeed here; what clients get is the backend's own answer, never one of ours.
    expect(l.errors).toBe(l.sent);
    expect(l.notTheBackends).toEqual([]);
  }, 30_000);

  test("one backend of three answering 503 (ejection off): every client error is a retry the budget refused", async () => {
    rig = await startRig(
      3,
      (c) => ({ engine, log: { access: false }, passive: { consecutiveFailures: 0 }, admin: { host: "127.0.0.1", port: 0 }, backends: c.backends.map((b) => ({ name: b.name, url: b.url })) }),
      overload(0),
    );
    const bad = rig.cluster.backends[0]!;
    const l = await load(rig.balancer.url, REQUESTS, CONNECTIONS);
    const backend = reached(rig);
    const { retries } = rig.balancer.traffic;
    const { exhausted } = rig.balancer.pool.retryBudget;
    console.log(`${engine}: ${l.sent} requests sent, ${backend} reached backends (${(backend / l.sent).toFixed(3)}x; ${bad.requests} the failing one), ${retries} retries, ${exhausted} refused, ${l.errors} client errors`);
    expect(backend).toBeLessThanOrEqual(1.25 * l.sent);
    expect(retries).toBeLessThanOrEqual(budgetFor(l.sent, l.ms));
    // A first try at the failing backend was either retried (once: the retry goes to another
    // backend, which answers) or refused by the budget, and then its 503 went to the client.
    expect(l.errors).toBe(exhausted);
    expect(l.errors + retries).toBe(bad.requests);
    expect(l.notTheBackends).toEqual([]);
    expect(l.statuses[200]).toBe(l.sent - l.errors);

    // What the admin port shows of it: /metrics and /stats (the dashboard reads /stats).
    const admin = rig.balancer.adminUrl!;
    const m = parseExposition(await (await fetch(`${admin}/metrics`)).text());
    expect(sampleOf(m, "switchyard_retries_total").value).toBe(retries);
    expect(sampleOf(m, "switchyard_retry_budget_exhausted_total").value).toBe(exhausted);
    const stats = (await (await fetch(`${admin}/stats`)).json()) as StatsDocument;
    expect(stats.totals.retries).toBe(retries);
    expect(stats.totals.retryBudget).toEqual({ exhausted, budget: { percent: 20, minRetriesPerSecond: 3 } });
  }, 30_000);

  test("a quiet pool still retries: one connection, no client sees the failing backend's 503", async () => {
    rig = await startRig(3, { engine, log: { access: false }, strategy: "round-robin", passive: { consecutiveFailures: 0 } }, overload(0));
    const l = await load(rig.balancer.url, 30, 1);
    expect(l.errors).toBe(0);
    expect(rig.balancer.pool.retryBudget.exhausted).toBe(0);
    // Every first try at the failing backend was retried (round-robin sends it one in two
    // requests: a retry moves the rotation on too); the floor of 3 a second pays for them.
    expect(rig.balancer.traffic.retries).toBe(rig.cluster.backends[0]!.requests);
    expect(rig.cluster.backends[0]!.requests).toBeGreaterThanOrEqual(10);
  });

  test("a reload changes the budget in place; the pool's counts live on", async () => {
    let budget: unknown = { percent: 0, minRetriesPerSecond: 0 };
    const config = (c: SimCluster) => ({
      engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false },
      backends: c.backends.map((b) => ({ name: b.name, url: b.url })), retry: { budget },
    });
    let cluster: SimCluster | undefined;
    rig = await startRig(1, (c) => config((cluster = c)), overload(0), { load: async () => validateConfig(config(cluster!)) });
    const bad = rig.cluster.backends[0]!;
    await load(rig.balancer.url, 10, 1);
    expect([bad.requests, rig.balancer.pool.retryBudget.exhausted]).toEqual([10, 10]);
    budget = false;
    const report = await rig.balancer.reload();
    expect(report.lines).toEqual(['retry.budget {"percent":0,"minRetriesPerSecond":0} -> false']);
    await load(rig.balancer.url, 10, 1);
    expect([bad.requests, rig.balancer.pool.retryBudget.exhausted]).toEqual([40, 10]);
  });

  test("retry.budget: false turns it off: the storm is back, 3 tries per request", async () => {
    rig = await startRig(1, { engine, log: { access: false }, retry: { budget: false } }, overload(0));
    const l = await load(rig.balancer.url, CONNECTIONS * 10, CONNECTIONS);
    expect(reached(rig)).toBe(3 * l.sent);
    expect(rig.balancer.pool.retryBudget.exhausted).toBe(0);
    expect(l.notTheBackends).toEqual([]);
  }, 30_000);
});
