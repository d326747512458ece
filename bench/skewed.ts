/**
 * A skewed cluster, side by side: three sim backends, two answering in 2 ms and one in 40 ms,
 * behind Switchyard's peak-ewma (on each engine) and least-connections, nginx `least_conn`,
 * nginx round robin and Caddy `least_conn`, each driven by the same wrk load, each with its own
 * CPU per request (user and system time of its processes from /proc, divided by the requests
 * wrk completed). Targets are interleaved within each
 * round and the rounds repeated (this machine is noisy); the report gives each target's median
 * requests/s, p99 and share of requests that reached the slow backend, and peak-ewma against
 * the target: p99 at most 0.5 × nginx least_conn's, with at least its throughput (ratios per
 * round, then their median). A round in which a virtual machine's host took more than
 * --max-steal % of the CPU during any run is set aside and another run in its place, up to
 * --rounds more (harness.ts, cleanRounds), so fewer rounds may be kept.
 *
 *   bun bench/skewed.ts [--duration 10] [--connections 64] [--rounds 3] [--warmup 3]
 *                       [--wrk-threads 1] [--engines fetch,socket] [--floor] [--max-steal 5]
 *
 * least-connections runs on the first engine listed. --floor adds Switchyard in front of the
 * two quick backends alone: the p99 no policy can beat on this machine. nginx runs 2 workers
 * sharing their least_conn counts (`zone`). Needs wrk; nginx and caddy are used when installed
 * (apt-get install wrk nginx caddy). Loopback only, ephemeral ports, bounded in time; every
 * process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { Processes, caddy, cleanRounds, has, interleaved, median, need, nginx, requireKept, setAsideNote, sim, spread, switchyard, wrk, type Target, type WrkResult } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "64" },
    rounds: { type: "string", default: "3" },
    warmup: { type: "string", default: "3" },
    "wrk-threads": { type: "string", default: "1" },
    engines: { type: "string", default: "fetch,socket" },
    floor: { type: "boolean", default: false },
    "max-steal": { type: "string", default: "5" },
  },
});
need("bench/skewed.ts", ["wrk"], "wrk");
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const engines = values.engines!.split(",");
const procs = new Processes();

/** Latency of each backend, ms: two quick, one slow. */
const LATENCY = [2, 2, 40];
const LEAST_CONN = "nginx least_conn";

interface Row extends WrkResult {
  slowShare: number;
}

try {
  const { backends } = await sim(procs, { latency: LATENCY });
  /** Requests each backend has counted so far (its /stats). */
  const backendCounts = () => Promise.all(backends.map(async (b) => ((await (await fetch(`http://${b}/stats`)).json()) as { requests: number }).requests));
  const measure = async (t: Target): Promise<Row> => {
    const before = await backendCounts();
    const r = await wrk(t, { connections, duration: values.duration!, threads: values["wrk-threads"] });
    const got = (await backendCounts()).map((n, i) => n - before[i]!);
    const total = got.reduce((a, b) => a + b, 0);
    return { ...r, slowShare: total > 0 ? got[2]! / total : 0 };
  };
  const serve = (name: string, strategy: string, engine: string, servers = backends) =>
    switchyard(procs, name, { strategy, engine, backends: servers.map((b) => ({ url: `http://${b}` })) });

  const targets: Target[] = [];
  for (const engine of engines) targets.push(await serve(`switchyard peak-ewma (${engine})`, "peak-ewma", engine));
  targets.push(await serve(`switchyard least-connections (${engines[0]})`, "least-connections", engines[0]!));
  if (values.floor) targets.push(await serve(`switchyard, quick backends only (${engines[0]})`, "least-connections", engines[0]!, backends.slice(0, 2)));
  if (has("nginx")) {
    targets.push(...await nginx(procs, [
      { name: LEAST_CONN, balance: "least_conn;", servers: backends, zone: true },
      { name: "nginx round robin", balance: "", servers: backends, zone: true },
    ], { workers: 2 }));
  } else {
    console.error("nginx is not installed: no nginx reference (apt-get install nginx)");
  }
  if (has("caddy")) targets.push(await caddy(procs, "caddy least_conn", { servers: backends }));

  // Warm-up runs, discarded: pools, JITs and peak-ewma's averages settle.
  if (Number(values.warmup) > 0) {
    for (const t of targets) await wrk(t, { connections, duration: values.warmup!, threads: values["wrk-threads"] });
  }
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, interleaved(targets, measure));
  const rows = clean.kept;
  requireKept(clean, maxSteal);

  console.log(`\nwrk -t${values["wrk-threads"]} -c${connections} -d${values.duration}s, ${rows.length / targets.length} interleaved rounds kept of the ${rounds} asked, backends at ${LATENCY.join(", ")} ms, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | req/s median (min-max) | p99 ms median (min-max) | to the slow backend % | own CPU µs/request (user+system) | errors |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = rows.filter((r) => r.name === t.name);
    const errors = mine.reduce((n, r) => n + r.errors, 0);
    console.log(`| ${t.name} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(mine.map((r) => r.p99Ms))} | ${spread(mine.map((r) => r.slowShare * 100), 2)} | ${spread(mine.map((r) => r.user + r.sys))} | ${errors} |`);
  }
  if (targets.some((t) => t.name === LEAST_CONN)) {
    console.log("");
    for (const t of targets.filter((x) => x.name.includes("peak-ewma"))) {
      const per = rows.filter((r) => r.name === t.name).map((r) => {
        const lc = rows.find((x) => x.round === r.round && x.name === LEAST_CONN)!;
        return { p99: r.p99Ms / lc.p99Ms, rps: r.rps / lc.rps };
      });
      const p99 = median(per.map((x) => x.p99));
      const rps = median(per.map((x) => x.rps));
      const met = p99 <= 0.5 && rps >= 1;
      console.log(`${t.name} vs ${LEAST_CONN} (median of per-round ratios): p99 ${p99.toFixed(2)}x (target <= 0.5), throughput ${rps.toFixed(2)}x (target >= 1): ${met ? "target met" : "target NOT met"}`);
    }
  }
  console.log(`\n${setAsideNote(clean, maxSteal)}`);
} finally {
  await procs.stop();
}
