/**
 * Layer 4 throughput, side by side: redis-benchmark straight at one Redis server, through
 * Switchyard's TCP mode and (when installed) through HAProxy in TCP mode, in front of the same
 * server, in one run, with each ratio to the direct run.
 *
 *   bun bench/tcp-redis.ts [--requests 100000] [--clients 50]
 *
 * Needs redis-server and redis-benchmark (apt-get install redis-server redis-tools). Loopback
 * only; every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { requests: { type: "string", default: "100000" }, clients: { type: "string", default: "50" } },
});
for (const cmd of ["redis-server", "redis-benchmark"]) {
  if (!Bun.which(cmd)) {
    console.error(`bench/tcp-redis.ts needs ${cmd}: apt-get install redis-server redis-tools`);
    process.exit(2);
  }
}
const root = join(import.meta.dir, "..");
const REDIS = 18379;
const PROXY = 18380;
const HAPROXY = 18381;
const hasHaproxy = Bun.which("haproxy", { PATH: `${process.env.PATH}:/usr/sbin` }) !== null;
const procs: Subprocess[] = [];

async function waitPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, open(s) { s.end(); } } }).then(() => true, () => false);
    if (ok) return;
    await Bun.sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

async function bench(port: number): Promise<Record<string, number>> {
  const p = Bun.spawn(["redis-benchmark", "-h", "127.0.0.1", "-p", String(port), "-q", "-n", values.requests!, "-c", values.clients!, "-t", "set,get"], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const result: Record<string, number> = {};
  // "SET: 52549.66 requests per second, p50=0.487 msec" (the line may hold \r-separated progress)
  for (const m of out.matchAll(/(SET|GET): ([\d.]+) requests per second/g)) result[m[1]!] = Number(m[2]);
  return result;
}

try {
  procs.push(Bun.spawn(["redis-server", "--port", String(REDIS), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdout: "ignore" }));
  await waitPort(REDIS);
  procs.push(Bun.spawn([process.execPath, "src/cli.ts", "serve", "--mode", "tcp", "--host", "127.0.0.1", "--port", String(PROXY), "--backend", `127.0.0.1:${REDIS}`, "--no-admin"], { cwd: root, stdout: "ignore" }));
  await waitPort(PROXY);
  if (hasHaproxy) {
    const cfg = join(mkdtempSync(join(tmpdir(), "switchyard-bench-")), "haproxy.cfg");
    writeFileSync(cfg, `global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nlisten redis\n  bind 127.0.0.1:${HAPROXY}\n  server r1 127.0.0.1:${REDIS}\n`);
    procs.push(Bun.spawn(["haproxy", "-f", cfg], { stdout: "ignore" }));
    await waitPort(HAPROXY);
  }
  await bench(PROXY); // warm-up, discarded
  const direct = await bench(REDIS);
  const proxied = await bench(PROXY);
  const haproxy = hasHaproxy ? await bench(HAPROXY) : undefined;
  const ratio = (x: number | undefined, d: number | undefined) => ((x ?? 0) / (d || 1)).toFixed(2);
  console.log(`\nredis-benchmark -q -n ${values.requests} -c ${values.clients} -t set,get\n`);
  console.log("| test | direct req/s | Switchyard TCP req/s | ratio | HAProxy TCP (1 thread) req/s | ratio |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const t of ["SET", "GET"]) {
    const h = haproxy ? `${Math.round(haproxy[t] ?? 0)} | ${ratio(haproxy[t], direct[t])}` : "- | -";
    console.log(`| ${t} | ${Math.round(direct[t] ?? 0)} | ${Math.round(proxied[t] ?? 0)} | ${ratio(proxied[t], direct[t])} | ${h} |`);
  }
} finally {
  for (const p of procs) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
}
