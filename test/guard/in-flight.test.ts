/**
 * limits.maxInFlightPerClient: requests one client address may have in flight on a route at
 * once. The bound is per route and per address, counted from when the loop takes the request to
 * the end of its answer, and given back on every way a request ends (answered, failed, the client
 * gone), so it never leaks.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { startBalancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { InFlightLimit } from "../../src/guard/in-flight.ts";
import { GuardState } from "../../src/guard/build.ts";
import { waitFor } from "../helpers/wait.ts";

describe("InFlightLimit", () => {
  test("counts per client, refuses past the bound, forgets a client at zero", () => {
    const l = new InFlightLimit("r", 2);
    expect(l.admit("a")).toBeUndefined();
    expect(l.admit("a")).toBeUndefined();
    expect(l.admit("a")?.code).toBe("SY_RATE_LIMITED");
    expect(l.admit("b")).toBeUndefined();
    l.release("a");
    expect(l.admit("a")).toBeUndefined();
    l.release("a");
    l.release("a");
    l.release("b");
    expect(l.clients).toBe(0);
  });

  test("kept across reloads by route name; a route a reload removes takes its limit with it", () => {
    const state = new GuardState();
    const a = state.inFlightLimit("a", 1)!;
    expect(a.admit("c")).toBeUndefined();
    const gone = state.inFlightLimit("gone", 1)!;
    expect(gone.admit("c")).toBeUndefined();
    state.keep(["a"]);
    // The same object, still counting the request admitted before the reload.
    expect(state.inFlightLimit("a", 1)).toBe(a);
    expect(a.admit("c")?.code).toBe("SY_RATE_LIMITED");
    // "gone" comes back empty if a later config names it again.
    const again = state.inFlightLimit("gone", 1)!;
    expect(again).not.toBe(gone);
    expect(again.admit("c")).toBeUndefined();
    a.release("c");
    expect(a.clients).toBe(0);
  });
});

for (const engine of ["socket", "fetch"] as const) {
  describe(`${engine} engine`, () => {
    // A backend that holds every request until told to answer.
    const held: (() => void)[] = [];
    const backend = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch: () => new Promise<Response>((resolve) => held.push(() => resolve(new Response("done")))),
    });
    afterAll(() => backend.stop(true));

    test("a third request of one client waits for none of the two in flight: 429; answered, they give their slots back", async () => {
      const lb = await startBalancer(
        validateConfig({
          engine, admin: false, healthCheck: false, log: { access: false },
          listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
          pools: { slow: { backends: [{ url: `http://127.0.0.1:${backend.port}` }] } },
          routes: [{ name: "slow", pool: "slow", limits: { maxInFlightPerClient: 2 } }],
        }),
        { env: {}, logger: memoryLogger() },
      );
      try {
        const first = [fetch(`${lb.url}/1`), fetch(`${lb.url}/2`)];
        await waitFor(() => held.length === 2, "two requests at the backend");
        const third = await fetch(`${lb.url}/3`);
        expect(third.status).toBe(429);
        expect(third.headers.get("retry-after")).toBe("1");
        expect(((await third.json()) as { error: string }).error).toBe("SY_RATE_LIMITED");
        for (const answer of held.splice(0)) answer();
        for (const r of await Promise.all(first)) expect(await r.text()).toBe("done");
        // Both slots are back: two more are taken at once.
        const again = [fetch(`${lb.url}/4`), fetch(`${lb.url}/5`)];
        await waitFor(() => held.length === 2, "two more requests at the backend");
        for (const answer of held.splice(0)) answer();
        for (const r of await Promise.all(again)) expect(r.status).toBe(200);
        // A client that leaves gives its slot back too.
        const gone = new AbortController();
        const left = fetch(`${lb.url}/6`, { signal: gone.signal }).catch(() => undefined);
        await waitFor(() => held.length === 1, "the request that will be abandoned");
        gone.abort();
        await left;
        // Over on the proxy's side too (counted as the client's abort) before the next two come.
        await waitFor(() => lb.traffic.proxyErrors.SY_CLIENT_ABORTED === 1, "the abandoned request to end");
        const after = [fetch(`${lb.url}/7`), fetch(`${lb.url}/8`)];
        await waitFor(() => held.length === 3, "two more beside the abandoned one");
        for (const answer of held.splice(0)) answer();
        for (const r of await Promise.all(after)) expect(r.status).toBe(200);
      } finally {
        for (const answer of held.splice(0)) answer();
        await lb.stop(false);
      }
    });

    test("with workers, the bound is the balancer's: requests over both workers count together", async () => {
      const lb = await startBalancer(
        validateConfig({
          engine, workers: 2, admin: false, healthCheck: false, log: { access: false },
          listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
          pools: { slow: { backends: [{ url: `http://127.0.0.1:${backend.port}` }] } },
          routes: [{ name: "slow", pool: "slow", limits: { maxInFlightPerClient: 2 } }],
        }),
        { env: {}, logger: memoryLogger() },
      );
      // Each on a connection of its own, which the kernel gives to either worker.
      const get = (path: string) => fetch(`${lb.url}${path}`, { headers: { connection: "close" }, keepalive: false });
      try {
        const first = [get("/1"), get("/2")];
        await waitFor(() => held.length === 2, "two requests at the backend");
        // Eight more, wherever each lands: both workers see the two in flight.
        for (const r of await Promise.all(Array.from({ length: 8 }, (_, i) => get(`/more/${i}`)))) {
          expect(r.status).toBe(429);
          await r.arrayBuffer();
        }
        for (const answer of held.splice(0)) answer();
        for (const r of await Promise.all(first)) expect(await r.text()).toBe("done");
        const again = [get("/3"), get("/4")];
        await waitFor(() => held.length === 2, "two more requests at the backend");
        expect((await get("/5")).status).toBe(429);
        for (const answer of held.splice(0)) answer();
        for (const r of await Promise.all(again)) expect(r.status).toBe(200);
      } finally {
        for (const answer of held.splice(0)) answer();
        await lb.stop(false);
      }
    });
  });
}
