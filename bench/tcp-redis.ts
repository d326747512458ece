/**
 * Layer 4 throughput, side by side, with each target's own CPU per operation: redis-benchmark
 * straight at one Redis server, through Switchyard's TCP mode and (when installed) through
 * HAProxy in TCP mode (1 thread), in front of the same server, in one run, with each ratio to
 * the direct run. A target's CPU is the user and system time of its own processes (from /proc;
 * for "direct", redis-server's) during one redis-benchmark test, divided by the operations it
 * completed; each test (SET, GET) is run on its own so that each has its own figure.
 *
 *   bun bench/tcp-redis.ts [--requests 100000] [--clients 50]
 *
 * Needs redis-server and redis-benchmark (apt-get install redis-server redis-tools). Loopback
 * only, ephemeral ports; every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { Processes, costOf, has, haproxy, need, redis, switchyard, type Cost, type Target } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { requests: { type: "string", default: "100000" }, clients: { type: "string", default: "50" } },
});
need("bench/tcp-redis.ts", ["redis-server", "redis-benchmark"], "redis-server redis-tools");
const procs = new Processes();
const TESTS = ["SET", "GET"] as const;

/** One redis-benchmark test against `t`: its requests per second and `t`'s own CPU per operation. */
async function bench(t: Target, test: (typeof TESTS)[number]): Promise<Cost & { rps: number }> {
  const r = await costOf(t.name, t.pids(), async () => {
    const p = Bun.spawn(["redis-benchmark", "-h", "127.0.0.1", "-p", String(t.port), "-q", "-n", values.requests!, "-c", values.clients!, "-t", test.toLowerCase()], { stdout: "pipe" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    // "SET: 52549.66 requests per second, p50=0.487 msec" (the line may hold \r-separated progress)
    const rps = Number(new RegExp(`${test}: ([\\d.]+) requests per second`).exec(out)?.[1] ?? 0);
    return { units: rps > 0 ? Number(values.requests) : 0, result: rps };
  });
  return { ...r, rps: r.result };
}

try {
  const direct = await redis(procs);
  const targets: Target[] = [direct, await switchyard(procs, "switchyard (TCP mode)", { mode: "tcp", backends: [{ url: `127.0.0.1:${direct.port}` }] })];
  if (has("haproxy")) targets.push(await haproxy(procs, "haproxy (TCP mode, 1 thread)", { servers: [`127.0.0.1:${direct.port}`], threads: 1, mode: "tcp" }));
  for (const t of targets.slice(1)) await bench(t, "SET"); // warm-up, discarded
  console.log(`\nredis-benchmark -q -n ${values.requests} -c ${values.clients} -t set, then -t get; ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| test | target | req/s | ratio to direct | own CPU µs/operation (user+system) | whole machine µs/operation | stolen by the host % |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const test of TESTS) {
    let base = 0;
    for (const t of targets) {
      const r = await bench(t, test);
      if (t === direct) base = r.rps;
      console.log(`| ${test} | ${t.name} | ${Math.round(r.rps)} | ${(r.rps / (base || 1)).toFixed(2)} | ${(r.user + r.sys).toFixed(1)} | ${r.machine.toFixed(1)} | ${r.steal.toFixed(1)} |`);
    }
  }
} finally {
  await procs.stop();
}
