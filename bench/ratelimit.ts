/**
 * What a rate limit costs per request (issue 23, Benchmark), side by side in one run:
 *
 * 1. In this process, the guard alone: ns of CPU per check() of a local limit that never
 *    triggers (rate 999,999,999/s), on one key and on 10,000 keys in turn, against no guard.
 * 2. End to end, Switchyard (socket engine, one process) under wrk, three targets interleaved
 *    round by round against the same sim backend:
 *      - "no limit":    a route without rateLimit;
 *      - "local limit": the same route with a local limit that never triggers;
 *      - "redis limit": the same limit kept in a real redis-server (rateLimit.store.redis).
 *    For each: req/s and Switchyard's own CPU µs per request (user + system from /proc,
 *    harness.ts), median and min-max over the rounds; per round CPU(local) − CPU(none), the
 *    figure the issue targets at most 1 µs; and for Redis, the round trips per request
 *    (EVALSHA and EVAL calls counted by Redis's INFO commandstats, over the requests wrk
 *    completed) and redis-server's own CPU per request.
 *
 *   bun bench/ratelimit.ts [--duration 5] [--rounds 5] [--connections 32] [--max-steal 5]
 *   BENCH_QUICK=1 bun bench/ratelimit.ts     a smoke run: 1 s runs, 1 round
 *
 * Needs wrk and redis-server (apt-get install wrk redis-server). Linux only (/proc), loopback
 * only, ephemeral ports; every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import * as v from "valibot";
import { RouteRateLimitSchema } from "../src/guard/rate-limit-config.ts";
import { LocalRateLimits } from "../src/guard/rate-limit.ts";
import type { GuardRequest } from "../src/guard/guard.ts";
import { Processes, cleanRounds, interleaved, median, need, processCpu, redis, requireKept, setAsideNote, sim, spread, switchyard, wrk, type WrkResult } from "./harness.ts";

const quick = process.env.BENCH_QUICK === "1";
const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: quick ? "1" : "5" },
    rounds: { type: "string", default: quick ? "1" : "5" },
    connections: { type: "string", default: "32" },
    "max-steal": { type: "string", default: "5" },
    iterations: { type: "string", default: quick ? "200000" : "2000000" },
  },
});
const duration = Number(values.duration);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const maxSteal = Number(values["max-steal"]);
const iterations = Number(values.iterations);

// ---------------------------------------------------------------------------------------------
// 1. The guard alone.

const never = v.parse(RouteRateLimitSchema, { rate: "999999999/s" });
const headers = { get: (_: string) => null } as unknown as GuardRequest["headers"];
const requests = Array.from({ length: 10_000 }, (_, i): GuardRequest => ({ method: "GET", target: "/", headers, clientIp: `10.0.${i >> 8}.${i & 255}` }));

function nsPerCheck(check: ((r: GuardRequest) => unknown) | undefined, keys: number): number {
  let sink = 0;
  const start = process.cpuUsage();
  for (let i = 0; i < iterations; i++) {
    const r = requests[i % keys]!;
    if (check === undefined ? r.clientIp === "" : check(r) !== undefined) sink++;
  }
  const used = process.cpuUsage(start);
  if (sink !== 0) throw new Error(`a limit that never triggers refused ${sink}`);
  return ((used.user + used.system) * 1000) / iterations;
}

const micro = new Map<string, number[]>();
for (let round = 0; round < 5; round++) {
  const guard = new LocalRateLimits().guard("bench", never);
  for (const [name, check, keys] of [
    ["no guard", undefined, 1],
    ["local limit, 1 key", (r: GuardRequest) => guard.check(r), 1],
    ["local limit, 10,000 keys", (r: GuardRequest) => guard.check(r), 10_000],
  ] as const) {
    const ns = nsPerCheck(check, keys);
    if (round > 0) (micro.get(name) ?? micro.set(name, []).get(name)!).push(ns);
  }
}
console.log(`\nthe guard alone, ns of CPU per request (${iterations.toLocaleString("en")} iterations, median (min-max) of 4 rounds):`);
for (const [name, xs] of micro) console.log(`  ${name.padEnd(26)} ${spread(xs, 1)}`);

// ---------------------------------------------------------------------------------------------
// 2. End to end.

need("bench/ratelimit.ts", ["wrk", "redis-server", "redis-cli"], "wrk redis-server redis-tools");
const procs = new Processes();
try {
  const { backends } = await sim(procs, { count: 1 });
  const store = await redis(procs);
  const base = { engine: "socket", healthCheck: false, backends: [{ url: `http://${backends[0]}` }] };
  const route = (rateLimit?: unknown) => ({ routes: [{ name: "api", pool: "default", ...(rateLimit ? { rateLimit } : {}) }] });
  const targets = [
    await switchyard(procs, "no limit", { ...base, ...route() }),
    await switchyard(procs, "local limit", { ...base, ...route({ rate: "999999999/s" }) }),
    await switchyard(procs, "redis limit", { ...base, rateLimit: { store: { redis: `redis://127.0.0.1:${store.port}` }, failOpen: false }, ...route({ rate: "999999999/s" }) }),
  ];
  const scriptCalls = (): number => {
    const out = Bun.spawnSync(["redis-cli", "-p", String(store.port), "info", "commandstats"]).stdout.toString();
    return [...out.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  };
  type Run = WrkResult & { roundTrips?: number; redisCpu?: number };
  const run = async (t: (typeof targets)[number]): Promise<Run> => {
    const calls0 = scriptCalls();
    const [ru0, rs0] = processCpu(store.pids());
    const r: Run = await wrk(t, { connections, duration });
    if (t.name === "redis limit") {
      const [ru1, rs1] = processCpu(store.pids());
      r.roundTrips = (scriptCalls() - calls0) / r.requests;
      r.redisCpu = (ru1 - ru0 + rs1 - rs0) / r.requests;
    }
    if (r.errors > 0) throw new Error(`${t.name}: ${r.errors} errors (a limit that never triggers, or a store that did not answer)`);
    return r;
  };
  // Warm up each once (JIT, connections, the script loaded in Redis).
  for (const t of targets) await wrk(t, { connections, duration: 1 });
  const result = await cleanRounds(rounds, maxSteal, interleaved(targets, run));
  requireKept(result, maxSteal);
  console.log(`\nend to end: wrk -c${connections}, ${duration} s runs, ${result.kept.length / targets.length} round(s); median (min-max):`);
  for (const t of targets) {
    const rs = result.kept.filter((r) => r.name === t.name);
    let line = `  ${t.name.padEnd(12)} ${spread(rs.map((r) => r.rps), 0)} req/s, CPU ${spread(rs.map((r) => r.user + r.sys), 2)} µs/request, p99 ${rs.map((r) => r.p99).join(" ")}`;
    if (t.name === "redis limit") line += `; ${spread(rs.map((r) => r.roundTrips!), 3)} Redis round trips/request, redis-server CPU ${spread(rs.map((r) => r.redisCpu!), 2)} µs/request`;
    console.log(line);
  }
  const deltas: number[] = [];
  for (let i = 0; i < result.kept.length / targets.length; i++) {
    const of = (name: string) => result.kept.find((r) => r.round === i && r.name === name)!;
    deltas.push(of("local limit").user + of("local limit").sys - (of("no limit").user + of("no limit").sys));
  }
  console.log(`  CPU(local limit) − CPU(no limit): ${spread(deltas, 2)} µs/request per round (target: at most 1 µs); median ${median(deltas).toFixed(2)}`);
  console.log(`  ${setAsideNote(result, maxSteal)}`);
} finally {
  await procs.stop();
}
