/**
 * Where the fetch engine's CPU per request goes, priced against the fetch floor: Switchyard's
 * fetch engine, the floor (bench/fetch-floor.ts), and the floor with one of the runtime calls
 * the engine makes per request added at a time (FLOOR_ADD: requestIP, a request.signal
 * listener, an AbortController for fetch, fetch's timeout/duplex options, a Hono app in
 * front, the body read whole into a new Response), then all of them at once. Each target is
 * one process; CPU is its user and system time from /proc under the same wrk load, interleaved,
 * rounds repeated, median and min-max per target, and the difference from the floor's median.
 *
 *   bun bench/fetch-costs.ts [--duration 3] [--rounds 3] [--connections 64]
 *
 * Linux only (/proc); needs wrk. Loopback only, bounded in time, and every process it starts
 * is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Processes, has, median, processCpu, waitUp } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "3" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "64" },
  },
});
if (!has("wrk")) {
  console.error("bench/fetch-costs.ts needs wrk: apt-get install wrk");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "switchyard-fetch-costs-"));
const procs = new Processes();
const BASE = 18401;
const backends = [0, 1, 2].map((i) => `http://127.0.0.1:${BASE + i}`);

interface Target { name: string; port: number; pid: number }
const targets: Target[] = [];
const results = new Map<string, { rps: number; user: number; sys: number }[]>();

try {
  procs.spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BASE)]);
  await waitUp(BASE);
  let port = 18500;
  const config = join(dir, "fetch.json");
  writeFileSync(config, JSON.stringify({
    listen: { host: "127.0.0.1", port }, admin: false, engine: "fetch", log: { access: false },
    healthCheck: { type: "tcp", interval: "2s" }, backends: backends.map((url) => ({ url })),
  }));
  targets.push({ name: "switchyard (fetch engine)", port, pid: procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", config]).pid });
  const ADDS = ["", "ip", "signal", "abort", "options", "hono", "whole", "ip,signal,abort,options,hono,whole"];
  for (const a of ADDS) {
    port++;
    const p = Bun.spawn([process.execPath, "bench/fetch-floor.ts", String(port), ...backends], {
      cwd: join(import.meta.dir, ".."), env: { ...process.env, FLOOR_ADD: a }, stdout: "ignore", stderr: "inherit",
    });
    procs.track(p);
    targets.push({ name: a === "" ? "floor" : a.includes(",") ? "floor + all of them" : `floor + ${a}`, port, pid: p.pid });
  }
  for (const t of targets) await waitUp(t.port);

  const run = async (t: Target) => {
    const [u0, s0] = processCpu([t.pid]);
    const p = Bun.spawn(["wrk", "-t1", `-c${values.connections}`, `-d${values.duration}s`, `http://127.0.0.1:${t.port}/`], { stdout: "pipe" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    const [u1, s1] = processCpu([t.pid]);
    const n = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    return { rps: n / Number(values.duration), user: (u1 - u0) / n, sys: (s1 - s0) / n };
  };
  for (const t of targets) await run(t); // warm-up, discarded
  const rounds = Number(values.rounds);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length]!;
      const list = results.get(t.name) ?? [];
      list.push(await run(t));
      results.set(t.name, list);
    }
  }

  const span = (xs: number[], d = 1) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
  const total = (name: string) => median(results.get(name)!.map((r) => r.user + r.sys));
  const floor = total("floor");
  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, ${rounds} interleaved rounds, 3 sim backends, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | req/s | user µs/request | system µs/request | user+system − floor's |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = results.get(t.name)!;
    const diff = total(t.name) - floor;
    console.log(`| ${t.name} | ${span(mine.map((r) => r.rps), 0)} | ${span(mine.map((r) => r.user))} | ${span(mine.map((r) => r.sys))} | ${t.name === "floor" ? "-" : `${diff >= 0 ? "+" : ""}${diff.toFixed(1)}`} |`);
  }
} finally {
  await procs.stop();
}
