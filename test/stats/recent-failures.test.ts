/**
 * The recent-failures list (src/stats/recent-failures.ts): a bounded ring of the last failed
 * requests, filled by the forwarding loop on both engines, read by /stats and the dashboard,
 * and gathered from every worker.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { RecentFailures, type FailureRecord } from "../../src/stats/recent-failures.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import type { StatsDocument } from "../../src/admin/snapshot.ts";
import { supervisorOf } from "../workers/helpers.ts";
import { waitFor } from "../helpers/wait.ts";

const record = (i: number): FailureRecord => ({ time: new Date(i).toISOString(), method: "GET", target: `/${i}`, status: 502, backends: [], tries: 0, requestId: `r${i}` });

describe("the ring", () => {
  test("newest first, at most its size; since() gives what is new, oldest first", () => {
    const r = new RecentFailures(3);
    expect(r.list()).toEqual([]);
    for (let i = 0; i < 5; i++) r.add(record(i));
    expect(r.list().map((f) => f.requestId)).toEqual(["r4", "r3", "r2"]);
    expect(r.seq).toBe(5);
    expect(r.since(3).map((f) => f.requestId)).toEqual(["r3", "r4"]);
    // Further back than the ring holds: what it still has.
    expect(r.since(0).map((f) => f.requestId)).toEqual(["r2", "r3", "r4"]);
    expect(r.since(5)).toEqual([]);
  });

  test("what counts: 5xx and cut answers, not the client's own 4xx", () => {
    expect(RecentFailures.isFailure(502)).toBe(true);
    expect(RecentFailures.isFailure(500)).toBe(true);
    expect(RecentFailures.isFailure(200, "SY_UPSTREAM_TRUNCATED")).toBe(true);
    expect(RecentFailures.isFailure(429, "SY_RATE_LIMITED")).toBe(false);
    expect(RecentFailures.isFailure(404, "SY_NO_ROUTE")).toBe(false);
    expect(RecentFailures.isFailure(200)).toBe(false);
  });

  test("a long target is cut", () => {
    const r = new RecentFailures(2);
    r.add({ ...record(1), target: "/" + "x".repeat(1000) });
    expect(r.list()[0]!.target.length).toBeLessThanOrEqual(258);
  });
});

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

async function stats(r: TestRig): Promise<StatsDocument> {
  await r.balancer.refresh();
  return (await (await fetch(`${r.balancer.adminUrl}/stats`)).json()) as StatsDocument;
}

describe("through the proxy", () => {
  test("a backend's 503 after a retry, and every try refused: listed with why, where and how often; 2xx and 4xx are not", async () => {
    rig = await startRig(2, { admin: { host: "127.0.0.1", port: 0 }, strategy: "round-robin", retry: { attempts: 2 } });
    const url = rig.balancer.url;
    expect((await fetch(`${url}/status/503`)).status).toBe(503);
    expect((await fetch(`${url}/status/404`)).status).toBe(404);
    expect((await fetch(`${url}/`)).status).toBe(200);
    for (const b of rig.cluster.backends) await b.stop();
    const down = await fetch(`${url}/gone?x=1`);
    await down.text();
    expect(down.status).toBeGreaterThanOrEqual(502);
    const list = (await stats(rig)).recentFailures!;
    expect(list).toHaveLength(2);
    const [last, first] = list;
    expect(first).toMatchObject({ method: "GET", target: "/status/503", status: 503, reason: "status 503", route: "default", pool: "default", tries: 2 });
    expect(first!.backends.sort()).toEqual(["backend-1", "backend-2"]);
    expect(first!.error).toBeUndefined();
    expect(last).toMatchObject({ target: "/gone?x=1", status: down.status, route: "default", pool: "default" });
    expect(last!.error).toStartWith("SY_");
    expect(last!.requestId).toBe(down.headers.get("x-request-id")!);
  });

  test("with workers: each worker's failures reach the owner's list", async () => {
    rig = await startRig(2, { admin: { host: "127.0.0.1", port: 0 }, workers: 2, retry: { attempts: 1 }, log: { access: false } });
    const url = rig.balancer.url;
    // Fresh connections, so that both workers answer some.
    await Promise.all(Array.from({ length: 20 }, () => fetch(`${url}/status/500`, { headers: { connection: "close" }, keepalive: false }).then((r) => r.text())));
    const sup = supervisorOf(rig.balancer);
    await sup.pull();
    for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
    await waitFor(async () => (await stats(rig!)).recentFailures!.length === 20, "all 20 failures at the owner");
    const list = (await stats(rig)).recentFailures!;
    expect(list.every((f) => f.status === 500 && f.target === "/status/500")).toBe(true);
  }, 30_000);
});
