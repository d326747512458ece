/**
 * What the access log costs per request (issue 25, Benchmark), side by side in one run:
 * Switchyard (socket engine, one process) under wrk against the same sim backend, targets
 * interleaved round by round:
 *
 *   - "off":            log.access false;
 *   - "stdout text":    the default (text lines to stdout; here a pipe this bench reads);
 *   - "file text":      the same lines to log.file;
 *   - "file combined":  format combined to log.file (the client's Referer and User-Agent kept);
 *   - "file json+times": format json with ten fields, the three upstream timings among them.
 *
 * For each: req/s and Switchyard's own CPU µs per request (user + system from /proc,
 * harness.ts), median and min-max over the rounds, and per round its CPU minus "off"'s.
 *
 *   bun bench/accesslog.ts [--duration 5] [--rounds 3] [--connections 32] [--max-steal 5]
 *   BENCH_QUICK=1 bun bench/accesslog.ts     a smoke run: 1 s runs, 1 round
 *
 * Needs wrk (apt-get install wrk). Linux only (/proc), loopback only, ephemeral ports; every
 * process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { statSync } from "node:fs";
import { Processes, cleanRounds, interleaved, need, requireKept, setAsideNote, sim, spread, switchyard, wrk } from "./harness.ts";

const quick = process.env.BENCH_QUICK === "1";
const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: quick ? "1" : "5" },
    rounds: { type: "string", default: quick ? "1" : "3" },
    connections: { type: "string", default: "32" },
    "max-steal": { type: "string", default: "5" },
  },
});
const duration = Number(values.duration);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const maxSteal = Number(values["max-steal"]);

need("bench/accesslog.ts", ["wrk"], "wrk");
const procs = new Processes();
try {
  const { backends } = await sim(procs, { count: 1 });
  const base = { engine: "socket", healthCheck: false, backends: [{ url: `http://${backends[0]}` }] };
  const file = (name: string) => join(procs.dir, `${name}.log`);
  const fields = ["client_ip", "method", "host", "target", "status", "upstream_connect_time", "upstream_first_byte_time", "upstream_time", "route", "backend"];
  const targets = [
    await switchyard(procs, "off", { ...base, log: { access: false } }),
    await switchyard(procs, "stdout text", { ...base, log: { access: true } }),
    await switchyard(procs, "file text", { ...base, log: { access: true, file: file("text") } }),
    await switchyard(procs, "file combined", { ...base, log: { access: true, format: "combined", file: file("combined") } }),
    await switchyard(procs, "file json+times", { ...base, log: { access: true, format: "json", fields, file: file("json") } }),
  ];
  const headers = { "User-Agent": "wrk/4.1 (bench)", Referer: "http://bench.example/page" };
  // Warm up each once (JIT, connections).
  for (const t of targets) await wrk(t, { connections, duration: 1, headers });
  const result = await cleanRounds(rounds, maxSteal, interleaved(targets, async (t) => {
    const r = await wrk(t, { connections, duration, headers });
    if (r.errors > 0) throw new Error(`${t.name}: ${r.errors} errors`);
    return r;
  }));
  requireKept(result, maxSteal);
  const n = result.kept.length / targets.length;
  console.log(`\nwrk -c${connections}, ${duration} s runs, ${n} round(s); median (min-max):`);
  for (const t of targets) {
    const rs = result.kept.filter((r) => r.name === t.name);
    const deltas = rs.map((r) => {
      const off = result.kept.find((o) => o.round === r.round && o.name === "off")!;
      return r.user + r.sys - (off.user + off.sys);
    });
    const delta = t.name === "off" ? "" : `, minus off ${spread(deltas, 2)} µs`;
    console.log(`  ${t.name.padEnd(16)} ${spread(rs.map((r) => r.rps), 0)} req/s, CPU ${spread(rs.map((r) => r.user + r.sys), 2)} µs/request${delta}`);
  }
  for (const name of ["text", "combined", "json"]) console.log(`  ${name}.log: ${(statSync(file(name)).size / 1e6).toFixed(1)} MB written`);
  console.log(`  ${setAsideNote(result, maxSteal)}`);
} finally {
  await procs.stop();
}
