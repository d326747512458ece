/**
 * CPU per request of each proxy process alone, side by side under the same wrk load: user and
 * system time (from /proc/PID/stat, the proxy's process only, not wrk's or the backends')
 * divided by the requests wrk completed. Where throughput ratios say how far a proxy is from
 * another, this says where its time goes. Targets: Switchyard's socket engine, its TCP mode
 * relaying the same HTTP traffic (the cost of moving the bytes alone), the bare forwarder
 * (bench/bare-forwarder.ts: the least a Bun.listen/Bun.connect HTTP forwarder does), and nginx
 * with 2 workers (its master and workers summed). Interleaved, rounds repeated; the report
 * gives each target's median and min-max.
 *
 *   bun bench/cpu.ts [--duration 4] [--rounds 3] [--connections 64]
 *
 * Linux only (/proc); needs wrk, nginx when installed. Loopback only, bounded in time, and
 * every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Processes, has, median, nginxConfig, processCpu as cpu, waitUp } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "64" },
  },
});
if (!has("wrk")) {
  console.error("bench/cpu.ts needs wrk: apt-get install wrk");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "switchyard-cpu-"));
const procs = new Processes();
const BASE = 18201;
const backends = [0, 1, 2].map((i) => `127.0.0.1:${BASE + i}`);

/** nginx's master and its workers. */
function nginxPids(master: number): number[] {
  const kids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === master) kids.push(Number(d));
    } catch {}
  }
  return [master, ...kids];
}

interface Target { name: string; port: number; pids: () => number[] }
const results: { name: string; rps: number; user: number; sys: number }[] = [];

try {
  procs.spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BASE)]);
  await waitUp(BASE);
  const targets: Target[] = [];
  const serve = (name: string, port: number, config: object) => {
    const file = join(dir, `${port}.json`);
    writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port }, admin: false, log: { access: false }, healthCheck: { type: "tcp", interval: "2s" }, ...config }));
    const p = procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", file]);
    targets.push({ name, port, pids: () => [p.pid] });
  };
  serve("switchyard (socket engine)", 18300, { engine: "socket", backends: backends.map((b) => ({ url: `http://${b}` })) });
  serve("switchyard (TCP mode)", 18301, { mode: "tcp", backends: backends.map((b) => ({ url: b })) });
  const bare = procs.spawn([process.execPath, "bench/bare-forwarder.ts", "18302", ...backends.map((b) => `http://${b}`)]);
  targets.push({ name: "bare forwarder", port: 18302, pids: () => [bare.pid] });
  if (has("nginx")) {
    writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, [{ port: 18303, balance: "least_conn;", servers: backends }], { workers: 2 }));
    const ng = procs.spawn(["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]);
    targets.push({ name: "nginx (2 workers)", port: 18303, pids: () => nginxPids(ng.pid) });
  }
  for (const t of targets) await waitUp(t.port);

  const run = async (t: Target) => {
    const pids = t.pids();
    const [u0, s0] = cpu(pids);
    const p = Bun.spawn(["wrk", "-t1", `-c${values.connections}`, `-d${values.duration}s`, `http://127.0.0.1:${t.port}/`], { stdout: "pipe" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    const [u1, s1] = cpu(pids);
    const n = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    return { name: t.name, rps: n / Number(values.duration), user: (u1 - u0) / n, sys: (s1 - s0) / n };
  };
  for (const t of targets) await run(t); // warm-up, discarded
  const rounds = Number(values.rounds);
  for (let r = 0; r < rounds; r++) for (let i = 0; i < targets.length; i++) results.push(await run(targets[(i + r) % targets.length]!));

  const span = (xs: number[], d = 1) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, ${rounds} interleaved rounds, 3 sim backends, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | req/s | user µs/request | system µs/request |");
  console.log("| --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = results.filter((r) => r.name === t.name);
    console.log(`| ${t.name} | ${span(mine.map((r) => r.rps), 0)} | ${span(mine.map((r) => r.user))} | ${span(mine.map((r) => r.sys))} |`);
  }
} finally {
  await procs.stop();
}
