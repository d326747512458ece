/**
 * Layer 7 throughput, side by side: the same sim backends straight, behind nginx (2 workers;
 * also a second nginx that adds the fields Switchyard adds, harness.ts's nginxConfig),
 * behind HAProxy (2 threads), behind Switchyard's two engines (one process, and `workers: 2`) and behind the least a Bun.serve +
 * fetch forwarder can do (bench/fetch-floor.ts), each driven by wrk with the same settings.
 * Targets are interleaved within each round and the rounds repeated, because this machine is
 * noisy: the report gives each target's median and its spread (min-max) over the rounds, and
 * ratios to nginx and to the fetch floor computed per round, then their median. A round in
 * which a virtual machine's host took more than --max-steal % of the CPU during any run is set
 * aside and another run in its place, up to --rounds more (harness.ts, cleanRounds), so fewer
 * rounds may be kept; the report says how many were set aside.
 *
 *   bun bench/http.ts [--duration 10] [--connections 64,256] [--rounds 3] [--path /]
 *                     [--wrk-threads 1] [--only NAME,NAME] [--max-steal 5] [--access-log]
 *
 * Needs wrk (apt-get install wrk); nginx and haproxy are used when installed. Loopback only,
 * bounded in time, and every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Processes, cleanRounds, haproxyConfig, has, median, nginxConfig, setAsideNote, waitUp, wrk as runWrk, wrkMs, type WrkResult } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "64,256" },
    path: { type: "string", default: "/" },
    rounds: { type: "string", default: "3" },
    "wrk-threads": { type: "string", default: "1" },
    only: { type: "string" },
    "access-log": { type: "boolean", default: false },
    "max-steal": { type: "string", default: "5" },
  },
});
const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
const procs = new Processes();
if (!has("wrk")) {
  console.error("bench/http.ts needs wrk: apt-get install wrk");
  process.exit(2);
}

const BACKEND_BASE = 18001;
const ports = { switchyard: 18100, nginx: 18101, haproxy: 18102, socket: 18103, floor: 18104, fetch2: 18105, socket2: 18106, nginxFields: 18107 };
const backends = [0, 1, 2].map((i) => `127.0.0.1:${BACKEND_BASE + i}`);

type Result = WrkResult;
const NGINX_FIELDS = "nginx (2 workers, Switchyard's fields)";
const wrk = (name: string, port: number, connections: number) =>
  runWrk(name, port, { connections, duration: values.duration!, path: values.path, threads: values["wrk-threads"] });

try {
  procs.spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BACKEND_BASE)]);
  await waitUp(BACKEND_BASE);

  const targets: { name: string; port: number }[] = [{ name: "direct (one backend)", port: BACKEND_BASE }];

  const variants = [
    { engine: "fetch", workers: 1, port: ports.switchyard },
    { engine: "socket", workers: 1, port: ports.socket },
    { engine: "fetch", workers: 2, port: ports.fetch2 },
    { engine: "socket", workers: 2, port: ports.socket2 },
  ] as const;
  for (const { engine, workers, port } of variants) {
    const config = join(dir, `switchyard-${engine}-${workers}.json`);
    writeFileSync(config, JSON.stringify({
      listen: { host: "127.0.0.1", port }, admin: false, engine, workers,
      log: { access: values["access-log"] }, healthCheck: { type: "tcp", interval: "2s" },
      backends: backends.map((b) => ({ url: `http://${b}` })),
    }));
    procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", config]);
    await waitUp(port);
    targets.push({ name: workers === 1 ? `switchyard (${engine})` : `switchyard (${engine}, ${workers} workers)`, port });
  }
  procs.spawn([process.execPath, "bench/fetch-floor.ts", String(ports.floor), ...backends.map((b) => `http://${b}`)]);
  await waitUp(ports.floor);
  targets.push({ name: "bun fetch floor", port: ports.floor });

  if (has("nginx")) {
    writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, [{ port: ports.nginx, balance: "least_conn;", servers: backends }], { workers: 2, accessLog: values["access-log"] }));
    procs.spawn(["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]);
    await waitUp(ports.nginx);
    targets.push({ name: "nginx (2 workers)", port: ports.nginx });
    // The same nginx adding the fields Switchyard adds (harness.ts): the backends and wrk then
    // read the same bytes behind either, and the difference left is the proxies' own.
    const dir2 = join(dir, "fields");
    mkdirSync(dir2);
    writeFileSync(join(dir2, "nginx.conf"), nginxConfig(dir2, [{ port: ports.nginxFields, balance: "least_conn;", servers: backends }], { workers: 2, accessLog: values["access-log"], fields: "switchyard" }));
    procs.spawn(["nginx", "-c", join(dir2, "nginx.conf"), "-p", dir2]);
    await waitUp(ports.nginxFields);
    targets.push({ name: NGINX_FIELDS, port: ports.nginxFields });
  }
  if (has("haproxy")) {
    writeFileSync(join(dir, "haproxy.cfg"), haproxyConfig(ports.haproxy, backends));
    procs.spawn(["haproxy", "-f", join(dir, "haproxy.cfg")]);
    await waitUp(ports.haproxy);
    targets.push({ name: "haproxy (2 threads)", port: ports.haproxy });
  }

  const only = values.only?.split(",");
  const chosen = only ? targets.filter((t) => t.name.startsWith("direct") || only.some((o) => t.name.includes(o))) : targets;
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const results: (Result & { round: number })[] = [];
  const notes: string[] = [];
  for (const c of values.connections!.split(",").map(Number)) {
    // Warm-up runs, discarded, so that pools and JITs are warm.
    for (const t of chosen) await wrk(t.name, t.port, c);
    const r = await cleanRounds(rounds, maxSteal, async (round) => {
      // Interleaved: every target once per round, the order rotated so none always goes first.
      const runs: Result[] = [];
      for (let i = 0; i < chosen.length; i++) {
        const t = chosen[(i + round) % chosen.length]!;
        runs.push(await wrk(t.name, t.port, c));
      }
      return runs;
    });
    results.push(...r.kept);
    notes.push(`${c} connections: ${setAsideNote(r, maxSteal)}`);
  }

  console.log(`\nwrk -t${values["wrk-threads"]} -d${values.duration}s ${values.path}, ${rounds} interleaved rounds asked (kept: below), 3 sim backends, access log ${values["access-log"] ? "on" : "off"}, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | conns | req/s median (min-max) | p99 median (min-max) | errors | vs nginx | vs nginx, same fields | vs fetch floor |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const c of values.connections!.split(",").map(Number)) {
    for (const t of chosen) {
      const mine = results.filter((r) => r.connections === c && r.name === t.name);
      if (mine.length === 0) {
        console.log(`| ${t.name} | ${c} | no round the host left alone | | | | | |`);
        continue;
      }
      const ratioTo = (name: string) => {
        const per = mine.map((r) => {
          const ref = results.find((x) => x.connections === c && x.round === r.round && x.name === name);
          return ref && ref.rps > 0 ? r.rps / ref.rps : NaN;
        }).filter((x) => !Number.isNaN(x));
        return per.length ? `${median(per).toFixed(2)} (${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)})` : "-";
      };
      const rps = mine.map((r) => r.rps);
      const p99 = mine.map((r) => wrkMs(r.p99));
      const errors = mine.reduce((n, r) => n + r.errors, 0);
      console.log(`| ${t.name} | ${c} | ${Math.round(median(rps))} (${Math.round(Math.min(...rps))}-${Math.round(Math.max(...rps))}) | ${median(p99).toFixed(2)}ms (${Math.min(...p99).toFixed(2)}-${Math.max(...p99).toFixed(2)}) | ${errors} | ${ratioTo("nginx (2 workers)")} | ${ratioTo(NGINX_FIELDS)} | ${ratioTo("bun fetch floor")} |`);
    }
  }
  console.log(`\n${notes.join("\n")}`);
} finally {
  await procs.stop();
}
