/**
 * Layer 7 throughput, side by side: the same sim backends straight, behind nginx, behind
 * HAProxy and behind Switchyard, each driven by wrk with the same settings in the same run.
 * Reports requests/s, latency and each proxy's ratio to the direct run and to nginx.
 *
 *   bun bench/http.ts [--duration 10] [--connections 64,256] [--path /] [--access-log]
 *
 * Needs wrk (apt-get install wrk); nginx and haproxy are used when installed. Loopback only,
 * bounded in time, and every process it starts is stopped by PID at the end.
 */
import { parseArgs } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "64,256" },
    path: { type: "string", default: "/" },
    "access-log": { type: "boolean", default: false },
  },
});
const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
const procs: Subprocess[] = [];
const has = (cmd: string) => Bun.which(cmd, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }) !== null;
if (!has("wrk")) {
  console.error("bench/http.ts needs wrk: apt-get install wrk");
  process.exit(2);
}

const BACKEND_BASE = 18001;
const ports = { switchyard: 18100, nginx: 18101, haproxy: 18102 };
const backends = [0, 1, 2].map((i) => `127.0.0.1:${BACKEND_BASE + i}`);

function spawn(cmd: string[], opts: { cwd?: string } = {}): Subprocess {
  const p = Bun.spawn(cmd, { cwd: opts.cwd ?? root, stdout: "ignore", stderr: "pipe" });
  procs.push(p);
  return p;
}

async function waitUp(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      await (await fetch(`http://127.0.0.1:${port}/`)).arrayBuffer();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`nothing answered on port ${port}`);
}

async function cleanup() {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
}
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));

interface Result { name: string; connections: number; rps: number; p50: string; p99: string; errors: number }

async function wrk(name: string, port: number, connections: number): Promise<Result> {
  const p = Bun.spawn(["wrk", "-t2", `-c${connections}`, `-d${values.duration}s`, "--latency", `http://127.0.0.1:${port}${values.path}`], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "?";
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "?";
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?(\d+)/.exec(out)?.[1] ?? 0);
  return { name, connections, rps, p50, p99, errors };
}

try {
  spawn([process.execPath, "sim/main.ts", "--count", "3", "--base-port", String(BACKEND_BASE)]);
  await waitUp(BACKEND_BASE);

  const targets: { name: string; port: number }[] = [{ name: "direct (one backend)", port: BACKEND_BASE }];

  const config = join(dir, "switchyard.json");
  writeFileSync(config, JSON.stringify({
    listen: { host: "127.0.0.1", port: ports.switchyard }, admin: false,
    log: { access: values["access-log"] }, healthCheck: { type: "tcp", interval: "2s" },
    backends: backends.map((b) => ({ url: `http://${b}` })),
  }));
  spawn([process.execPath, "src/cli.ts", "serve", "--config", config]);
  await waitUp(ports.switchyard);
  targets.push({ name: "switchyard", port: ports.switchyard });

  if (has("nginx")) {
    writeFileSync(join(dir, "nginx.conf"), `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log ${values["access-log"] ? `${dir}/nginx-access.log` : "off"};
  upstream pool { least_conn; ${backends.map((b) => `server ${b};`).join(" ")} keepalive 64; }
  server { listen 127.0.0.1:${ports.nginx};
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header Host $host; } }
}`);
    spawn(["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]);
    await waitUp(ports.nginx);
    targets.push({ name: "nginx (1 worker)", port: ports.nginx });
  }
  if (has("haproxy")) {
    writeFileSync(join(dir, "haproxy.cfg"), `
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${ports.haproxy}
  default_backend pool
backend pool
  balance leastconn
${backends.map((b, i) => `  server b${i + 1} ${b} check`).join("\n")}
`);
    spawn(["haproxy", "-f", join(dir, "haproxy.cfg")]);
    await waitUp(ports.haproxy);
    targets.push({ name: "haproxy (1 thread)", port: ports.haproxy });
  }

  const results: Result[] = [];
  for (const c of values.connections!.split(",").map(Number)) {
    for (const t of targets) {
      await wrk(t.name, t.port, c); // warm-up run, discarded, so that pools and JITs are warm
      results.push(await wrk(t.name, t.port, c));
    }
  }

  console.log(`\nwrk -t2 -d${values.duration}s ${values.path}, 3 sim backends, access log ${values["access-log"] ? "on" : "off"}, ${navigator.hardwareConcurrency} cores shared by all\n`);
  console.log("| target | conns | req/s | p50 | p99 | errors | vs direct | vs nginx |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of results) {
    const direct = results.find((x) => x.connections === r.connections && x.name.startsWith("direct"))!;
    const nginx = results.find((x) => x.connections === r.connections && x.name.startsWith("nginx"));
    const ratio = (x?: Result) => (x && x.rps > 0 ? (r.rps / x.rps).toFixed(2) : "-");
    console.log(`| ${r.name} | ${r.connections} | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} | ${r.errors} | ${ratio(direct)} | ${ratio(nginx)} |`);
  }
} finally {
  await cleanup();
}
