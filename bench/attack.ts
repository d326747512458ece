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
 * - HTTP/2 (socket engine; the fetch engine answers the preface as HTTP/1.1, so these cost it
 *   a refused request each): h2-rapid-reset (HEADERS + RST_STREAM pairs, 20 every 10 ms a
 *   connection), h2-continuation (a header block that never ends: 16 KB CONTINUATION every
 *   10 ms), h2-ping-flood and h2-settings-flood (100 frames every 10 ms, the ACKs never read),
 *   h2-zero-window (SETTINGS_INITIAL_WINDOW_SIZE 0 and a 64 MB GET, then nothing),
 *   h2-never-ending (a POST's HEADERS without END_STREAM, then nothing).
 *
 * Attackers that the proxy closes (a header or idle timeout, a 408 or 503) reconnect at once, so
 * the attack holds its size for the whole run. Normal clients are wrk, `GET /` at -c64.
 *
 *   bun bench/attack.ts [--duration 10] [--attackers 256] [--connections 64] [--engines fetch,socket] [--kinds slow-upload,slow-loris,h2-rapid-reset,...]
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
import { PREFACE } from "../src/engine/h2/preface.ts";
import { fieldBlock, frame } from "../test/helpers/h2raw.ts";
import { Processes, need, sim, switchyard, wrk as runWrk, type Target, type WrkResult } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    attackers: { type: "string", default: "256" },
    connections: { type: "string", default: "64" },
    engines: { type: "string", default: "fetch,socket" },
    kinds: { type: "string", default: "slow-upload,slow-loris" },
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

const KINDS = ["slow-upload", "slow-loris", "h2-rapid-reset", "h2-continuation", "h2-ping-flood", "h2-settings-flood", "h2-zero-window", "h2-never-ending"] as const;
type Kind = (typeof KINDS)[number];
const kinds = values.kinds!.split(",") as Kind[];
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`--kinds: unknown kind ${JSON.stringify(k)}; expected some of ${KINDS.join(", ")}`);

const H2_OPEN = Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0))]);
const h2Get = (path: string) => fieldBlock([[":method", "GET"], [":scheme", "http"], [":authority", "attack"], [":path", path]]);

/** What an attacking connection of `kind` sends first, and then at each tick (step counts ticks). */
function script(kind: Kind): { first: Uint8Array; tickMs: number; tick?: (step: number) => Uint8Array; paused?: true } {
  switch (kind) {
    case "slow-upload":
      return { first: Buffer.concat([Buffer.from(`POST /echo HTTP/1.1\r\nHost: attack\r\nContent-Length: ${1024 * 1024}\r\n\r\n`), Buffer.alloc(64 * 1024 + 1, 97)]), tickMs: 1000, tick: () => Buffer.from("a") };
    case "slow-loris":
      return { first: Buffer.from("GET / HTTP/1.1\r\nHost: attack\r\n"), tickMs: 1000, tick: (i) => Buffer.from(`X-Slow-${i}: 1\r\n`) };
    case "h2-rapid-reset": {
      const head = h2Get("/");
      return {
        first: H2_OPEN,
        tickMs: 10,
        tick: (i) => Buffer.concat(Array.from({ length: 20 }, (_, k) => {
          const id = 2 * (20 * i + k) + 1;
          return Buffer.concat([frame(1, 5, id, head), frame(3, 0, id, Buffer.from([0, 0, 0, 8]))]);
        })),
      };
    }
    case "h2-continuation": {
      const piece = frame(9, 0, 1, fieldBlock([["x-a", "b".repeat(16_000)]]));
      return { first: Buffer.concat([H2_OPEN, frame(1, 0, 1, h2Get("/"))]), tickMs: 10, tick: () => piece };
    }
    case "h2-ping-flood": {
      const pings = Buffer.concat(Array.from({ length: 100 }, () => frame(6, 0, 0, Buffer.alloc(8))));
      return { first: H2_OPEN, tickMs: 10, tick: () => pings, paused: true };
    }
    case "h2-settings-flood": {
      const settings = Buffer.concat(Array.from({ length: 100 }, () => frame(4, 0, 0, Buffer.from([0, 4, 0, 0, 0xff, 0xff]))));
      return { first: H2_OPEN, tickMs: 10, tick: () => settings, paused: true };
    }
    case "h2-zero-window":
      return { first: Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.from([0, 4, 0, 0, 0, 0])), frame(1, 5, 1, h2Get(`/bytes/${64 * 1024 * 1024}`))]), tickMs: 1000 };
    case "h2-never-ending":
      return { first: Buffer.concat([H2_OPEN, frame(1, 4, 1, fieldBlock([[":method", "POST"], [":scheme", "http"], [":authority", "attack"], [":path", "/echo"]]))]), tickMs: 1000 };
  }
}

/**
 * `count` attacking connections of one kind, kept open (reconnected when the proxy closes one)
 * until stop(). One timer drives them all: every second each connection sends one more piece.
 */
function attack(port: number, kind: Kind, count: number): { stop(): Promise<void>; stats: { connects: number; closedByProxy: number } } {
  const sockets = new Set<Socket<{ step: number }>>();
  const stats = { connects: 0, closedByProxy: 0 };
  let stopped = false;
  const plan = script(kind);
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
          // A flood's attacker never reads what the proxy sends (its ACKs pile up there).
          if (plan.paused) (s as unknown as { pause(): void }).pause();
          s.write(plan.first);
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
  // What the socket does not take now is dropped: an attacker sends what it can, as fast as it can.
  const tick = setInterval(() => {
    if (plan.tick !== undefined) for (const s of sockets) s.write(plan.tick(s.data.step++));
  }, plan.tickMs);
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
    for (const kind of kinds) {
      const a = attack(target.port, kind, attackers);
      // Let the attack take hold before measuring.
      await Bun.sleep(1500);
      const run = await wrk(target).catch((e: Error) => {
        // Normal clients got nothing at all under this attack: a row that says so, not a crash.
        console.error(`${kind}: ${e.message}`);
        return { rps: 0, p99: "-", user: 0, sys: 0, errors: "all" } as unknown as WrkResult;
      });
      await a.stop();
      const after = await wrk(target);
      const base = (before.rps + after.rps) / 2;
      const ratio = base > 0 ? run.rps / base : 0;
      rows.push(`| ${engine} | ${kind} × ${attackers} | ${Math.round(run.rps)} | ${run.p99} | ${cpu(run)} | ${run.errors} | ${ratio.toFixed(2)}${ratio >= 0.5 ? "" : " (below 0.5)"} | ${a.stats.connects} connects, ${a.stats.closedByProxy} closed by the proxy |`);
      rows.push(`| ${engine} | none | ${Math.round(after.rps)} | ${after.p99} | ${cpu(after)} | ${after.errors} | | |`);
      console.error(rows.at(-2));
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
