/**
 * What a large route table costs per request, end to end: Switchyard (socket engine, one
 * process) with one route against the same Switchyard with 1,000 routes (500 exact hosts, then
 * 500 path prefixes), side by side in one run, and nginx (1 worker) given the same 1,000
 * `server` / `location` blocks against nginx with one, as a reference. The 1,000 routes all
 * send to the one pool the single route sends to, so what differs is the routing alone.
 *
 * Each target gets three requests, each in its own wrk run:
 *   - "first host":  Host h0.example.com, GET /           (route 1 of 1,000)
 *   - "last host":   Host h499.example.com, GET /         (route 500: the last host route)
 *   - "last prefix": Host 127.0.0.1:PORT, GET /bytes/499  (route 1,000: no host route holds, the last prefix does)
 * The prefixes are /bytes/0 ... /bytes/499 because the sim answers /bytes/N with 200 and N
 * bytes: every route is a path the backend serves. The one-route targets get the same three
 * requests, so the backends and wrk do the same work behind both and the difference is the
 * proxy's. A third Switchyard target, one route matching `path: /`, reads the path as the
 * 1,000-route table does: against it, the difference is the index alone, without path and host
 * normalization (a table none of whose routes reads the path or host skips both).
 *
 * Targets and requests are interleaved within each round and the rounds repeated; for each
 * request the report gives each target's req/s and own CPU µs per request (user + system of its
 * processes from /proc, divided by the requests wrk completed: harness.ts), median and min-max
 * over the rounds, and per round the two figures issue 22 sets targets for, then their median:
 *   throughput(1,000 routes) ÷ throughput(1 route)   (target: at least 0.95)
 *   CPU(1,000 routes) − CPU(1 route), µs per request  (target: at most 1 µs)
 * A round in which a virtual machine's host took more than --max-steal % of the CPU during any
 * run is set aside and another run in its place, up to --rounds more (harness.ts, cleanRounds).
 *
 *   bun bench/routing.ts [--duration 5] [--rounds 5] [--connections 64] [--max-steal 5]
 *   BENCH_QUICK=1 bun bench/routing.ts      a smoke run: 1 s runs, 2 rounds (about a minute)
 *
 * Needs wrk; nginx is used when installed (apt-get install wrk nginx). Linux only (/proc),
 * loopback only, ephemeral ports, bounded in time, and every process it starts is stopped by
 * PID at the end.
 */
import { parseArgs } from "node:util";
import {
  Processes, cleanRounds, freePort, has, interleaved, median, need, nginxProxyPass, nginxWith, requireKept, setAsideNote, sim, spread, switchyard, wrk, type Target, type WrkResult,
} from "./harness.ts";

const quick = process.env.BENCH_QUICK === "1";
const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: quick ? "1" : "5" },
    rounds: { type: "string", default: quick ? "2" : "5" },
    connections: { type: "string", default: "64" },
    "max-steal": { type: "string", default: "5" },
  },
});
need("bench/routing.ts", ["wrk"], "wrk");

const HOSTS = 500;
const PREFIXES = 500;
const host = (i: number) => `h${i}.example.com`;
const prefix = (i: number) => `/bytes/${i}`;

/** The three requests: where each lands in the 1,000-route table. */
const REQUESTS = [
  { kind: "first host", path: "/", headers: { Host: host(0) } as Record<string, string> },
  { kind: "last host", path: "/", headers: { Host: host(HOSTS - 1) } },
  // wrk's own Host (127.0.0.1:PORT) is no route's host: the host index finds nothing and the prefix trie does.
  { kind: "last prefix", path: prefix(PREFIXES - 1), headers: {} },
] as const;

const SY_ONE = "switchyard, 1 route";
const SY_ONE_PATH = "switchyard, 1 route on path /";
const SY_MANY = "switchyard, 1,000 routes";
const NGINX_ONE = "nginx, 1 server";
const NGINX_MANY = "nginx, 1,000 server/location blocks";

const procs = new Processes();
try {
  const { backends } = await sim(procs);
  const pool = { strategy: "least-connections", backends: backends.map((b) => ({ url: `http://${b}` })) };
  const common = { engine: "socket", listeners: [{ name: "web", host: "127.0.0.1", port: 0 }], pools: { app: pool } };
  const many = [
    ...Array.from({ length: HOSTS }, (_, i) => ({ name: `host-${i}`, match: { host: host(i) }, pool: "app" })),
    ...Array.from({ length: PREFIXES }, (_, i) => ({ name: `prefix-${i}`, match: { path: prefix(i) }, pool: "app" })),
  ];
  const targets: Target[] = [
    await switchyard(procs, SY_ONE, { ...common, routes: [{ name: "all", pool: "app" }] }),
    await switchyard(procs, SY_ONE_PATH, { ...common, routes: [{ name: "all", match: { path: "/" }, pool: "app" }] }),
    await switchyard(procs, SY_MANY, { ...common, routes: many }),
  ];
  // The pairs compared: the 1,000-route target against its one-route reference.
  const pairs: [many: string, one: string][] = [[SY_MANY, SY_ONE], [SY_MANY, SY_ONE_PATH]];

  if (has("nginx")) {
    const upstream = `upstream app { least_conn; ${backends.map((b) => `server ${b};`).join(" ")} keepalive 64; }`;
    // Switchyard's fields: the backends then read the same bytes behind either proxy.
    const pass = nginxProxyPass("app", "switchyard");
    const onePort = freePort();
    const one = await nginxWith(procs, `
  ${upstream}
  server { listen 127.0.0.1:${onePort}; location / { ${pass} } }`, [onePort]);
    // As the Switchyard table: 500 server blocks by name, and the default server with 500
    // prefix locations (no catch-all: a request no block takes is nginx's 404, as SY_NO_ROUTE).
    const manyPort = freePort();
    const servers = Array.from({ length: HOSTS }, (_, i) => `
  server { listen 127.0.0.1:${manyPort}; server_name ${host(i)}; location / { ${pass} } }`).join("");
    const locations = Array.from({ length: PREFIXES }, (_, i) => `
    location ${prefix(i)} { ${pass} }`).join("");
    const manyNginx = await nginxWith(procs, `
  server_names_hash_max_size 2048; server_names_hash_bucket_size 64;
  ${upstream}
  server { listen 127.0.0.1:${manyPort} default_server; server_name _;${locations}
  }${servers}`, [manyPort]);
    targets.push({ name: NGINX_ONE, port: onePort, pids: one.pids }, { name: NGINX_MANY, port: manyPort, pids: manyNginx.pids });
    pairs.push([NGINX_MANY, NGINX_ONE]);
  }

  type Run = { name: string; target: Target; request: (typeof REQUESTS)[number] };
  const runs: Run[] = targets.flatMap((target) => REQUESTS.map((request) => ({ name: `${target.name} | ${request.kind}`, target, request })));
  const measure = async (r: Run): Promise<WrkResult & { kind: string; targetName: string }> => {
    const w = await wrk(r.target, { connections: Number(values.connections), duration: values.duration!, path: r.request.path, headers: r.request.headers });
    return { ...w, kind: r.request.kind, targetName: r.target.name };
  };

  // A warm-up run of each, discarded, so that JITs, pools and keep-alive connections are warm.
  for (const r of runs) await measure(r);
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, interleaved(runs, measure));
  requireKept(clean, maxSteal);
  const results = clean.kept;
  const of = (target: string, kind: string) => results.filter((r) => r.targetName === target && r.kind === kind);

  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, ${results.length / runs.length} interleaved rounds kept of the ${rounds} asked, 3 sim backends (least connections), socket engine, nginx 1 worker, ${navigator.hardwareConcurrency} cores shared by all; ${new Date().toISOString()}\n`);
  console.log("| request | target | req/s | own CPU µs/request (user+system) | p99 ms | errors |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const { kind } of REQUESTS) {
    for (const t of targets) {
      const mine = of(t.name, kind);
      console.log(`| ${kind} | ${t.name} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(mine.map((r) => r.user + r.sys), 2)} | ${spread(mine.map((r) => r.p99Ms), 2)} | ${mine.reduce((n, r) => n + r.errors, 0)} |`);
    }
  }

  console.log("\nPer round, then median (min-max) over the rounds; issue 22's targets: throughput at least 0.95× the one-route figure, at most 1 µs more CPU per request.\n");
  console.log("| request | 1,000 routes | against | throughput ratio | CPU Δ µs/request | targets met (medians) |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const { kind } of REQUESTS) {
    for (const [manyName, oneName] of pairs) {
      const ratios: number[] = [];
      const deltas: number[] = [];
      for (const m of of(manyName, kind)) {
        const o = results.find((r) => r.targetName === oneName && r.kind === kind && r.round === m.round);
        if (o === undefined || o.rps === 0) continue;
        ratios.push(m.rps / o.rps);
        deltas.push(m.user + m.sys - (o.user + o.sys));
      }
      const met = ratios.length === 0 ? "-" : `${median(ratios) >= 0.95 ? "yes" : "no"} / ${median(deltas) <= 1 ? "yes" : "no"}`;
      console.log(`| ${kind} | ${manyName} | ${oneName} | ${spread(ratios, 3)} | ${spread(deltas, 2)} | ${met} |`);
    }
  }
  console.log(`\n${setAsideNote(clean, maxSteal)}`);
} finally {
  await procs.stop();
}
