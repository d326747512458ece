/**
 * Where the fetch engine's CPU per request goes, priced against the fetch floor: Switchyard's
 * fetch engine, the floor (bench/fetch-floor.ts), and the floor with one of the runtime calls
 * the engine makes per request added at a time (FLOOR_ADD: requestIP, a request.signal
 * listener, an AbortController for fetch, fetch's timeout/duplex options, a Hono app in
 * front, the body read whole into a new Response, the fields Switchyard adds), then all of them at once. Each target is
 * one process; CPU is its user and system time from /proc under the same wrk load, interleaved,
 * rounds repeated, median and min-max per target, and the difference from the floor's median.
 *
 *   bun bench/fetch-costs.ts [--duration 3] [--rounds 3] [--connections 64] [--max-steal 5]
 *
 * A round in which a virtual machine's host took more than --max-steal % of the CPU during any
 * run is set aside and another run in its place (harness.ts, cleanRounds).
 *
 * Linux only (/proc); needs wrk. Loopback only, ephemeral ports, bounded in time, and every
 * process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { Processes, cleanRounds, fetchFloor, interleaved, median, need, requireKept, setAsideNote, sim, spread, switchyard, wrk, type Target } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "3" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "64" },
    "max-steal": { type: "string", default: "5" },
  },
});
need("bench/fetch-costs.ts", ["wrk"], "wrk");
const procs = new Processes();
/** FLOOR_ADD of each floor target: none, each call alone, then all of them. */
const ADDS = ["", "ip", "signal", "abort", "options", "hono", "whole", "fields", "ip,signal,abort,options,hono,whole,fields"];

try {
  const { backends } = await sim(procs);
  const targets: Target[] = [await switchyard(procs, "switchyard (fetch engine)", { engine: "fetch", backends: backends.map((b) => ({ url: `http://${b}` })) })];
  for (const a of ADDS) targets.push(await fetchFloor(procs, a === "" ? "floor" : a.includes(",") ? "floor + all of them" : `floor + ${a}`, backends, a));

  const run = (t: Target) => wrk(t, { connections: Number(values.connections), duration: values.duration! });
  for (const t of targets) await run(t); // warm-up, discarded
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, interleaved(targets, run));
  requireKept(clean, maxSteal);
  const mineOf = (name: string) => clean.kept.filter((x) => x.name === name);

  const total = (name: string) => median(mineOf(name).map((r) => r.user + r.sys));
  const floor = total("floor");
  console.log(`\nwrk -t1 -c${values.connections} -d${values.duration}s, ${clean.kept.length / targets.length} interleaved rounds kept of the ${rounds} asked, 3 sim backends, ${navigator.hardwareConcurrency} cores shared by all\n`);
  // The whole machine's CPU per request (wrk and the backends too): where the cost of fields
  // the backends must read shows, which the proxy's own time does not.
  const machine = (name: string) => median(mineOf(name).map((r) => r.machine));
  const floorIn = (r: { round: number }) => clean.kept.find((x) => x.round === r.round && x.name === "floor");
  console.log("| target | req/s | ÷ floor, per round | user µs/request | system µs/request | user+system − floor's | whole machine µs/request | whole machine − floor's |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const t of targets) {
    const mine = mineOf(t.name);
    const diff = total(t.name) - floor;
    const mdiff = machine(t.name) - machine("floor");
    const signed = (d: number) => (t.name === "floor" ? "-" : `${d >= 0 ? "+" : ""}${d.toFixed(1)}`);
    const ratios = mine.filter(floorIn).map((r) => r.rps / floorIn(r)!.rps);
    console.log(`| ${t.name} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(ratios, 2)} | ${spread(mine.map((r) => r.user))} | ${spread(mine.map((r) => r.sys))} | ${signed(diff)} | ${spread(mine.map((r) => r.machine))} | ${signed(mdiff)} |`);
  }
  console.log(`\n${setAsideNote(clean, maxSteal)}`);
} finally {
  await procs.stop();
}
