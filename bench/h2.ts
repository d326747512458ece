/**
 * HTTP/2 and gRPC through Switchyard (socket engine, one process), nginx and Caddy, side by
 * side in one run, with the same backends, each target's own CPU per request beside its
 * throughput and latency (issue 24's benchmark).
 *
 * Scenarios (client side × backend side), every one driven by h2load -c16 -m10 (`--connections`,
 * `--streams`) for `--duration` seconds:
 *   - h2c by prior knowledge, and h2 over TLS (ALPN; a throwaway self-signed certificate made with
 *     openssl in the bench's directory);
 *   - HTTP/1.1 backends, and h2c backends. The backends are three Bun.serve responders with
 *     `http2: true` on plain TCP (bench/h2-backends.ts), which serve HTTP/1.1 and h2c on one port:
 *     both backend sides reach literally the same processes. (Measured beside a node:http2
 *     responder, `--kind node`: Bun.serve's is several times cheaper per request; docs/performance.md.)
 * Targets: Switchyard's socket engine (`protocol: h2c` on the pool for h2c backends) and, for
 * HTTP/1.1 backends, its fetch engine (Bun.serve's own `http2`; its fetch has no h2c); nginx (`listen ... http2`,
 * `listen ... ssl http2`, `keepalive_requests` raised so that h2load's connections are not closed
 * after 1,000 requests; nginx proxies HTTP/1.1 only, so in the h2c-backend scenarios the reference
 * is nginx with HTTP/1.1 backends, the best it offers for the same clients, and the table says so);
 * Caddy (`servers { protocols h1 h2 h2c }`, `reverse_proxy h2c://...`); and "direct", h2load to one
 * backend, to show that the backends are not what limits the others.
 *
 * gRPC: unary calls of a generic Buffer service (bench/grpc-peers.ts, @grpc/grpc-js), `--grpc-
 * concurrency` calls in flight over `--grpc-channels` channels, through Switchyard (h2c front, h2c
 * pool) and nginx (`grpc_pass grpc://`), to three grpc-js servers, and to one server directly.
 * The servers run under Node when it is installed (bundled by `bun build`), since nginx's grpc
 * module fails every call on a reused connection to a Bun node:http2 server (below); the load
 * client runs under Bun.
 *
 * Latency is per request from h2load's --log-file (p99 and mean of the 2xx answers); CPU is the
 * user and system time of the target's own processes from /proc divided by the requests (calls)
 * completed (harness.ts, costOf). Runs are interleaved within each round and the rounds repeated;
 * the report gives median (min-max) over the rounds, and ratios to nginx computed per round, then
 * their median. Issue 24's targets: at least 0.8× nginx's req/s with p99 at or below nginx's. A
 * round in which a virtual machine's host took more than --max-steal % of the CPU in any run is set
 * aside and another run in its place (harness.ts, cleanRounds).
 *
 *   bun bench/h2.ts [--duration 5] [--rounds 3] [--connections 16] [--streams 10]
 *                   [--grpc-concurrency 64] [--grpc-channels 4] [--nginx-workers 1] [--max-steal 5]
 *   BENCH_QUICK=1 bun bench/h2.ts      a smoke run: 1 s runs, 1 round
 *
 * Needs h2load and openssl (apt-get install nghttp2-client openssl); nginx and caddy are used when
 * installed. Linux only (/proc), loopback only, ephemeral ports, bounded in time, and every process
 * it starts is stopped by PID at the end.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  Processes, caddy, root, cleanRounds, costOf, freePort, has, interleaved, median, need, nginxProxyPass, nginxWith, requireKept, setAsideNote, spread, switchyard, listeningOn,
  type Cost, type Started, type Target,
} from "./harness.ts";

const quick = process.env.BENCH_QUICK === "1";
const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: quick ? "1" : "5" },
    rounds: { type: "string", default: quick ? "1" : "3" },
    connections: { type: "string", default: "16" },
    streams: { type: "string", default: "10" },
    "grpc-concurrency": { type: "string", default: "64" },
    "grpc-channels": { type: "string", default: "4" },
    "nginx-workers": { type: "string", default: "1" },
    "max-steal": { type: "string", default: "5" },
  },
});
need("bench/h2.ts", ["h2load", "openssl"], "nghttp2-client openssl");
const duration = Number(values.duration);
const nginxWorkers = Number(values["nginx-workers"]);

/** What one run measured, whatever drove it (h2load or the gRPC load client). */
interface Result extends Cost {
  name: string;
  scenario: string;
  /** Requests (calls) answered 2xx (gRPC: OK) per second. */
  rps: number;
  p99Ms: number;
  meanMs: number;
  errors: number;
}

/** One load run against one target in one scenario. */
interface Run {
  name: string;
  scenario: string;
  target: Target;
  go(): Promise<Result>;
}

const procs = new Processes();
let logs = 0;

/** h2load against `url` for `duration` s; latency from its per-request log (2xx answers only). */
async function h2load(scenario: string, t: Target, url: string): Promise<Result> {
  const log = join(procs.dir, `h2load-${++logs}.log`);
  const r = await costOf(t.name, t.pids(), async () => {
    const p = Bun.spawn(["h2load", "-t1", `-c${values.connections}`, `-m${values.streams}`, `-D${duration}`, "--log-file", log, url], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    return { units: Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0), result: out };
  });
  const out = r.result;
  // Failed requests (reset, timed out) and answers other than 2xx.
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0);
  const other = [...(/status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out) ?? [])].slice(1).reduce((n, x) => n + Number(x), 0);
  // Each line: start (µs since the epoch), status, time to the end of the response (µs).
  const times: number[] = [];
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [, status, us] = line.split("\t");
    if (status !== undefined && status.startsWith("2")) times.push(Number(us) / 1000);
  }
  rmSync(log, { force: true });
  times.sort((a, b) => a - b);
  return {
    name: t.name, scenario, rps: r.units / duration, p99Ms: percentile(times, 0.99), meanMs: times.reduce((s, x) => s + x, 0) / Math.max(1, times.length),
    errors: failed + other, user: r.user, sys: r.sys, machine: r.machine, steal: r.steal,
  };
}

/** bench/grpc-peers.ts's load client against `t` for `duration` s, in its own process. */
async function grpcLoad(scenario: string, t: Target): Promise<Result> {
  const r = await costOf(t.name, t.pids(), async () => {
    const p = Bun.spawn([process.execPath, "bench/grpc-peers.ts", "load", "--target", `127.0.0.1:${t.port}`, "--duration", String(duration),
      "--concurrency", values["grpc-concurrency"]!, "--channels", values["grpc-channels"]!], { cwd: root, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    if ((await p.exited) !== 0) throw new Error(`the gRPC load client against ${t.name} exited ${p.exitCode}: ${err}`);
    const result = JSON.parse(out.trim().split("\n").pop() || "{}") as { calls?: number; errors?: number; seconds?: number; meanMs?: number; p99Ms?: number };
    return { units: result.calls ?? 0, result };
  });
  return {
    name: t.name, scenario, rps: r.units / (r.result.seconds ?? duration), p99Ms: r.result.p99Ms ?? NaN, meanMs: r.result.meanMs ?? NaN,
    errors: r.result.errors ?? 0, user: r.user, sys: r.sys, machine: r.machine, steal: r.steal,
  };
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

const SY = "switchyard (socket)";
const SY_FETCH = "switchyard (fetch)";
const NGINX = `nginx (${nginxWorkers} worker${nginxWorkers === 1 ? "" : "s"})`;
const CADDY = "caddy";
const DIRECT = "direct (one backend)";
const CLIENTS = [{ side: "h2c", tls: false }, { side: "h2 (TLS)", tls: true }] as const;
const BACKENDS = [{ side: "HTTP/1.1", protocol: "http1" }, { side: "h2c", protocol: "h2c" }] as const;
const scenarioName = (client: string, backend: string) => `${client} → ${backend} backends`;
const GRPC = "gRPC unary (h2c → h2c)";

try {
  // A throwaway self-signed certificate for 127.0.0.1 and localhost (h2load does not verify it).
  const cert = join(procs.dir, "cert.pem");
  const key = join(procs.dir, "key.pem");
  const ossl = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert], { stderr: "pipe" });
  if (ossl.exitCode !== 0) throw new Error(`openssl could not make a certificate: ${ossl.stderr.toString()}`);

  const b = procs.spawn([process.execPath, "bench/h2-backends.ts", "--count", "3"]);
  const backends = await listeningOn(b, 3);
  const direct: Target = { name: DIRECT, port: Number(backends[0]!.split(":").pop()), pids: () => [b.proc.pid] };

  const runs: Run[] = [];
  const url = (tls: boolean, port: number) => `${tls ? "https" : "http"}://127.0.0.1:${port}/`;
  for (const client of CLIENTS) {
    for (const backend of BACKENDS) {
      const scenario = scenarioName(client.side, backend.side);
      const add = (target: Target) => runs.push({ name: `${target.name} | ${scenario}`, scenario, target, go: () => h2load(scenario, target, url(client.tls, target.port)) });
      add(await switchyard(procs, SY, {
        engine: "socket", listen: { host: "127.0.0.1", port: 0, ...(client.tls ? { tls: { cert, key } } : {}) },
        protocol: backend.protocol, strategy: "least-connections", backends: backends.map((x) => ({ url: `http://${x}` })),
      }));
      // The fetch engine's HTTP/2 is Bun.serve's own; its upstream is Bun's fetch, HTTP/1.1 only.
      if (backend.protocol === "http1") {
        add(await switchyard(procs, SY_FETCH, {
          engine: "fetch", listen: { host: "127.0.0.1", port: 0, ...(client.tls ? { tls: { cert, key } } : {}) },
          strategy: "least-connections", backends: backends.map((x) => ({ url: `http://${x}` })),
        }));
      }
      if (has("caddy")) add(await caddy(procs, CADDY, { servers: backends, tls: client.tls ? { cert, key } : undefined, h2c: !client.tls, upstream: backend.protocol }));
    }
  }
  if (has("nginx")) {
    // nginx proxies HTTP/1.1 only: its runs are the h2c-backend scenarios' reference too.
    const plain = freePort();
    const tls = freePort();
    const location = `keepalive_requests 1000000; location / { ${nginxProxyPass("app")} }`;
    const n = await nginxWith(procs, `
  upstream app { least_conn; ${backends.map((x) => `server ${x};`).join(" ")} keepalive 64; }
  server { listen 127.0.0.1:${plain} http2; ${location} }
  server { listen 127.0.0.1:${tls} ssl http2; ssl_certificate ${cert}; ssl_certificate_key ${key}; ${location} }`, [plain, tls], { workers: nginxWorkers, tcp: true });
    for (const client of CLIENTS) {
      const scenario = scenarioName(client.side, "HTTP/1.1");
      const target: Target = { name: NGINX, port: client.tls ? tls : plain, pids: n.pids };
      runs.push({ name: `${NGINX} | ${scenario}`, scenario, target, go: () => h2load(scenario, target, url(client.tls, target.port)) });
    }
  }
  const h2cDirect = scenarioName("h2c", "h2c");
  runs.push({ name: `${DIRECT} | ${h2cDirect}`, scenario: h2cDirect, target: direct, go: () => h2load(h2cDirect, direct, url(false, direct.port)) });

  // gRPC: three grpc-js servers, behind Switchyard (h2c pool) and nginx's grpc_pass. They run
  // under Node when it is installed: Bun 1.4.5's node:http2 server refers to HPACK dynamic-table
  // entries in later responses on a connection, which nginx's grpc module (it keeps no dynamic
  // table) refuses ("upstream sent invalid http2 table index"), so behind nginx every call on a
  // reused upstream connection failed. Under Bun, nginx gets no upstream keep-alive instead.
  const node = has("node");
  let g: Started;
  if (node) {
    const bundle = join(procs.dir, "grpc-peers.mjs");
    const built = Bun.spawnSync([process.execPath, "build", "bench/grpc-peers.ts", "--target", "node", "--outfile", bundle], { cwd: root, stderr: "pipe" });
    if (built.exitCode !== 0) throw new Error(`bun build bench/grpc-peers.ts failed: ${built.stderr.toString()}`);
    g = procs.spawn(["node", bundle, "servers", "--count", "3"]);
  } else {
    g = procs.spawn([process.execPath, "bench/grpc-peers.ts", "servers", "--count", "3"]);
  }
  const grpcServers = await listeningOn(g, 3);
  const grpcTargets: Target[] = [
    await switchyard(procs, SY, { engine: "socket", protocol: "h2c", strategy: "least-connections", backends: grpcServers.map((x) => ({ url: `http://${x}` })) }),
    { name: "direct (one grpc-js server)", port: Number(grpcServers[0]!.split(":").pop()), pids: () => [g.proc.pid] },
  ];
  if (has("nginx")) {
    const port = freePort();
    const n = await nginxWith(procs, `
  upstream grpc { least_conn; ${grpcServers.map((x) => `server ${x};`).join(" ")}${node ? " keepalive 64;" : ""} }
  server { listen 127.0.0.1:${port} http2; keepalive_requests 1000000; location / { grpc_pass grpc://grpc; } }`, [port], { workers: nginxWorkers, tcp: true });
    grpcTargets.push({ name: NGINX, port, pids: n.pids });
  }
  for (const t of grpcTargets) runs.push({ name: `${t.name} | ${GRPC}`, scenario: GRPC, target: t, go: () => grpcLoad(GRPC, t) });

  // A warm-up run of each, discarded: JITs, pools and upstream connections warm.
  for (const r of runs) await r.go();
  const rounds = Number(values.rounds);
  const maxSteal = Number(values["max-steal"]);
  const clean = await cleanRounds(rounds, maxSteal, interleaved(runs, (r) => r.go()));
  requireKept(clean, maxSteal);
  const results = clean.kept;
  const kept = results.length / runs.length;

  console.log(`\nh2load -t1 -c${values.connections} -m${values.streams} -D${duration}; gRPC: ${values["grpc-concurrency"]} unary calls in flight over ${values["grpc-channels"]} grpc-js channels for ${duration} s. ${kept} interleaved round(s) kept of the ${rounds} asked. Switchyard one process per target; ${NGINX}; Caddy ${has("caddy") ? "(GOMAXPROCS unset: all cores)" : "not installed"}; 3 backends; gRPC servers under ${node ? "Node" : `Bun (nginx without upstream keep-alive)`}; ${navigator.hardwareConcurrency} cores shared by all; ${new Date().toISOString()}\n`);
  console.log("Median (min-max) over the rounds. Ratios to nginx per round, then their median; nginx proxies HTTP/1.1 only, so for h2c backends the reference is nginx with HTTP/1.1 backends for the same clients. Issue 24's targets: req/s at least 0.8× nginx's, p99 at or below nginx's.\n");
  console.log("| scenario | target | req/s | p99 ms | mean ms | own CPU µs/request | req/s ÷ nginx | p99 ÷ nginx | targets met | errors |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  const scenarios = [...new Set(runs.map((r) => r.scenario))];
  for (const scenario of scenarios) {
    const nginxScenario = scenario === GRPC ? GRPC : scenario.replace(/ h2c backends$/, " HTTP/1.1 backends");
    for (const name of [...new Set(runs.filter((r) => r.scenario === scenario).map((r) => r.target.name))]) {
      const mine = results.filter((r) => r.scenario === scenario && r.name === name);
      const rps: number[] = [];
      const p99: number[] = [];
      if (name !== NGINX && !name.startsWith("direct")) {
        for (const m of mine) {
          const n = results.find((r) => r.scenario === nginxScenario && r.name === NGINX && r.round === m.round);
          if (n === undefined || n.rps === 0) continue;
          rps.push(m.rps / n.rps);
          p99.push(m.p99Ms / n.p99Ms);
        }
      }
      const met = rps.length === 0 ? "-" : `${median(rps) >= 0.8 ? "yes" : "no"} / ${median(p99) <= 1 ? "yes" : "no"}`;
      console.log(`| ${scenario} | ${name} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(mine.map((r) => r.p99Ms), 2)} | ${spread(mine.map((r) => r.meanMs), 2)} | ${spread(mine.map((r) => r.user + r.sys), 1)} | ${spread(rps, 2)} | ${spread(p99, 2)} | ${met} | ${mine.reduce((s, r) => s + r.errors, 0)} |`);
    }
  }
  console.log("\n\"targets met\": req/s ≥ 0.8× nginx's / p99 ≤ nginx's, on the medians of the per-round ratios.");
  console.log(setAsideNote(clean, maxSteal));
} finally {
  await procs.stop();
}
