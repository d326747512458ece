/**
 * Route rate limits end to end, on both engines: a balancer in front of a recording backend,
 * config through validateConfig, reloads through apply.
 */
import { describe, expect, test } from "bun:test";
import { validateConfig } from "../../src/config/load.ts";
import { recordingRig } from "../helpers/balancer.ts";
import { rawExchange } from "../helpers/raw.ts";

const routes = (rateLimit: Record<string, unknown>, more: Record<string, unknown>[] = []) => ({
  pools: undefined,
  routes: [...more, { name: "api", match: { path: "/api" }, pool: "default", rateLimit }, { name: "rest", pool: "default" }],
});

for (const engine of ["socket", "fetch"] as const) {
  describe(`rate limits (${engine} engine)`, () => {
    const rr = recordingRig(engine);

    const get = (port: number, path: string, headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${port}${path}`, { headers });

    test("burst requests go through at once, the next is refused with 429 and the RateLimit fields", async () => {
      const { port, backend } = await rr.start(routes({ rate: "1/m", burst: 3 }));
      const statuses: number[] = [];
      let last: Response | undefined;
      for (let i = 0; i < 6; i++) {
        last = await get(port, "/api/x");
        statuses.push(last.status);
        if (last.status === 200) await last.arrayBuffer();
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
      expect(backend.requests.length).toBe(3);
      const r = last!;
      expect(r.headers.get("retry-after")).toBe("60");
      expect(r.headers.get("ratelimit-policy")).toBe('"api";q=1;w=60');
      expect(r.headers.get("ratelimit")).toBe('"api";r=0;t=60');
      expect((await r.json()).error).toBe("SY_RATE_LIMITED");
      // Another route has no limit.
      expect((await get(port, "/other")).status).toBe(200);
    });

    test("a refused POST is answered 429; on the socket engine before its body is read", async () => {
      const { port, backend } = await rr.start(routes({ rate: "1/m", burst: 1, key: "route" }));
      expect((await get(port, "/api")).status).toBe(200);
      const head = "POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
      // The socket engine answers at once, none of the body sent, and closes (the body is still due);
      // the fetch engine reads the request first (Bun.serve), so it gets the body.
      const x = await rawExchange(port, engine === "socket" ? head : [head, "x".repeat(100_000)], {
        timeoutMs: 5000,
        until: (t) => t.includes("SY_RATE_LIMITED") && (engine === "fetch" || t.toLowerCase().includes("connection: close")),
      });
      expect(x.statuses).toEqual([429]);
      expect(x.text).toContain("SY_RATE_LIMITED");
      if (engine === "socket") expect(x.text.toLowerCase()).toContain("connection: close");
      expect(backend.requests.length).toBe(1);
    }, 15_000);

    test("key by header: each key has its own budget", async () => {
      const { port } = await rr.start(routes({ rate: "1/m", burst: 2, key: "header:x-api-key" }));
      const s = async (key: string) => {
        const r = await get(port, "/api", { "x-api-key": key });
        await r.arrayBuffer();
        return r.status;
      };
      expect([await s("a"), await s("a"), await s("a")]).toEqual([200, 200, 429]);
      expect([await s("b"), await s("b"), await s("b")]).toEqual([200, 200, 429]);
    });

    test("allowed ≈ burst + rate × time under a flood", async () => {
      const { port } = await rr.start(routes({ rate: "20/s", burst: 5 }));
      const t0 = performance.now();
      let allowed = 0;
      let refused = 0;
      while (performance.now() - t0 < 1000) {
        const r = await get(port, "/api");
        await r.arrayBuffer();
        if (r.status === 200) allowed++;
        else if (r.status === 429) refused++;
      }
      const elapsed = (performance.now() - t0) / 1000;
      // The limit is an upper bound whatever the load; every refusal means the budget was spent.
      expect(allowed).toBeLessThanOrEqual(5 + Math.ceil(20 * elapsed) + 1);
      expect(refused).toBeGreaterThan(0);
      expect(allowed).toBeGreaterThanOrEqual(5);
    });

    test("a reload keeps the budget of an unchanged limit; a changed one starts afresh", async () => {
      const { port, backend } = await rr.start(routes({ rate: "1/m", burst: 1 }));
      const rig = rr.rig();
      const status = async () => {
        const r = await get(port, "/api");
        await r.arrayBuffer();
        return r.status;
      };
      expect([await status(), await status()]).toEqual([200, 429]);
      // The rig's own config, so that only the routes change (the listener stays where it is).
      const base = { engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: true }, backends: [{ name: "rec", url: backend.url }] };
      const report = await rig.balancer.apply(validateConfig({ ...base, ...routes({ rate: "1/m", burst: 1 }, [{ name: "extra", match: { path: "/extra" }, pool: "default" }]) }));
      expect(report.lines.length).toBe(1);
      expect(await status()).toBe(429);
      const r2 = await rig.balancer.apply(validateConfig({ ...base, ...routes({ rate: "1/m", burst: 2 }) }));
      expect(r2.lines.length).toBe(1);
      expect([await status(), await status(), await status()]).toEqual([200, 200, 429]);
    });
  });
}
