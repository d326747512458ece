/**
 * `workers` with several pools and listeners: two worker processes serve two HTTP listeners and
 * a TCP one, each on the port the owner claimed for it, routing by host to pools whose backends
 * share names (backend names are unique per pool only). Traffic, drains, passive ejections and
 * per-route figures must each land on the right pool's backend; a reload that adds and removes
 * a pool reaches every worker.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { connect } from "node:tls";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { startCluster, type SimCluster } from "../../sim/cluster.ts";
import type { SimBackend } from "../../sim/backend.ts";
import { waitFor } from "../helpers/wait.ts";
import { makePki, type Pki } from "../helpers/pki.ts";
import { listeningSockets, load, supervisorOf } from "./helpers.ts";

let running: { balancer: Balancer; cluster: SimCluster } | undefined;
afterEach(async () => {
  await running?.balancer.stop(false);
  await running?.cluster.stop();
  running = undefined;
});

const actor = { by: "test", from: "local" };
const LOCAL = "127.0.0.1";

/**
 * Sims 1-2 are pool api's `one` and `two`, sims 3-4 pool web's `one` and `two`, sim 5 the TCP
 * listener's pool. Listener `public` serves the api and web routes by host; listener
 * `internal` serves only the route `internal`, to pool web.
 */
function config(engine: "socket" | "fetch", c: SimCluster, extra: { pools?: Record<string, unknown>; routes?: unknown[] } = {}): Record<string, unknown> {
  const [s1, s2, s3, s4, s5] = c.backends as SimBackend[];
  const passive = { consecutiveFailures: 3, baseEjectionTime: "60s", maxEjectedPercent: 50 };
  return {
    engine, workers: 2, admin: false, healthCheck: false, log: { access: false },
    // 5xx answers reach the client as they are: each is one passive failure, seen once.
    retry: { onStatus: [] },
    listeners: [
      { name: "public", host: LOCAL, port: 0, routes: ["api", "web", ...(extra.routes ?? []).map((r) => (r as { name: string }).name)] },
      { name: "internal", host: LOCAL, port: 0, routes: ["internal"] },
      { name: "raw", host: LOCAL, port: 0, mode: "tcp", pool: "raw" },
    ],
    pools: {
      api: { strategy: "round-robin", passive, backends: [{ name: "one", url: s1!.url }, { name: "two", url: s2!.url }] },
      web: { strategy: "least-connections", passive, backends: [{ name: "one", url: s3!.url }, { name: "two", url: s4!.url }] },
      raw: { backends: [{ name: "one", url: `tcp://${LOCAL}:${s5!.port}` }] },
      ...extra.pools,
    },
    routes: [
      { name: "api", match: { host: "api.test" }, pool: "api" },
      { name: "web", match: { host: "web.test" }, pool: "web" },
      { name: "internal", match: {}, pool: "web" },
      ...(extra.routes ?? []),
    ],
  };
}

async function start(engine: "socket" | "fetch", sims = 5, load?: (c: SimCluster) => Promise<Record<string, unknown>>) {
  const cluster = await startCluster({ count: sims, basePort: 0 });
  try {
    const balancer = await startBalancer(validateConfig(config(engine, cluster)), {
      env: {}, logger: memoryLogger(), ...(load ? { load: async () => validateConfig(await load(cluster)) } : {}),
    });
    running = { balancer, cluster };
    return running;
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

const requestsOf = (c: SimCluster) => c.backends.map((b) => b.requests);

describe("workers with several pools and listeners", () => {
  for (const engine of ["socket", "fetch"] as const) {
    test(`${engine} engine: two HTTP listeners and a TCP one, routes by host; traffic, drain, ejection and route figures land on the right pool`, async () => {
      const { balancer, cluster } = await start(engine);
      const sup = supervisorOf(balancer);
      const [s1, s2, s3, s4, s5] = cluster.backends as SimBackend[];
      const urls = balancer.urls;
      expect(Object.keys(urls)).toEqual(["public", "internal", "raw"]);
      // Three ports, each bound by both workers.
      expect(new Set(Object.values(urls).map((u) => new URL(u).port)).size).toBe(3);
      expect(urls.raw).toStartWith("tcp://");
      const api = balancer.pools.get("api")!.pool;
      const web = balancer.pools.get("web")!.pool;

      // Each on a new connection, so the kernel spreads them over both workers.
      const n = 40;
      const viaApi = await load(urls.public!, n, 4, { fresh: true, headers: { host: "api.test" } });
      const viaWeb = await load(urls.public!, n, 4, { fresh: true, headers: { host: "web.test" } });
      const viaInternal = await load(urls.internal!, n, 4, { fresh: true, headers: { host: "api.test" } });
      const viaTcp = await load(urls.raw!.replace(/^tcp:/, "http:"), 20, 4, { fresh: true });
      for (const r of [viaApi, viaWeb, viaInternal, viaTcp]) expect(r.failed).toBe(0);
      // api's backends took the api route's requests, web's the web and internal routes', the raw pool the TCP ones.
      expect(s1!.requests + s2!.requests).toBe(n);
      expect(s1!.requests).toBeGreaterThan(0);
      expect(s2!.requests).toBeGreaterThan(0);
      expect(s3!.requests + s4!.requests).toBe(2 * n);
      expect(s3!.requests).toBeGreaterThan(0);
      expect(s4!.requests).toBeGreaterThan(0);
      expect(s5!.requests).toBe(20);
      // A host the public listener has no route for.
      const none = await fetch(urls.public! + "/", { headers: { host: "other.test" } });
      expect(none.status).toBe(404);
      expect(((await none.json()) as { error: string }).error).toBe("SY_NO_ROUTE");

      await sup.pull();
      for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
      // Summed into the owner: each backend of each pool (same names, different pools), each route, the totals.
      expect(api.get("one")!.stats.requests).toBe(s1!.requests);
      expect(api.get("two")!.stats.requests).toBe(s2!.requests);
      expect(web.get("one")!.stats.requests).toBe(s3!.requests);
      expect(web.get("two")!.stats.requests).toBe(s4!.requests);
      expect(balancer.routes.of("api").requests).toBe(n);
      expect(balancer.routes.of("web").requests).toBe(n);
      expect(balancer.routes.of("internal").requests).toBe(n);
      expect(balancer.routes.of("internal").byMethod.GET![2]).toBe(n);
      expect(balancer.traffic.requests).toBe(3 * n + 1);
      await waitFor(() => balancer.tcpStats!.accepted === 20, "the TCP listener's connections summed");
      expect(balancer.pools.get("raw")!.pool.get("one")!.acquired).toBe(20);

      // Draining api/one reaches every worker; web's `one` is another backend and keeps serving.
      await balancer.control.drain("api/one", actor);
      expect(api.get("one")!.state()).toBe("draining");
      expect(web.get("one")!.state()).toBe("up");
      expect(await sup.synced()).toBe(true);
      let before = requestsOf(cluster);
      expect((await load(urls.public!, n, 4, { fresh: true, headers: { host: "api.test" } })).ok).toBe(n);
      expect((await load(urls.public!, n, 4, { fresh: true, headers: { host: "web.test" } })).ok).toBe(n);
      let after = requestsOf(cluster);
      expect(after[0]).toBe(before[0]!);
      expect(after[1]! - before[1]!).toBe(n);
      expect(after[2]!).toBeGreaterThan(before[2]!);

      // web/two answers 500 from now on: three failures, seen by either worker, eject it, and
      // only it: api's `two` stays up. First every worker tells its runs of good answers so far
      // (a pull flushes them), so that none arrives after a failure and starts the count again.
      await sup.pull();
      s4!.setFailRate(1);
      const bad = web.get("two")!;
      let failures = 0;
      while (bad.state() !== "ejected") {
        const res = await fetch(urls.public! + "/", { headers: { host: "web.test", connection: "close" }, keepalive: false });
        await res.arrayBuffer();
        if (res.status === 500) {
          failures++;
          expect(failures).toBeLessThanOrEqual(3);
          if (failures < 3) await waitFor(() => bad.consecutiveFailures === failures, `the owner to count failure ${failures} of web/two once`);
          else await waitFor(() => bad.state() === "ejected", `web/two ejected (${bad.consecutiveFailures} failures counted, state ${bad.state()})`);
        }
      }
      expect(bad.ejectionCount).toBe(1);
      expect(api.get("two")!.state()).toBe("up");
      expect(api.get("two")!.ejectionCount).toBe(0);
      expect(await sup.synced()).toBe(true);
      before = requestsOf(cluster);
      expect((await load(urls.public!, 20, 4, { fresh: true, headers: { host: "web.test" } })).ok).toBe(20);
      after = requestsOf(cluster);
      expect(after[3]).toBe(before[3]!);
      expect(after[2]! - before[2]!).toBe(20);
    });
  }

  test("a reload that adds a pool and a route, then removes them, reaches every worker", async () => {
    let withCanary = true;
    const { balancer, cluster } = await start("socket", 6, async (c) =>
      withCanary
        ? config("socket", c, {
          pools: { canary: { backends: [{ name: "one", url: c.backends[5]!.url }] } },
          routes: [{ name: "canary", match: { host: "canary.test" }, pool: "canary" }],
        })
        : config("socket", c),
    );
    const sup = supervisorOf(balancer);
    const canarySim = cluster.backends[5]!;
    const url = balancer.urls.public!;
    // Not routed yet.
    expect((await fetch(url + "/", { headers: { host: "canary.test" } })).status).toBe(404);

    const added = await balancer.reload();
    expect(added.lines).toContain("pool canary: added");
    expect(added.restartNeeded).toEqual([]);
    expect(await sup.synced()).toBe(true);
    const res = await load(url, 40, 4, { fresh: true, headers: { host: "canary.test" } });
    expect(res.ok).toBe(40);
    expect(canarySim.requests).toBe(40);
    await sup.pull();
    for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
    expect(balancer.pools.get("canary")!.pool.get("one")!.stats.requests).toBe(40);
    expect(balancer.routes.of("canary").requests).toBe(40);

    withCanary = false;
    const removed = await balancer.reload();
    expect(removed.lines.some((l) => l.startsWith("pool canary: removed"))).toBe(true);
    expect(await sup.synced()).toBe(true);
    const gone = await load(url, 20, 4, { fresh: true, headers: { host: "canary.test" } });
    expect(gone.statuses.get(404)).toBe(20);
    expect(canarySim.requests).toBe(40);
    expect(balancer.pools.get("canary")).toBeUndefined();
    // The other pools serve on.
    expect((await load(url, 20, 4, { fresh: true, headers: { host: "api.test" } })).ok).toBe(20);
  });

  test("a reload adds, moves and removes listeners in every worker, on ports the owner claims", async () => {
    let edited = false;
    const freePort = (() => {
      const probe = Bun.listen({ hostname: LOCAL, port: 0, socket: { data() {} } });
      const port = probe.port;
      probe.stop(true);
      return port;
    })();
    const { balancer } = await start("socket", 5, async (c) => {
      const base = config("socket", c);
      if (!edited) return base;
      const [pub, internal] = base.listeners as Record<string, unknown>[];
      // internal moves to a port of its own choosing, raw goes, extra comes (port 0: the owner picks one for all).
      const { raw: _, ...pools } = base.pools as Record<string, unknown>;
      return { ...base, pools, listeners: [pub, { ...internal, port: freePort }, { name: "extra", host: LOCAL, port: 0, routes: ["web"] }] };
    });
    const sup = supervisorOf(balancer);
    const old = balancer.urls;
    edited = true;
    const report = await balancer.reload();
    expect(report.restartNeeded).toEqual([]);
    expect(report.lines).toContain(`listener internal: moved to http://${LOCAL}:${freePort}`);
    expect(report.lines.some((l) => /^listener extra: added on http:\/\/127\.0\.0\.1:\d+$/.test(l))).toBe(true);
    expect(report.lines).toContain("listener raw: removed (its connections finish)");
    const urls = balancer.urls;
    expect(Object.keys(urls)).toEqual(["public", "internal", "extra"]);
    expect(urls.public).toBe(old.public!);
    expect(urls.internal).toBe(`http://${LOCAL}:${freePort}`);
    expect(balancer.ports["proxy:raw"]).toBeUndefined();

    // Both workers serve the moved and the added listener.
    for (const [url, host] of [[urls.internal!, "api.test"], [urls.extra!, "web.test"], [urls.public!, "api.test"]] as const) {
      const res = await load(url, 40, 4, { fresh: true, headers: { host } });
      expect(res.ok).toBe(40);
    }
    await sup.pull();
    for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
    // The old ports close once what they held has finished (nothing here).
    const refused = async (url: string) => {
      try {
        const res = await fetch(url + "/", { headers: { host: "api.test", connection: "close" }, keepalive: false });
        await res.arrayBuffer();
        return false;
      } catch {
        return true;
      }
    };
    await waitFor(() => refused(old.internal!), "the old internal port closed in every worker");
    await waitFor(() => refused(old.raw!.replace(/^tcp:/, "http:")), "the raw listener closed in every worker");
  });

  test("fetch engine: a new body limit, which Bun.serve takes only when it listens, binds every worker's listener anew on the same port", async () => {
    let limit = "128MB";
    const { balancer } = await start("fetch", 5, async (c) => ({ ...config("fetch", c), limits: { maxBodySize: limit } }));
    const sup = supervisorOf(balancer);
    const before = balancer.urls;
    const post = (url: string) => fetch(url + "/", { method: "POST", body: "x".repeat(4096), headers: { host: "api.test", connection: "close" }, keepalive: false });
    const big = await post(before.public!);
    expect(big.status).toBe(200);
    await big.arrayBuffer();
    limit = "1KB";
    const report = await balancer.reload();
    expect(report.restartNeeded).toEqual([]);
    expect(report.lines).toContain(`listener public: bound anew on ${before.public}`);
    expect(balancer.urls).toEqual(before);
    // Each worker's old socket answers on through its drain notice (listener/http.ts
    // DRAIN_NOTICE_MS), then closes: one socket per worker is left on the port, the new one.
    const port = Number(new URL(before.public!).port);
    await waitFor(() => listeningSockets(port) === 2, "every worker's old listener to close", 10_000);
    // Every worker refuses the body now (fresh connections land on either).
    const statuses = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const res = await post(before.public!);
      await res.arrayBuffer();
      statuses.add(res.status);
    }
    expect([...statuses]).toEqual([413]);
    // (Bun.serve itself refuses the body, before the proxy counts a request: the workers' figures cannot tell who answered.)
    expect(sup.figures().list.map((w) => w.state)).toEqual(["serving", "serving"]);
  });

  test("a reload that moves a listener to a port in use is refused before anything changes", async () => {
    const taken = Bun.listen({ hostname: LOCAL, port: 0, socket: { data() {} } });
    try {
      let move = false;
      const { balancer, cluster } = await start("socket", 5, async (c) => {
        const base = config("socket", c);
        if (!move) return base;
        const [pub, internal, raw] = base.listeners as Record<string, unknown>[];
        // A new pool too: it must not appear when the listener's port is refused.
        return {
          ...base, listeners: [pub, { ...internal, port: taken.port }, raw],
          pools: { ...(base.pools as object), spare: { backends: [{ url: c.backends[0]!.url }] } },
        };
      });
      const sup = supervisorOf(balancer);
      const before = { urls: balancer.urls, ports: { ...balancer.ports } };
      move = true;
      const err = (await balancer.reload().catch((e: unknown) => e)) as { code?: string; message: string };
      expect(err.code).toBe("SY_LISTEN_FAILED");
      expect(err.message).toContain("address already in use");
      expect(balancer.urls).toEqual(before.urls);
      expect({ ...balancer.ports }).toEqual(before.ports);
      expect(balancer.pools.get("spare")).toBeUndefined();
      // Every worker serves on as before.
      expect((await load(before.urls.internal!, 20, 4, { fresh: true, headers: { host: "x.test" } })).ok).toBe(20);
      await sup.pull();
      for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
      expect(cluster.backends[2]!.requests + cluster.backends[3]!.requests).toBe(20);
      // The same config without the move applies.
      move = false;
      expect((await balancer.reload()).restartNeeded).toEqual([]);
    } finally {
      taken.stop(true);
    }
  });

  for (const engine of ["socket", "fetch"] as const) {
    test(`${engine} engine: two TLS listeners, each with its certificate, route by host in every worker`, async () => {
      const pki: Pki = await makePki();
      try {
        const a = await pki.issue("a", ["a.test", "IP:127.0.0.1"]);
        const b = await pki.issue("b", ["b.test", "IP:127.0.0.1"]);
        const cluster = await startCluster({ count: 4, basePort: 0 });
        const [s1, s2, s3, s4] = cluster.backends as SimBackend[];
        const balancer = await startBalancer(validateConfig({
          engine, workers: 2, admin: false, healthCheck: false, log: { access: false },
          listeners: [
            { name: "tls-a", host: LOCAL, port: 0, tls: { cert: a.cert, key: a.key } },
            { name: "tls-b", host: LOCAL, port: 0, tls: { cert: b.cert, key: b.key } },
          ],
          pools: {
            api: { backends: [{ name: "one", url: s1!.url }, { name: "two", url: s2!.url }] },
            web: { backends: [{ name: "one", url: s3!.url }, { name: "two", url: s4!.url }] },
          },
          routes: [
            { name: "api", match: { host: "api.test" }, pool: "api" },
            { name: "web", match: { host: "web.test" }, pool: "web" },
          ],
        }), { env: {}, logger: memoryLogger() });
        running = { balancer, cluster };
        const sup = supervisorOf(balancer);
        const ca = await Bun.file(pki.ca).text();
        /** `n` GETs over TLS, each on a new connection; the certificate the listener presents must verify. */
        const get = async (url: string, host: string, n: number) => {
          const seen: string[] = [];
          for (let i = 0; i < n; i++) {
            const res = await fetch(url + "/", { headers: { host, connection: "close" }, keepalive: false, tls: { ca } } as RequestInit);
            expect(res.status).toBe(200);
            seen.push((await res.text()).trim());
          }
          return seen;
        };
        /** The subject of the certificate a listener presents, as a TLS client verifying it sees it. */
        const presented = (url: string) =>
          new Promise<string>((resolve, reject) => {
            const sock = connect({ host: LOCAL, port: Number(new URL(url).port), ca }, () => {
              resolve(String(sock.getPeerCertificate().subject?.CN));
              sock.end();
            });
            sock.on("error", reject);
          });
        expect(balancer.urls["tls-a"]).toStartWith("https://");
        for (let i = 0; i < 4; i++) {
          expect(await presented(balancer.urls["tls-a"]!)).toBe("a.test");
          expect(await presented(balancer.urls["tls-b"]!)).toBe("b.test");
        }
        const fromA = await get(balancer.urls["tls-a"]!, "api.test", 20);
        const fromB = await get(balancer.urls["tls-b"]!, "web.test", 20);
        expect(new Set(fromA)).toEqual(new Set([s1!.name, s2!.name]));
        expect(new Set(fromB)).toEqual(new Set([s3!.name, s4!.name]));
        await sup.pull();
        for (const w of sup.figures().list) expect(w.requests).toBeGreaterThan(0);
        expect(balancer.routes.of("api").requests).toBe(20);
        expect(balancer.routes.of("web").requests).toBe(20);
      } finally {
        await pki.remove();
      }
      // openssl makes the keys first: headroom on a loaded machine.
    }, 20_000);
  }
});
