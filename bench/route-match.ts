/**
 * The route table's own cost per request, apart from any wire: ns per `match()` with 1 route
 * against 1,002 routes (500 exact hosts, 500 path prefixes, a wildcard and a catch-all), on
 * requests that hit a host route, a prefix route, the catch-all, and a path needing
 * normalization. Tables are interleaved round by round; the report gives each one's median and
 * min-max over the rounds, and the ratio of the large table to the single route measured in the
 * same run. CPU time of this process (process.cpuUsage), not wall time.
 *
 *   bun bench/route-match.ts [--rounds 7] [--iterations 200000]
 */
import { parseArgs } from "node:util";
import * as v from "valibot";
import { RouteSchema, type RouteInput } from "../src/route/schema.ts";
import { RouteTable, type RouteRequest } from "../src/route/table.ts";

const { values } = parseArgs({ args: Bun.argv.slice(2), options: { rounds: { type: "string", default: "7" }, iterations: { type: "string", default: "200000" } } });
const rounds = Number(values.rounds);
const iterations = Number(values.iterations);

const compile = (routes: RouteInput[]) => RouteTable.compile(routes.map((r) => v.parse(RouteSchema, r)), (name) => name);

const one = compile([{ name: "default", pool: "default" }]);
const many: RouteInput[] = [];
for (let i = 0; i < 500; i++) many.push({ name: `host-${i}`, match: { host: `h${i}.example.com` }, pool: "p" });
for (let i = 0; i < 500; i++) many.push({ name: `prefix-${i}`, match: { path: `/svc${i}` }, pool: "p" });
many.push({ name: "wild", match: { host: "*.w.example.com" }, pool: "p" });
many.push({ name: "default", pool: "default" });
const t0 = performance.now();
const large = compile(many);
const compileMs = performance.now() - t0;

const headers = { get: (_: string) => null };
const request = (target: string, host: string): RouteRequest => ({ method: "GET", target, host, headers, clientIp: "10.0.0.1" });
const requests: Record<string, RouteRequest> = {
  host: request("/api/users/42?x=1", "h250.example.com:8080"),
  prefix: request("/svc377/a/b", "other.example.com"),
  wildcard: request("/x", "a.w.example.com"),
  "catch-all": request("/nothing/here", "nobody.org"),
  "dot-segments": request("/svc1/../svc2/%61", "nobody.org"),
};

function measure(t: RouteTable<string>, r: RouteRequest): number {
  let sink = 0;
  const start = process.cpuUsage();
  for (let i = 0; i < iterations; i++) {
    const m = t.match(r);
    if (m !== undefined && "route" in m) sink += m.route.index;
  }
  const used = process.cpuUsage(start);
  if (sink < 0) console.log(sink);
  return ((used.user + used.system) * 1000) / iterations;
}

const results = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const [kind, r] of Object.entries(requests)) {
    for (const [name, t] of [["1 route", one], ["1,002 routes", large]] as const) {
      const key = `${name.padEnd(13)} ${kind}`;
      const ns = measure(t, r);
      if (round > 0) (results.get(key) ?? results.set(key, []).get(key)!).push(ns);
    }
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`route table match(), CPU ns per request; ${rounds - 1} rounds kept (the first warms up), ${iterations} requests each`);
console.log(`compiling 1,002 routes: ${compileMs.toFixed(1)} ms`);
for (const kind of Object.keys(requests)) {
  const a = results.get(`${"1 route".padEnd(13)} ${kind}`)!;
  const b = results.get(`${"1,002 routes".padEnd(13)} ${kind}`)!;
  const fmt = (xs: number[]) => `${median(xs).toFixed(0)} ns (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
  console.log(`${kind.padEnd(13)} 1 route ${fmt(a).padEnd(20)} 1,002 routes ${fmt(b).padEnd(20)} +${(median(b) - median(a)).toFixed(0)} ns`);
}
console.log(`machine: ${navigator.hardwareConcurrency} cores, load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}; ${new Date().toISOString()}`);
