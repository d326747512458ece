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
 * Needs wrk (apt-get install wrk). Loopback only, bounded in time (6 wrk runs of `duration`
 * per engine, plus start-up), and every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { Processes, has, waitUp, wrk as runWrk, type WrkResult } from "./harness.ts";

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
const dir = mkdtempSync(join(tmpdir(), "switchyard-attack-"));
if (!has("wrk")) {
  console.error("bench/attack.ts needs wrk: apt-get install wrk");
  process.exit(2);
}

const BACKEND_BASE = 18221; // apart from cpu.ts (18201), so the two can run at once
const PROXY_PORT = { fetch: 18230, socket: 18231 } as const;
type Engine = keyof typeof PROXY_PORT;
const duration = Number(values.duration);
const attackers = Number(values.attackers);

type Run = Pick<WrkResult, "rps" | "p99" | "errors">;

function wrk(port: number): Promise<Run> {
  return runWrk("", port, { connections: Number(values.connections), duration, threads: 1 });
}

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
  procs.spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BACKEND_BASE)]);
  await waitUp(BACKEND_BASE);
  const engines = values.engines!.split(",") as Engine[];
  const rows: string[] = [];
  for (const engine of engines) {
    const port = PROXY_PORT[engine];
    const config = join(dir, `switchyard-${engine}.json`);
    writeFileSync(config, JSON.stringify({
      listen: { host: "127.0.0.1", port }, admin: false, engine,
      log: { access: false }, healthCheck: { type: "tcp", interval: "2s" },
      backends: [0, 1, 2].map((i) => ({ url: `http://127.0.0.1:${BACKEND_BASE + i}` })),
    }));
    const proc = procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", config]);
    await waitUp(port);
    // Warm-up, discarded.
    await wrk(port);
    // Runs without attack before, between and after the attacked ones: each attacked run is
    // compared with the mean of the two beside it (this machine is shared and noisy).
    let before = await wrk(port);
    rows.push(`| ${engine} | none | ${Math.round(before.rps)} | ${before.p99} | ${before.errors} | | |`);
    for (const kind of ["slow-upload", "slow-loris"] as const) {
      const a = attack(port, kind, attackers);
      // Let the attack take hold before measuring.
      await Bun.sleep(1500);
      const run = await wrk(port);
      await a.stop();
      const after = await wrk(port);
      const base = (before.rps + after.rps) / 2;
      const ratio = base > 0 ? run.rps / base : 0;
      rows.push(`| ${engine} | ${kind} × ${attackers} | ${Math.round(run.rps)} | ${run.p99} | ${run.errors} | ${ratio.toFixed(2)}${ratio >= 0.5 ? "" : " (below 0.5)"} | ${a.stats.connects} connects, ${a.stats.closedByProxy} closed by the proxy |`);
      rows.push(`| ${engine} | none | ${Math.round(after.rps)} | ${after.p99} | ${after.errors} | | |`);
      before = after;
    }
    proc.kill("SIGTERM");
    await proc.exited;
  }
  console.log(`\nwrk -t1 -c${values.connections} -d${duration}s GET /, 3 sim backends, default settings, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| engine | attack | req/s | p99 | errors | ratio to the runs beside it | attackers |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
} finally {
  await procs.stop();
}
