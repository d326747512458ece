/**
 * Normal clients' throughput during attacks, as a ratio of the same run without the attack
 * (target: at least 0.5, so that an attack costs normal clients at most half), for both HTTP
 * engines with default settings:
 *
 * - slow-upload: connections that each declare a 1 MB body, send the first 64 KiB + 1 bytes at
 *   once (past retry.bufferBody, so the proxy must start streaming it to a backend) and then one
 *   byte a second, holding an upstream request for as long as they like.
 * - slow-loris: connections that send a request head one header line a second, never ending it.
 *
 * Attackers that the proxy closes (a header or idle timeout, a 408 or 503) reconnect at once, so
 * the attack holds its size for the whole run. Normal clients are wrk, `GET /` at -c64.
 *
 *   bun bench/attack.ts [--duration 10] [--attackers 256] [--connections 64] [--engines fetch,socket]
 *
 * Each attacked run is compared with the mean of the unattacked runs just before and after it.
 * Beside each run, the proxy's own CPU (user and system time of its process from /proc) per
 * request wrk completed: under attack, what the attackers cost it per normal request served.
 * Needs wrk (apt-get install wrk). Loopback only, ephemeral ports, bounded in time (6 wrk runs
 * of `duration` per engine, plus start-up), and every process it starts is stopped by PID at
 * the end.
 */
import { parseArgs } from "node:util";
import type { Socket } from "bun";
import { Processes, need, sim, switchyard, wrk as runWrk, type Target, type WrkResult } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    attackers: { type: "string", default: "256" },
    connections: { type: "string", default: "64" },
    engines: { type: "string", default: "fetch,socket" },
  },
});
const procs = new Processes();
need("bench/attack.ts", ["wrk"], "wrk");

const duration = Number(values.duration);
const attackers = Number(values.attackers);

function wrk(t: Target): Promise<WrkResult> {
  return runWrk(t, { connections: Number(values.connections), duration, threads: 1 });
}

/** The proxy's own user+system µs per request wrk completed. */
const cpu = (r: WrkResult) => (r.user + r.sys).toFixed(1);

type Kind = "slow-upload" | "slow-loris";

/**
 * `count` attacking connections of one kind, kept open (reconnected when the proxy closes one)
 * until stop(). One timer drives them all: every second each connection sends one more piece.
 */
function attack(port: number, kind: Kind, count: number): { stop(): Promise<void>; stats: { connects: number; closedByProxy: number } } {
  const sockets = new Set<Socket<{ step: number }>>();
  const stats = { connects: 0, closedByProxy: 0 };
  let stopped = false;
  const first = kind === "slow-upload"
    ? Buffer.concat([Buffer.from(`POST /echo HTTP/1.1\r\nHost: attack\r\nContent-Length: ${1024 * 1024}\r\n\r\n`), Buffer.alloc(64 * 1024 + 1, 97)])
    : Buffer.from("GET / HTTP/1.1\r\nHost: attack\r\n");
  const open = (): void => {
    if (stopped) return;
    stats.connects++;
    Bun.connect<{ step: number }>({
      hostname: "127.0.0.1",
      port,
      data: { step: 0 },
      socket: {
        open(s) {
          sockets.add(s);
          s.write(first);
        },
        data() {},
        close(s) {
          sockets.delete(s);
          if (!stopped) {
            stats.closedByProxy++;
            open();
          }
        },
        error() {},
      },
    }).catch(() => {
      if (!stopped) setTimeout(open, 100);
    });
  };
  for (let i = 0; i < count; i++) open();
  const tick = setInterval(() => {
    for (const s of sockets) s.write(kind === "slow-upload" ? "a" : `X-Slow-${s.data.step++}: 1\r\n`);
  }, 1000);
  return {
    stats,
    async stop() {
      stopped = true;
      clearInterval(tick);
      for (const s of sockets) s.terminate();
      sockets.clear();
      await Bun.sleep(200);
    },
  };
}

try {
  const { backends } = await sim(procs);
  const rows: string[] = [];
  for (const engine of values.engines!.split(",")) {
    // Default settings but for the harness's (no admin, no access log, a TCP check every 2 s).
    const target = await switchyard(procs, `switchyard (${engine})`, { engine, backends: backends.map((b) => ({ url: `http://${b}` })) });
    // Warm-up, discarded.
    await wrk(target);
    // Runs without attack before, between and after the attacked ones: each attacked run is
    // compared with the mean of the two beside it (this machine is shared and noisy).
    let before = await wrk(target);
    rows.push(`| ${engine} | none | ${Math.round(before.rps)} | ${before.p99} | ${cpu(before)} | ${before.errors} | | |`);
    for (const kind of ["slow-upload", "slow-loris"] as const) {
      const a = attack(target.port, kind, attackers);
      // Let the attack take hold before measuring.
      await Bun.sleep(1500);
      const run = await wrk(target);
      await a.stop();
      const after = await wrk(target);
      const base = (before.rps + after.rps) / 2;
      const ratio = base > 0 ? run.rps / base : 0;
      rows.push(`| ${engine} | ${kind} × ${attackers} | ${Math.round(run.rps)} | ${run.p99} | ${cpu(run)} | ${run.errors} | ${ratio.toFixed(2)}${ratio >= 0.5 ? "" : " (below 0.5)"} | ${a.stats.connects} connects, ${a.stats.closedByProxy} closed by the proxy |`);
      rows.push(`| ${engine} | none | ${Math.round(after.rps)} | ${after.p99} | ${cpu(after)} | ${after.errors} | | |`);
      before = after;
    }
    target.started.proc.kill("SIGTERM");
    await target.started.proc.exited;
  }
  console.log(`\nwrk -t1 -c${values.connections} -d${duration}s GET /, 3 sim backends, default settings, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| engine | attack | req/s | p99 | own CPU µs/request (user+system) | errors | ratio to the runs beside it | attackers |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
} finally {
  await procs.stop();
}
