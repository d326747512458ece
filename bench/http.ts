/**
 * Layer 7 throughput, side by side, with each target's own CPU per request: the same sim
 * backends straight, behind nginx (2 workers; also a second nginx that adds the fields
 * Switchyard adds, harness.ts's nginx), behind HAProxy (2 threads), behind Caddy
 * (`reverse_proxy`, `least_conn`), behind Switchyard's two engines (one process, and
 * `workers: 2`) and behind the least a Bun.serve + fetch forwarder can do (bench/fetch-floor.ts),
 * each driven by wrk with the same settings. A target's CPU is the user and system time of its
 * own processes (from /proc; for "direct", the sim's) divided by the requests wrk completed.
 * Targets are interleaved within each round and the rounds repeated, because this machine is
 * noisy: the report gives each target's median and its spread (min-max) over the rounds, and
 * ratios to nginx and to the fetch floor computed per round, then their median. A round in
 * which a virtual machine's host took more than --max-steal % of the CPU during any run is set
 * aside and another run in its place, up to --rounds more (harness.ts, cleanRounds), so fewer
 * rounds may be kept; the report says how many were set aside.
 *
 *   bun bench/http.ts [--duration 10] [--connections 64,256] [--rounds 3] [--path /]
 *                     [--wrk-threads 1] [--only NAME,NAME] [--max-steal 5] [--access-log]
 *
 * --only keeps "direct" and the targets whose names contain one of NAME. Needs wrk
 * (apt-get install wrk); nginx, haproxy and caddy are used when installed. Loopback only,
 * ephemeral ports, bounded in time, and every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import {
  Processes, caddy, cleanRounds, fetchFloor, has, haproxy, interleaved, need, nginx, setAsideNote, sim, spread, switchyard, wrk, type Target, type WrkResult,
} from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "64,256" },
    path: { type: "string", default: "/" },
    rounds: { type: "string", default: "3" },
    "wrk-threads": { type: "string", default: "1" },
    only: { type: "string" },
    "access-log": { type: "boolean", default: false },
    "max-steal": { type: "string", default: "5" },
  },
});
need("bench/http.ts", ["wrk"], "wrk");
const procs = new Processes();

const NGINX = "nginx (2 workers)";
const NGINX_FIELDS = "nginx (2 workers, Switchyard's fields)";
const FLOOR = "bun fetch floor";
const accessLog = values["access-log"];

try {
  const { backends, target: direct } = await sim(procs);
  const targets: Target[] = [direct];
  for (const workers of [1, 2]) {
    for (const engine of ["fetch", "socket"]) {
      targets.push(await switchyard(procs, workers === 1 ? `switchyard (${engine})` : `switchyard (${engine}, ${workers} workers)`, {
        engine, workers, log: { access: accessLog }, backends: backends.map((b) => ({ url: `http://${b}` })),
      }));
    }
  }
  targets.push(await fetchFloor(procs, FLOOR, backends));
  if (has("nginx")) {
    targets.push(...await nginx(procs, [{ name: NGINX, balance: "least_conn;", servers: backends }], { workers: 2, accessLog }));
    // The same nginx adding the fields Switchyard adds: the backends and wrk then read the same
    // bytes behind either, and the difference left is the proxies' own.
    targets.push(...await nginx(procs, [{ name: NGINX_FIELDS, balance: "least_conn;", servers: backends }], { workers: 2, accessLog, fields: "switchyard" }));
  }
  if (has("haproxy")) targets.push(await haproxy(procs, "haproxy (2 threads)", { servers: backends }));
  if (has("caddy")) targets.push(await caddy(procs, "caddy (least_conn)", { servers: backends }));

  const only = values.only?.split(",");
  const chosen = only ? targets.filter((t) => t === direct || only.some((o) => t.name.includes(o))) : targets;
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const results: (WrkResult & { round: number })[] = [];
  const notes: string[] = [];
  const conns = values.connections!.split(",").map(Number);
  for (const c of conns) {
    const run = (t: Target) => wrk(t, { connections: c, duration: values.duration!, path: values.path, threads: values["wrk-threads"] });
    // Warm-up runs, discarded, so that pools and JITs are warm.
    for (const t of chosen) await run(t);
    const r = await cleanRounds(rounds, maxSteal, interleaved(chosen, run));
    results.push(...r.kept);
    notes.push(`${c} connections: ${setAsideNote(r, maxSteal)}`);
  }

  console.log(`\nwrk -t${values["wrk-threads"]} -d${values.duration}s ${values.path}, ${rounds} interleaved rounds asked (kept: below), 3 sim backends, access log ${accessLog ? "on" : "off"}, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | conns | req/s median (min-max) | p99 ms median (min-max) | own CPU µs/request (user+system) | errors | vs nginx | vs nginx, same fields | vs fetch floor |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const c of conns) {
    for (const t of chosen) {
      const mine = results.filter((r) => r.connections === c && r.name === t.name);
      if (mine.length === 0) {
        console.log(`| ${t.name} | ${c} | no round the host left alone | | | | | | |`);
        continue;
      }
      const ratioTo = (name: string) => spread(mine.flatMap((r) => {
        const ref = results.find((x) => x.connections === c && x.round === r.round && x.name === name);
        return ref && ref.rps > 0 ? [r.rps / ref.rps] : [];
      }), 2);
      const errors = mine.reduce((n, r) => n + r.errors, 0);
      console.log(`| ${t.name} | ${c} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(mine.map((r) => r.p99Ms), 2)} | ${spread(mine.map((r) => r.user + r.sys))} | ${errors} | ${ratioTo(NGINX)} | ${ratioTo(NGINX_FIELDS)} | ${ratioTo(FLOOR)} |`);
    }
  }
  console.log(`\n${notes.join("\n")}`);
} finally {
  await procs.stop();
}
