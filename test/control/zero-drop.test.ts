/**
 * Zero drop: under load at 64 connections, 20 reloads from file that add, remove and re-weight
 * backends, change the strategy and swap the proxy handler cost no non-2xx response and no
 * socket error.
 *
 * The load is wrk (-t2 -c64) when it is installed, else 64 keep-alive fetch loops in this
 * process; both to loopback only, bounded in time. Checked from both ends: what the client saw
 * (wrk's "Non-2xx or 3xx responses" and "Socket errors" lines, or the loops' own counts), and
 * what the balancer answered (every response 2xx, none of its own error answers).
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.ts";
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";
import type { TrafficStats } from "../../src/stats/traffic.ts";

const RELOADS = 20;
const CONNECTIONS = 64;
const WRK = Bun.which("wrk");

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

interface LoadResult {
  requests: number;
  non2xx: number;
  socketErrors: number;
  rps: number;
  tool: string;
}

/** wrk for `seconds` against `url`: its totals, parsed from its report. */
async function wrkLoad(url: string, seconds: number): Promise<LoadResult> {
  const proc = Bun.spawn([WRK!, "-t2", `-c${CONNECTIONS}`, `-d${seconds}s`, "--timeout", "5s", url], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const requests = /(\d+) requests in/.exec(out);
  if (!requests) throw new Error(`unexpected wrk output:\n${out}\n${err}`);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(requests[1]),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    tool: "wrk -t2 -c64",
  };
}

/** Without wrk: 64 keep-alive fetch loops for `seconds`, counting what they got. */
async function fetchLoad(url: string, seconds: number): Promise<LoadResult> {
  const until = performance.now() + seconds * 1000;
  let requests = 0;
  let non2xx = 0;
  let socketErrors = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) {
        try {
          const res = await fetch(url);
          await res.arrayBuffer();
          requests++;
          if (res.status < 200 || res.status > 299) non2xx++;
        } catch {
          socketErrors++;
        }
      }
    }),
  );
  return { requests, non2xx, socketErrors, rps: requests / seconds, tool: "64 fetch loops" };
}

test(`${RELOADS} reloads under load at ${CONNECTIONS} connections: 0 non-2xx, 0 socket errors`, async () => {
  const file = join(mkdtempSync(join(tmpdir(), "switchyard-zero-drop-")), "switchyard.json");
  let urls: string[] = [];
  const configFor = (i: number) => {
    const [b1, b2, b3, b4] = urls;
    // Four shapes in turn: add b4 and re-weight b2; drop b2 and re-weight b1; drop b1 and bring
    // b2 back; back to the first. The strategy and a proxy setting change too, so that the
    // policy is re-created and the handler swapped under load.
    const backends = [
      [{ name: "b1", url: b1 }, { name: "b2", url: b2 }, { name: "b3", url: b3 }],
      [{ name: "b1", url: b1 }, { name: "b2", url: b2, weight: 3 }, { name: "b3", url: b3 }, { name: "b4", url: b4 }],
      [{ name: "b1", url: b1, weight: 2 }, { name: "b3", url: b3 }, { name: "b4", url: b4 }],
      [{ name: "b2", url: b2 }, { name: "b3", url: b3, weight: 5 }, { name: "b4", url: b4 }],
    ][i % 4];
    return {
      listen: { host: "127.0.0.1", port: 0 },
      admin: false,
      log: { access: false },
      strategy: i % 3 === 0 ? "least-connections" : i % 3 === 1 ? "weighted-round-robin" : "round-robin",
      retry: { attempts: 2 + (i % 2) },
      healthCheck: { path: "/health", interval: "1s", timeout: "500ms" },
      backends,
    };
  };
  const write = (config: unknown) => {
    writeFileSync(`${file}.tmp`, JSON.stringify(config));
    renameSync(`${file}.tmp`, file);
  };
  rig = await startRig(
    4,
    (cluster) => {
      urls = cluster.backends.map((b) => b.url);
      const c = configFor(0);
      writeFileSync(file, JSON.stringify(c));
      return c;
    },
    undefined,
    { load: () => loadConfigFile(file), file },
  );
  const r = rig;
  const seconds = 6;
  const load = (WRK ? wrkLoad : fetchLoad)(`${r.balancer.url}/`, seconds);

  // Spread the reloads over the run, leaving load on both sides of them.
  await Bun.sleep(500);
  const reloadTimes: number[] = [];
  for (let i = 1; i <= RELOADS; i++) {
    write(configFor(i));
    const t = performance.now();
    const report = await r.balancer.reload({ by: "zero-drop test", from: "local" });
    reloadTimes.push(performance.now() - t);
    expect(report.changed).toBe(true);
    await Bun.sleep(200);
  }
  const result = await load;
  expect(r.balancer.control.status().version).toBe(RELOADS + 1);
  expect(r.balancer.pool.backends.map((b) => b.name)).toEqual(configFor(RELOADS).backends!.map((b) => b.name!));

  expectNoDrop(`zero-drop: ${result.tool}, ${seconds}s, ${RELOADS} reloads (each ${Math.round(Math.min(...reloadTimes))}-${Math.round(Math.max(...reloadTimes))}ms)`, result, r.balancer.traffic);
}, 60_000);

/**
 * Nothing dropped, from both ends: what the client saw (no non-2xx, no socket error) and what
 * the balancer answered (every response 2xx, none of its own error answers). wrk closes its
 * connections at the end with requests in flight: those count as 499 (client gone) on the
 * balancer's side, never as an answer a client received.
 */
function expectNoDrop(label: string, result: LoadResult, t: TrafficStats): void {
  const byClass = [0, 0, 0, 0, 0, 0];
  for (const counts of Object.values(t.byMethod)) for (let k = 1; k <= 5; k++) byClass[k]! += counts[k]!;
  const { SY_CLIENT_ABORTED: leftAtTheEnd, ...ownErrors } = t.proxyErrors;
  const other = byClass[1]! + byClass[3]! + byClass[4]! + byClass[5]! - leftAtTheEnd;
  console.log(
    `${label}: ${result.requests} requests, ${Math.round(result.rps)} req/s, ${result.non2xx} non-2xx, ${result.socketErrors} socket errors; ` +
      `balancer: ${byClass[2]} 2xx, ${other} other, ${leftAtTheEnd} abandoned by the client at the end, own errors ${JSON.stringify(ownErrors)}`,
  );
  expect(result.requests).toBeGreaterThan(0);
  expect(result.non2xx).toBe(0);
  expect(result.socketErrors).toBe(0);
  expect(other).toBe(0);
  expect(Object.values(ownErrors).every((n) => n === 0)).toBe(true);
}

test(`${RELOADS} reloads that add and remove routes and pools under load: 0 non-2xx, 0 socket errors`, async () => {
  const file = join(mkdtempSync(join(tmpdir(), "switchyard-zero-drop-routes-")), "switchyard.json");
  let urls: string[] = [];
  // Four shapes in turn, every one with a route that takes "/": one pool; a second pool and a
  // split over both, with a header route before it; the first pool removed (it drains); a new
  // pool under a new route name, the first back with a path route of its own.
  const configFor = (i: number) => {
    const [b1, b2, b3, b4] = urls;
    const shapes = [
      { pools: { p1: { backends: [{ name: "b1", url: b1 }, { name: "b2", url: b2 }] } }, routes: [{ name: "main", pool: "p1" }] },
      {
        pools: { p1: { backends: [{ name: "b1", url: b1 }, { name: "b2", url: b2 }] }, p2: { strategy: "round-robin", backends: [{ name: "b3", url: b3 }, { name: "b4", url: b4 }] } },
        routes: [{ name: "canary", match: { headers: { "x-canary": true } }, pool: "p2" }, { name: "main", split: [{ pool: "p1", weight: 50 }, { pool: "p2", weight: 50 }] }],
      },
      { pools: { p2: { backends: [{ name: "b3", url: b3 }, { name: "b4", url: b4 }] } }, routes: [{ name: "other", pool: "p2" }] },
      {
        pools: { p1: { backends: [{ name: "b1", url: b1 }] }, p3: { backends: [{ name: "b2", url: b2 }, { name: "b4", url: b4 }] } },
        routes: [{ name: "only-x", match: { path: "/x" }, pool: "p1" }, { name: "main", pool: "p3" }],
      },
    ];
    return { ...testEngine(), listen: { host: "127.0.0.1", port: 0 }, admin: false, log: { access: false }, healthCheck: false, ...shapes[i % 4]! };
  };
  const write = (config: unknown) => {
    writeFileSync(`${file}.tmp`, JSON.stringify(config));
    renameSync(`${file}.tmp`, file);
  };
  rig = await startRig(
    4,
    (cluster) => {
      urls = cluster.backends.map((b) => b.url);
      const c = configFor(0);
      writeFileSync(file, JSON.stringify(c));
      // The rig's own `backends` would be a pool "default" beside these: none here.
      return { ...c, backends: undefined };
    },
    undefined,
    { load: () => loadConfigFile(file), file },
  );
  const r = rig;
  const seconds = 6;
  const load = (WRK ? wrkLoad : fetchLoad)(`${r.balancer.url}/`, seconds);
  await Bun.sleep(500);
  for (let i = 1; i <= RELOADS; i++) {
    write(configFor(i));
    const report = await r.balancer.reload({ by: "zero-drop test", from: "local" });
    expect(report.restartNeeded).toEqual([]);
    await Bun.sleep(200);
  }
  const result = await load;
  expect(r.balancer.pools.all.map((p) => p.name).sort()).toEqual(Object.keys(configFor(RELOADS).pools).sort());
  expectNoDrop(`zero-drop (routes and pools): ${result.tool}, ${seconds}s, ${RELOADS} reloads`, result, r.balancer.traffic);
}, 60_000);
