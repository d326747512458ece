/**
 * CPU per request of each proxy process alone, side by side under the same wrk load: user and
 * system time (from /proc/PID/stat, the proxy's process only, not wrk's or the backends')
 * divided by the requests wrk completed. Where throughput ratios say how far a proxy is from
 * another, this says where its time goes. Targets: Switchyard's socket engine, alone and with
 * 2 workers (owner and workers summed), its fetch engine, its TCP mode relaying the same HTTP traffic (the cost
 * of moving the bytes alone), the bare forwarder (bench/bare-forwarder.ts: the least a
 * Bun.listen/Bun.connect HTTP forwarder does), alone and as 2 processes sharing the port,
 * nginx with 2 workers (its master and workers
 * summed), the same nginx adding the fields Switchyard adds (so that the backends and wrk read
 * the same bytes behind either) and HAProxy with 2 threads. Interleaved, rounds repeated; the report gives each
 * target's median and min-max, and the CPU of the whole machine per request (every process,
 * wrk and the backends included, from /proc/stat): what is left for the proxy at a given rate.
 * On a virtual machine, a round in which the host took more than --max-steal % of the CPU
 * ("steal") during any run is set aside and another run in its place, up to --rounds more
 * (harness.ts, cleanRounds), so fewer rounds may be kept: the report says how many were not.
 *
 *   bun bench/cpu.ts [--duration 4] [--rounds 3] [--connections 64] [--max-steal 5] [--only NAME,NAME]
 *
 * --only keeps the targets whose names contain one of NAME, and nginx (2 workers), the reference.
 *
 * Linux only (/proc); needs wrk, nginx and haproxy when installed. Loopback only, bounded in time, and
 * every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Processes, cleanRounds, cpuPerRequest, haproxyConfig, has, nginxConfig, requireKept, setAsideNote, spread, waitUp, withChildren } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "64" },
    "max-steal": { type: "string", default: "5" },
    only: { type: "string" },
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

interface Target { name: string; port: number; pids: () => number[] }

try {
  procs.spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BASE)]);
  await waitUp(BASE);
  const targets: Target[] = [];
  const serve = (name: string, port: number, config: object) => {
    const file = join(dir, `${port}.json`);
    writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port }, admin: false, log: { access: false }, healthCheck: { type: "tcp", interval: "2s" }, ...config }));
    const p = procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", file]);
    // With workers, the owner and every worker count.
    targets.push({ name, port, pids: () => withChildren(p.pid) });
  };
  serve("switchyard (socket engine)", 18300, { engine: "socket", backends: backends.map((b) => ({ url: `http://${b}` })) });
  serve("switchyard (fetch engine)", 18308, { engine: "fetch", backends: backends.map((b) => ({ url: `http://${b}` })) });
  serve("switchyard (socket engine, 2 workers)", 18305, { engine: "socket", workers: 2, backends: backends.map((b) => ({ url: `http://${b}` })) });
  serve("switchyard (TCP mode)", 18301, { mode: "tcp", backends: backends.map((b) => ({ url: b })) });
  const bare = procs.spawn([process.execPath, "bench/bare-forwarder.ts", "18302", ...backends.map((b) => `http://${b}`)]);
  targets.push({ name: "bare forwarder", port: 18302, pids: () => [bare.pid] });
  // The same, two processes on one port: the design of 2 workers at its least.
  const bares = [0, 1].map(() => procs.spawn([process.execPath, "bench/bare-forwarder.ts", "18306", ...backends.map((b) => `http://${b}`)]));
  targets.push({ name: "bare forwarder, 2 processes", port: 18306, pids: () => bares.map((p) => p.pid) });
  if (has("nginx")) {
    writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, [{ port: 18303, balance: "least_conn;", servers: backends }], { workers: 2 }));
    const ng = procs.spawn(["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]);
    targets.push({ name: "nginx (2 workers)", port: 18303, pids: () => withChildren(ng.pid) });
    // The same nginx adding the fields Switchyard adds: the backends and wrk then read the same
    // bytes behind either, and the difference left is the proxies' own.
    const dir2 = join(dir, "fields");
    mkdirSync(dir2);
    writeFileSync(join(dir2, "nginx.conf"), nginxConfig(dir2, [{ port: 18307, balance: "least_conn;", servers: backends }], { workers: 2, fields: "switchyard" }));
    const ng2 = procs.spawn(["nginx", "-c", join(dir2, "nginx.conf"), "-p", dir2]);
    targets.push({ name: "nginx (2 workers, Switchyard's fields)", port: 18307, pids: () => withChildren(ng2.pid) });
  }
  if (has("haproxy")) {
    writeFileSync(join(dir, "haproxy.cfg"), haproxyConfig(18304, backends));
    const ha = procs.spawn(["haproxy", "-f", join(dir, "haproxy.cfg")]);
    targets.push({ name: "haproxy (2 threads)", port: 18304, pids: () => [ha.pid] });
  }
  for (const t of targets) await waitUp(t.port);
  // --only NAME,NAME: the targets whose names contain one of them, and nginx (the reference).
  const only = values.only?.split(",");
  if (only) targets.splice(0, targets.length, ...targets.filter((t) => t.name === "nginx (2 workers)" || only.some((o) => t.name.includes(o))));

  const run = (t: Target) => cpuPerRequest(t.name, t.port, t.pids(), { connections: values.connections!, duration: values.duration! });
  for (const t of targets) await run(t); // warm-up, discarded
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, async (r) => {
    const runs = [];
    for (let i = 0; i < targets.length; i++) runs.push(await run(targets[(i + r) % targets.length]!));
    return runs;
  });
  const results = clean.kept;
  requireKept(clean, maxSteal);

  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, ${clean.kept.length / targets.length} interleaved rounds kept of the ${rounds} asked, 3 sim backends, ${navigator.hardwareConcurrency} cores shared by all\n`);
  const ref = (r: { round: number }) => results.find((x) => x.round === r.round && x.name === "nginx (2 workers)");
  console.log("| target | req/s | ÷ nginx, per round | user µs/request | system µs/request | whole machine µs/request | stolen by the host % |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = results.filter((r) => r.name === t.name);
    const ratios = mine.filter(ref).map((r) => r.rps / ref(r)!.rps);
    console.log(`| ${t.name} | ${spread(mine.map((r) => r.rps), 0)} | ${ratios.length ? spread(ratios, 2) : "-"} | ${spread(mine.map((r) => r.user))} | ${spread(mine.map((r) => r.sys))} | ${spread(mine.map((r) => r.machine))} | ${spread(mine.map((r) => r.steal))} |`);
  }
  console.log(`\n${setAsideNote(clean, maxSteal)}`);
} finally {
  await procs.stop();
}
