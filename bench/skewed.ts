/**
 * A skewed cluster, side by side: three sim backends, two answering in 2 ms and one in 40 ms,
 * behind Switchyard's peak-ewma (and least-connections, for reference), nginx `least_conn` and
 * nginx round robin, each driven by the same wrk load in the same run. Reports requests/s,
 * latency percentiles, the share of requests the slow backend got, and peak-ewma against the
 * target: p99 at most 0.5 × nginx least_conn's, with at least its throughput.
 *
 *   bun bench/skewed.ts [--duration 10] [--connections 64] [--warmup 3] [--engines fetch,socket] [--floor]
 *
 * peak-ewma runs on each engine listed; least-connections on the first. --floor adds Switchyard
 * in front of the two quick backends alone: the p99 no policy can beat on this machine.
 *
 * Needs wrk; nginx is used when installed (apt-get install nginx wrk). Loopback only, bounded
 * in time; every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Processes, has, nginxConfig, waitUp, wrk, type WrkResult } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "64" },
    warmup: { type: "string", default: "3" },
    engines: { type: "string", default: "fetch,socket" },
    floor: { type: "boolean", default: false },
  },
});
if (!has("wrk")) {
  console.error("bench/skewed.ts needs wrk: apt-get install wrk");
  process.exit(2);
}
const connections = Number(values.connections);
const dir = mkdtempSync(join(tmpdir(), "switchyard-skewed-"));
const procs = new Processes();

const BACKEND_BASE = 18011;
/** Latency of each backend, ms: two quick, one slow. */
const LATENCY = [2, 2, 40];
const backends = LATENCY.map((_, i) => `127.0.0.1:${BACKEND_BASE + i}`);
const engines = values.engines!.split(",");
const ports = { nginxLeastConn: 18110, nginxRoundRobin: 18111 };
let nextPort = 18112;

/** Requests each backend has counted so far (its /stats). */
async function backendCounts(): Promise<number[]> {
  return Promise.all(backends.map(async (b) => ((await (await fetch(`http://${b}/stats`)).json()) as { requests: number }).requests));
}

interface Row extends WrkResult {
  slowShare: number;
}

async function measure(name: string, port: number): Promise<Row> {
  // A warm-up run, discarded: pools, JITs and peak-ewma's averages settle.
  if (Number(values.warmup) > 0) await wrk(name, port, { connections, duration: values.warmup! });
  const before = await backendCounts();
  const r = await wrk(name, port, { connections, duration: values.duration! });
  const after = await backendCounts();
  const got = after.map((n, i) => n - before[i]!);
  const total = got.reduce((a, b) => a + b, 0);
  return { ...r, slowShare: total > 0 ? got[2]! / total : 0 };
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
      { port: ports.nginxLeastConn, balance: "least_conn;", servers: backends },
      { port: ports.nginxRoundRobin, balance: "", servers: backends },
    ]));
    procs.spawn(["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]);
    await waitUp(ports.nginxLeastConn);
    targets.push({ name: "nginx least_conn", port: ports.nginxLeastConn }, { name: "nginx round robin", port: ports.nginxRoundRobin });
  } else {
    console.error("nginx is not installed: only Switchyard is measured (apt-get install nginx)");
  }

  const rows: Row[] = [];
  for (const t of targets) rows.push(await measure(t.name, t.port));

  console.log(`\nwrk -t2 -c${connections} -d${values.duration}s, backends at ${LATENCY.join(", ")} ms, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | req/s | p50 | p90 | p99 | to the slow backend | errors |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) {
    console.log(`| ${r.name} | ${Math.round(r.rps)} | ${r.p50} | ${r.p90} | ${r.p99} | ${(r.slowShare * 100).toFixed(2)}% | ${r.errors} |`);
  }
  const lc = rows.find((r) => r.name === "nginx least_conn");
  if (lc) {
    console.log("");
    for (const ewma of rows.filter((r) => r.name.includes("peak-ewma"))) {
      const p99 = ewma.p99Ms / lc.p99Ms;
      const rps = ewma.rps / lc.rps;
      const met = p99 <= 0.5 && rps >= 1;
      console.log(`${ewma.name} vs nginx least_conn: p99 ${p99.toFixed(2)}x (target <= 0.5), throughput ${rps.toFixed(2)}x (target >= 1): ${met ? "target met" : "target NOT met"}`);
    }
  }
} finally {
  await procs.stop();
}
