/**
 * A skewed cluster, side by side: three sim backends, two answering in 2 ms and one in 40 ms,
 * behind Switchyard's peak-ewma (on each engine) and least-connections, nginx `least_conn` and
 * nginx round robin, each driven by the same wrk load. Targets are interleaved within each
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
 * sharing their least_conn counts (`zone`). Needs wrk; nginx is used when installed
 * (apt-get install nginx wrk). Loopback only, bounded in time; every process it starts is
 * stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Processes, cleanRounds, has, median, nginxConfig, requireKept, setAsideNote, waitUp, wrk, type WrkResult } from "./harness.ts";

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
if (!has("wrk")) {
  console.error("bench/skewed.ts needs wrk: apt-get install wrk");
  process.exit(2);
}
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const engines = values.engines!.split(",");
const dir = mkdtempSync(join(tmpdir(), "switchyard-skewed-"));
const procs = new Processes();

const BACKEND_BASE = 18011;
/** Latency of each backend, ms: two quick, one slow. */
const LATENCY = [2, 2, 40];
const backends = LATENCY.map((_, i) => `127.0.0.1:${BACKEND_BASE + i}`);
const ports = { nginxLeastConn: 18110, nginxRoundRobin: 18111 };
let nextPort = 18112;

/** Requests each backend has counted so far (its /stats). */
async function backendCounts(): Promise<number[]> {
  return Promise.all(backends.map(async (b) => ((await (await fetch(`http://${b}/stats`)).json()) as { requests: number }).requests));
}

interface Row extends WrkResult {
  round: number;
  slowShare: number;
}

async function measure(name: string, port: number, round: number): Promise<Row> {
  const before = await backendCounts();
  const r = await wrk(name, port, { connections, duration: values.duration!, threads: values["wrk-threads"] });
  const after = await backendCounts();
  const got = after.map((n, i) => n - before[i]!);
  const total = got.reduce((a, b) => a + b, 0);
  return { ...r, round, slowShare: total > 0 ? got[2]! / total : 0 };
}

/** Starts one Switchyard; resolves to its port once it answers. */
async function switchyard(strategy: string, engine: string, servers = backends): Promise<number> {
  const port = nextPort++;
  const config = join(dir, `switchyard-${port}.json`);
  writeFileSync(config, JSON.stringify({
    listen: { host: "127.0.0.1", port }, admin: false, strategy, engine,
    log: { access: false }, healthCheck: { type: "tcp", interval: "2s" },
    backends: servers.map((b) => ({ url: `http://${b}` })),
  }));
  procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", config]);
  await waitUp(port);
  return port;
}

try {
  procs.spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BACKEND_BASE)]);
  await waitUp(BACKEND_BASE + 2);
  await Promise.all(backends.map((b, i) => fetch(`http://${b}/_control`, { method: "POST", body: JSON.stringify({ latency: LATENCY[i] }) }).then((r) => r.text())));

  const targets: { name: string; port: number }[] = [];
  for (const engine of engines) targets.push({ name: `switchyard peak-ewma (${engine})`, port: await switchyard("peak-ewma", engine) });
  targets.push({ name: `switchyard least-connections (${engines[0]})`, port: await switchyard("least-connections", engines[0]!) });
  if (values.floor) {
    targets.push({ name: `switchyard, quick backends only (${engines[0]})`, port: await switchyard("least-connections", engines[0]!, backends.slice(0, 2)) });
  }
  if (has("nginx")) {
    writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, [
      { port: ports.nginxLeastConn, balance: "least_conn;", servers: backends, zone: true },
      { port: ports.nginxRoundRobin, balance: "", servers: backends, zone: true },
    ], { workers: 2 }));
    procs.spawn(["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]);
    await waitUp(ports.nginxLeastConn);
    targets.push({ name: "nginx least_conn", port: ports.nginxLeastConn }, { name: "nginx round robin", port: ports.nginxRoundRobin });
  } else {
    console.error("nginx is not installed: only Switchyard is measured (apt-get install nginx)");
  }

  // Warm-up runs, discarded: pools, JITs and peak-ewma's averages settle.
  if (Number(values.warmup) > 0) {
    for (const t of targets) await wrk(t.name, t.port, { connections, duration: values.warmup!, threads: values["wrk-threads"] });
  }
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, async (round) => {
    // Interleaved: every target once per round, the order rotated so none always goes first.
    const runs: Row[] = [];
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + round) % targets.length]!;
      runs.push(await measure(t.name, t.port, round));
    }
    return runs;
  });
  const rows: Row[] = clean.kept;
  requireKept(clean, maxSteal);

  const spread = (xs: number[], f: (x: number) => string) => `${f(median(xs))} (${f(Math.min(...xs))}-${f(Math.max(...xs))})`;
  console.log(`\nwrk -t${values["wrk-threads"]} -c${connections} -d${values.duration}s, ${rows.length / targets.length} interleaved rounds kept of the ${rounds} asked, backends at ${LATENCY.join(", ")} ms, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | req/s median (min-max) | p99 median (min-max) | to the slow backend | errors |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = rows.filter((r) => r.name === t.name);
    const errors = mine.reduce((n, r) => n + r.errors, 0);
    console.log(`| ${t.name} | ${spread(mine.map((r) => r.rps), (x) => String(Math.round(x)))} | ${spread(mine.map((r) => r.p99Ms), (x) => `${x.toFixed(1)}ms`)} | ${spread(mine.map((r) => r.slowShare * 100), (x) => `${x.toFixed(2)}%`)} | ${errors} |`);
  }
  if (targets.some((t) => t.name === "nginx least_conn")) {
    console.log("");
    for (const t of targets.filter((x) => x.name.includes("peak-ewma"))) {
      const per = rows.filter((r) => r.name === t.name).map((r) => {
        const lc = rows.find((x) => x.round === r.round && x.name === "nginx least_conn")!;
        return { p99: r.p99Ms / lc.p99Ms, rps: r.rps / lc.rps };
      });
      const p99 = median(per.map((x) => x.p99));
      const rps = median(per.map((x) => x.rps));
      const met = p99 <= 0.5 && rps >= 1;
      console.log(`${t.name} vs nginx least_conn (median of per-round ratios): p99 ${p99.toFixed(2)}x (target <= 0.5), throughput ${rps.toFixed(2)}x (target >= 1): ${met ? "target met" : "target NOT met"}`);
    }
  }
  console.log(`\n${setAsideNote(clean, maxSteal)}`);
} finally {
  await procs.stop();
}
