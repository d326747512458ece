/**
 * CPU per request of each proxy process alone, side by side under the same wrk load: user and
 * system time (from /proc/PID/stat, the proxy's processes only, not wrk's or the backends')
 * divided by the requests wrk completed. Where throughput ratios say how far a proxy is from
 * another, this says where its time goes. Targets: Switchyard's socket engine, alone and with
 * 2 workers (owner and workers summed), its fetch engine, its TCP mode relaying the same HTTP
 * traffic (the cost of moving the bytes alone), the bare forwarder (bench/bare-forwarder.ts:
 * the least a Bun.listen/Bun.connect HTTP forwarder does), alone and as 2 processes sharing
 * the port, nginx with 2 workers (its master and workers summed), the same nginx adding the
 * fields Switchyard adds (so that the backends and wrk read the same bytes behind either),
 * HAProxy with 2 threads and Caddy (`reverse_proxy`, `least_conn`; Go uses both cores).
 * Interleaved, rounds repeated; the report gives each target's median and min-max, and the CPU
 * of the whole machine per request (every process, wrk and the backends included, from
 * /proc/stat): what is left for the proxy at a given rate. On a virtual machine, a round in
 * which the host took more than --max-steal % of the CPU ("steal") during any run is set aside
 * and another run in its place, up to --rounds more (harness.ts, cleanRounds), so fewer rounds
 * may be kept: the report says how many were not.
 *
 *   bun bench/cpu.ts [--duration 4] [--rounds 3] [--connections 64] [--max-steal 5] [--only NAME,NAME]
 *
 * --only keeps the targets whose names contain one of NAME, and nginx (2 workers), the reference.
 *
 * Linux only (/proc); needs wrk; nginx, haproxy and caddy are used when installed
 * (apt-get install wrk nginx haproxy caddy). Loopback only, ephemeral ports, bounded in time,
 * and every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import {
  Processes, bareForwarder, caddy, cleanRounds, has, haproxy, interleaved, need, nginx, requireKept, setAsideNote, sim, spread, switchyard, wrk, type Target,
} from "./harness.ts";

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
need("bench/cpu.ts", ["wrk"], "wrk");
const procs = new Processes();
const NGINX = "nginx (2 workers)";

try {
  const { backends } = await sim(procs);
  const urls = backends.map((b) => ({ url: `http://${b}` }));
  const targets: Target[] = [
    await switchyard(procs, "switchyard (socket engine)", { engine: "socket", backends: urls }),
    await switchyard(procs, "switchyard (fetch engine)", { engine: "fetch", backends: urls }),
    await switchyard(procs, "switchyard (socket engine, 2 workers)", { engine: "socket", workers: 2, backends: urls }),
    await switchyard(procs, "switchyard (TCP mode)", { mode: "tcp", backends: backends.map((url) => ({ url })) }),
    await bareForwarder(procs, "bare forwarder", backends),
    // Two processes on one port: the design of 2 workers at its least.
    await bareForwarder(procs, "bare forwarder, 2 processes", backends, 2),
  ];
  if (has("nginx")) {
    targets.push(...await nginx(procs, [{ name: NGINX, balance: "least_conn;", servers: backends }], { workers: 2 }));
    // The same nginx adding the fields Switchyard adds: the backends and wrk then read the same
    // bytes behind either, and the difference left is the proxies' own.
    targets.push(...await nginx(procs, [{ name: "nginx (2 workers, Switchyard's fields)", balance: "least_conn;", servers: backends }], { workers: 2, fields: "switchyard" }));
  }
  if (has("haproxy")) targets.push(await haproxy(procs, "haproxy (2 threads)", { servers: backends }));
  if (has("caddy")) targets.push(await caddy(procs, "caddy (least_conn)", { servers: backends }));
  // --only NAME,NAME: the targets whose names contain one of them, and nginx (the reference).
  const only = values.only?.split(",");
  if (only) targets.splice(0, targets.length, ...targets.filter((t) => t.name === NGINX || only.some((o) => t.name.includes(o))));

  const run = (t: Target) => wrk(t, { connections: Number(values.connections), duration: values.duration! });
  for (const t of targets) await run(t); // warm-up, discarded
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, interleaved(targets, run));
  const results = clean.kept;
  requireKept(clean, maxSteal);

  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, ${clean.kept.length / targets.length} interleaved rounds kept of the ${rounds} asked, 3 sim backends, ${navigator.hardwareConcurrency} cores shared by all\n`);
  const ref = (r: { round: number }) => results.find((x) => x.round === r.round && x.name === NGINX);
  console.log("| target | req/s | ÷ nginx, per round | user µs/request | system µs/request | own CPU µs/request (user+system) | whole machine µs/request | stolen by the host % |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = results.filter((r) => r.name === t.name);
    const ratios = mine.filter(ref).map((r) => r.rps / ref(r)!.rps);
    console.log(`| ${t.name} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(ratios, 2)} | ${spread(mine.map((r) => r.user))} | ${spread(mine.map((r) => r.sys))} | ${spread(mine.map((r) => r.user + r.sys))} | ${spread(mine.map((r) => r.machine))} | ${spread(mine.map((r) => r.steal))} |`);
  }
  console.log(`\n${setAsideNote(clean, maxSteal)}`);
} finally {
  await procs.stop();
}
