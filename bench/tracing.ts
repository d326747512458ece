/**
 * What tracing costs per request (docs/observability.md, "Tracing"): Switchyard's socket engine
 * with tracing off (twice: the second is the control that shows the run's noise), sampled at
 * 1% and at 100%, side by side under the same wrk load,
 * interleaved rounds, each target's own CPU per request (harness.ts). The spans go to an
 * OTLP/HTTP receiver in this process that reads and discards them (its CPU is not the
 * target's; the encoding and the POST are).
 *
 *   bun bench/tracing.ts [--duration 4] [--rounds 3] [--connections 64] [--max-steal 5]
 *
 * Linux only (/proc); needs wrk (apt-get install wrk). Loopback only, ephemeral ports, and
 * every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { Processes, cleanRounds, interleaved, need, requireKept, setAsideNote, sim, spread, switchyard, wrk } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "64" },
    "max-steal": { type: "string", default: "5" },
  },
});
const duration = Number(values.duration);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const maxSteal = Number(values["max-steal"]);

need("bench/tracing.ts", ["wrk"], "wrk");
let received = 0;
let bytes = 0;
const receiver = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    bytes += (await req.arrayBuffer()).byteLength;
    received++;
    return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  },
});
const procs = new Processes();
try {
  const { backends } = await sim(procs, { count: 1 });
  const base = { engine: "socket", healthCheck: false, backends: [{ url: `http://${backends[0]}` }] };
  // A queue deep enough that 100% at full load drops nothing between two exports.
  const tracing = (sampleRatio: number) => ({ tracing: { otlp: { endpoint: `http://127.0.0.1:${receiver.port}/v1/traces` }, sampleRatio, queueSize: 65_536, batchSize: 2048, batchDelay: 200 } });
  // "off, again" is the control: the same config twice shows the run's own noise beside the gaps.
  const targets = [
    await switchyard(procs, "tracing off", base),
    await switchyard(procs, "off, again", base),
    await switchyard(procs, "sampled 1%", { ...base, ...tracing(0.01) }),
    await switchyard(procs, "sampled 100%", { ...base, ...tracing(1) }),
  ];
  for (const t of targets) await wrk(t, { connections, duration: 1 });
  const result = await cleanRounds(rounds, maxSteal, interleaved(targets, (t) => wrk(t, { connections, duration })));
  requireKept(result, maxSteal);
  console.log(`\nwrk -c${connections}, ${duration} s runs, ${result.kept.length / targets.length} round(s); median (min-max):`);
  const cpu = new Map<string, number[]>();
  for (const t of targets) {
    const rs = result.kept.filter((r) => r.name === t.name);
    cpu.set(t.name, rs.map((r) => r.user + r.sys));
    if (rs.some((r) => r.errors > 0)) throw new Error(`${t.name}: errors`);
    console.log(`  ${t.name.padEnd(13)} ${spread(rs.map((r) => r.rps), 0)} req/s, CPU ${spread(cpu.get(t.name)!, 2)} µs/request, p99 ${rs.map((r) => r.p99).join(" ")}`);
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const off = med(cpu.get("tracing off")!);
  for (const name of ["off, again", "sampled 1%", "sampled 100%"]) console.log(`  ${name} costs ${(med(cpu.get(name)!) - off).toFixed(2)} µs/request more than off (medians)`);
  console.log(`  the receiver got ${received} exports, ${(bytes / 1e6).toFixed(1)} MB`);
  if (result.setAside > 0) console.log(setAsideNote(result, maxSteal));
} finally {
  await procs.stop();
  await receiver.stop(true);
}
