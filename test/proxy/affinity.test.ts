/**
 * End to end: request affinity through the real proxy to real sim backends, in both HTTP
 * engines (the affinity lives in the shared forwarding loop). Sticky-session cookies beside
 * every policy, and consistent hashing on each kind of key.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { POLICY_NAMES } from "../../src/config/policy-names.ts";

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

interface Answer {
  backend: string;
  /** The value of the sticky cookie set by this response, if one was. */
  route: string | undefined;
  setCookies: string[];
}

/** One request, one at a time: the backend that answered is the one whose count went up. */
async function get(path = "/", headers: Record<string, string> = {}): Promise<Answer> {
  const before = rig!.cluster.backends.map((b) => b.requests);
  const res = await fetch(`${rig!.balancer.url}${path}`, { headers });
  expect(res.status).toBe(200);
  await res.text();
  const backend = rig!.cluster.backends.find((b, i) => b.requests > before[i]!)!.name;
  const setCookies = res.headers.getSetCookie();
  const route = setCookies.map((c) => /^route=([^;]*)/.exec(c)?.[1]).find((v) => v !== undefined);
  return { backend, route, setCookies };
}

for (const engine of ["fetch", "socket"] as const) {
  describe(`sticky sessions (${engine} engine)`, () => {
    test.each([...POLICY_NAMES])("beside %s: honoured while the backend is available, a new choice and cookie when it is not", async (strategy) => {
      rig = await startRig(3, {
        engine,
        strategy,
        ...(strategy === "consistent-hash" ? { hash: { key: "header:X-User" } } : {}),
        sticky: { cookie: "route" },
      });
      // Different users each time: without the cookie, every policy would spread these.
      let n = 0;
      const as = (route?: string) => ({ "x-user": `user-${n++}`, ...(route ? { cookie: `theme=dark; route=${route}` } : {}) });

      const first = await get("/", as());
      expect(first.route).toMatch(/^[A-Za-z0-9_-]{22}$/);
      // Opaque: neither the backend's name nor its address.
      const address = rig.cluster.backends.find((b) => b.name === first.backend)!.url.replace("http://", "");
      expect(first.setCookies.join()).not.toContain(first.backend);
      expect(first.setCookies.join()).not.toContain(address);
      for (let i = 0; i < 15; i++) {
        const a = await get("/", as(first.route));
        expect(a.backend).toBe(first.backend);
        expect(a.route).toBeUndefined();
      }

      // Its backend drained: the session moves, and the answer pins it to the new backend.
      const pool = rig.balancer.pool;
      pool.get(first.backend)!.setEnabled(false);
      const moved = await get("/", as(first.route));
      expect(moved.backend).not.toBe(first.backend);
      expect(moved.route).toBeDefined();
      expect(moved.route).not.toBe(first.route);
      for (let i = 0; i < 5; i++) expect((await get("/", as(moved.route))).backend).toBe(moved.backend);

      // The first backend is back: sessions pinned to it go to it again, the moved one stays.
      pool.get(first.backend)!.setEnabled(true);
      expect((await get("/", as(first.route))).backend).toBe(first.backend);
      expect((await get("/", as(moved.route))).backend).toBe(moved.backend);
    });

    test("a pinned backend that has died: the retry goes elsewhere and re-pins the session", async () => {
      rig = await startRig(3, { engine, strategy: "round-robin", sticky: { cookie: "route" } });
      const first = await get();
      await rig.cluster.backends.find((b) => b.name === first.backend)!.stop();
      const moved = await get("/", { cookie: `route=${first.route}` });
      expect(moved.backend).not.toBe(first.backend);
      expect(moved.route).toBeDefined();
      expect((await get("/", { cookie: `route=${moved.route}` })).backend).toBe(moved.backend);
    });

    test("the backend's own Set-Cookie lines pass beside the session cookie; a forged cookie is ignored", async () => {
      rig = await startRig(2, { engine, strategy: "round-robin", sticky: { cookie: "route" } });
      const a = await get("/cookies?n=2", { cookie: "route=forged" });
      expect(a.setCookies.length).toBe(3);
      expect(a.route).toMatch(/^[A-Za-z0-9_-]{22}$/);
    });
  });

  describe(`consistent hashing end to end (${engine} engine)`, () => {
    async function spread(keyed: (i: number) => { path?: string; headers?: Record<string, string> }): Promise<Map<string, string>> {
      const seen = new Map<string, string>();
      for (let i = 0; i < 60; i++) {
        const { path = "/", headers = {} } = keyed(i % 20);
        const key = `${path} ${JSON.stringify(headers)}`;
        const { backend } = await get(path, headers);
        const before = seen.get(key);
        if (before !== undefined) expect(backend).toBe(before);
        seen.set(key, backend);
      }
      // 20 keys over 3 backends: more than one backend is used.
      expect(new Set(seen.values()).size).toBeGreaterThan(1);
      return seen;
    }

    test("header key: one user, one backend; users spread; without the header, round in turn", async () => {
      rig = await startRig(3, { engine, strategy: "consistent-hash", hash: { key: "header:X-User" } });
      await spread((i) => ({ headers: { "x-user": `user-${i}` } }));
      rig.cluster.backends.forEach((b) => b.resetCount());
      for (let i = 0; i < 30; i++) await get();
      expect(rig.cluster.backends.map((b) => b.requests)).toEqual([10, 10, 10]);
    });

    test("cookie key", async () => {
      rig = await startRig(3, { engine, strategy: "consistent-hash", hash: { key: "cookie:uid" } });
      await spread((i) => ({ headers: { cookie: `a=1; uid=u${i}` } }));
    });

    test("path key (the query is not part of it)", async () => {
      rig = await startRig(3, { engine, strategy: "consistent-hash", hash: { key: "path" } });
      const seen = await spread((i) => ({ path: `/echo/item-${i}` }));
      expect(seen.size).toBe(20);
      for (let i = 0; i < 20; i++) expect((await get(`/echo/item-${i}?v=${i}`)).backend).toBe(seen.get(`/echo/item-${i} {}`)!);
    });

    test("ip key: every request from one client goes to one backend; on when it leaves, back when it returns", async () => {
      rig = await startRig(3, { engine, strategy: "consistent-hash", hash: { key: "ip" } });
      const first = (await get()).backend;
      for (let i = 0; i < 10; i++) expect((await get()).backend).toBe(first);
      rig.balancer.pool.get(first)!.setHealthy(false, "test");
      const second = (await get()).backend;
      expect(second).not.toBe(first);
      for (let i = 0; i < 10; i++) expect((await get()).backend).toBe(second);
      rig.balancer.pool.get(first)!.setHealthy(true, "test");
      expect((await get()).backend).toBe(first);
    });
  });
}
