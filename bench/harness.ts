/**
 * What every bench shares, so that each starts a reference the same way and measures it the
 * same way:
 *
 * - the processes a bench starts (Processes: stopped by PID, always, their output kept for the
 *   error when one fails to start) and the ports they listen on (ephemeral, so that benches run
 *   side by side on one machine without clashing);
 * - one function per reference, each resolving to a Target (name, port and the PIDs whose CPU
 *   is the target's own) once it answers: sim (the backends), switchyard, nginx, haproxy, caddy,
 *   fetchFloor (bench/fetch-floor.ts), bareForwarder (bench/bare-forwarder.ts) and redis;
 * - one load run, wrk(), which reports throughput, latency and errors beside the target's own
 *   CPU per request (user and system time of its processes from /proc, divided by the requests
 *   completed), the whole machine's, and the share of the CPU a VM's host took meanwhile;
 * - rounds that host did not disturb (cleanRounds) and how a spread is written (spread).
 *
 * Linux only (/proc). Loopback only.
 */
import type { Subprocess } from "bun";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Is `cmd` installed (also looking in the sbin directories, where nginx and haproxy live)? */
export function has(cmd: string): boolean {
  return Bun.which(cmd, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }) !== null;
}

/** Exits with status 2 and the apt-get line when one of `cmds` is missing. */
export function need(bench: string, cmds: readonly string[], packages: string): void {
  const missing = cmds.filter((c) => !has(c));
  if (missing.length > 0) {
    console.error(`${bench} needs ${missing.join(", ")}: apt-get install ${packages}`);
    process.exit(2);
  }
}

/** What one bench measures: where it listens and which processes' CPU is its own. */
export interface Target {
  name: string;
  port: number;
  /** Read at each run: a target with workers counts its owner and every worker alive then. */
  pids(): number[];
}

/** A process one bench started, and what it has written so far (stdout and stderr, the last 64 KiB). */
export interface Started {
  proc: Subprocess;
  output(): string;
}

/** The processes one bench started and the directory of their files; stop() ends them, each by its own PID, and removes the directory. */
export class Processes {
  private readonly procs: Subprocess[] = [];
  /** Where the references' configs, logs and pid files go. */
  readonly dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));

  constructor() {
    process.on("SIGINT", () => void this.stop().then(() => process.exit(130)));
  }

  /** Starts `cmd` (from the repository's root unless told); its output is read all along, so a chatty process never blocks on a full pipe. */
  spawn(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Started {
    const p = Bun.spawn(cmd, { cwd: opts.cwd ?? root, env: opts.env ? { ...process.env, ...opts.env } : undefined, stdout: "pipe", stderr: "pipe" });
    this.procs.push(p);
    let out = "";
    const drain = async (s: ReadableStream<Uint8Array>) => {
      const text = new TextDecoder();
      for await (const c of s) out = (out + text.decode(c, { stream: true })).slice(-65536);
    };
    void drain(p.stdout);
    void drain(p.stderr);
    return { proc: p, output: () => out };
  }

  async stop(): Promise<void> {
    for (const p of this.procs) if (p.exitCode === null) p.kill("SIGTERM");
    await Promise.all(this.procs.map((p) => p.exited));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A port nothing listens on now, for a program that cannot be told to take an ephemeral one
 * (nginx, HAProxy, Caddy, Redis). Another program could take it before ours binds: then ours
 * exits and waitUp says so with its output.
 */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/**
 * Resolves once 127.0.0.1:port answers: an HTTP GET / (`http`, the default) or a TCP connect.
 * Throws when `started` exits first, with what it wrote, or after 15 s.
 */
export async function waitUp(port: number, started?: Started, o: { http?: boolean } = {}): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (started && started.proc.exitCode !== null) throw new Error(`exited (${started.proc.exitCode}) before answering on port ${port}:\n${started.output()}`);
    const ok = o.http === false
      ? await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, open(s) { s.end(); } } }).then(() => true, () => false)
      : await fetch(`http://127.0.0.1:${port}/`).then((r) => r.arrayBuffer().then(() => true), () => false);
    if (ok) return;
    await Bun.sleep(50);
  }
  throw new Error(`nothing answered on port ${port} within 15 s${started ? `:\n${started.output()}` : ""}`);
}

/** Resolves with what `find` finds in what `started` has written (`what`, for the error); throws when it exits first or after 15 s. */
async function waitOutput<T>(started: Started, what: string, find: (output: string) => T | undefined): Promise<T> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const found = find(started.output());
    if (found !== undefined) return found;
    if (started.proc.exitCode !== null) throw new Error(`exited (${started.proc.exitCode}) before writing ${what}:\n${started.output()}`);
    await Bun.sleep(20);
  }
  throw new Error(`did not write ${what} within 15 s:\n${started.output()}`);
}

// ---------------------------------------------------------------------------------------------
// The references, one function each. Every one resolves once its target answers.

/** Numbers the config files and directories of one bench's references, so that none overwrites another's. */
let serial = 0;

/** The host:port of the first `count` "listening on http://HOST:PORT" lines `started` writes (the sim, bench/h2-backends.ts, bench/grpc-peers.ts). */
export function listeningOn(started: Started, count: number): Promise<string[]> {
  return waitOutput(started, `${count} "listening on" lines`, (out) => {
    const found = [...out.matchAll(/listening on http:\/\/(\S+)/g)].map((m) => m[1]!);
    return found.length >= count ? found : undefined;
  });
}

/** The sim's backends (one process), each host:port; `latency` (ms, one per backend) is set through their /_control. */
export async function sim(procs: Processes, o: { count?: number; latency?: readonly number[] } = {}): Promise<{ backends: string[]; target: Target }> {
  const count = o.count ?? o.latency?.length ?? 3;
  const s = procs.spawn([process.execPath, "sim/main.ts", "--count", String(count), "--base-port", "0"]);
  const backends = await listeningOn(s, count);
  if (o.latency) {
    await Promise.all(backends.map((b, i) => fetch(`http://${b}/_control`, { method: "POST", body: JSON.stringify({ latency: o.latency![i] }) }).then((r) => r.text())));
  }
  const port = Number(backends[0]!.split(":").pop());
  return { backends, target: { name: "direct (one backend)", port, pids: () => [s.proc.pid] } };
}

/**
 * Switchyard (`serve --config`), listening on an ephemeral loopback port, with no admin
 * listener, no access log and a TCP health check every 2 s unless `config` says otherwise
 * (`config` is merged over those). `admin` is the admin URL when the config asks for one.
 */
export async function switchyard(procs: Processes, name: string, config: Record<string, unknown>): Promise<Target & { started: Started; admin?: string }> {
  const file = join(procs.dir, `switchyard-${++serial}.json`);
  // A config with `listeners` names its own (the first one is measured); `listen` beside them is refused.
  const listen = config.listeners === undefined ? { listen: { host: "127.0.0.1", port: 0 } } : {};
  writeFileSync(file, JSON.stringify({
    ...listen, admin: false, log: { access: false }, healthCheck: { type: "tcp", interval: "2s" }, ...config,
  }));
  const s = procs.spawn([process.execPath, "src/cli.ts", "serve", "--config", file]);
  // "http proxy listening on ..." (the single-listener form) or "http proxy \"web\" listening on ...".
  const [scheme, portText] = await waitOutput(s, "its proxy port", (out) => /proxy (?:"[^"]*" )?listening on (\w+):\/\/127\.0\.0\.1:(\d+)/.exec(out)?.slice(1, 3));
  const port = Number(portText);
  const admin = config.admin ? await waitOutput(s, "its admin URL", (out) => /admin listening on (\S+)/.exec(out)?.[1]) : undefined;
  // A TLS listener (https://) answers no plain GET: a TCP connect says it is up.
  await waitUp(port, s, { http: config.mode !== "tcp" && scheme === "http" });
  return { name, port, started: s, admin, pids: () => withChildren(s.proc.pid) };
}

/** bench/fetch-floor.ts: the least a Bun.serve + fetch forwarder does; `add` is its FLOOR_ADD. */
export async function fetchFloor(procs: Processes, name: string, backends: readonly string[], add = ""): Promise<Target> {
  const port = freePort();
  const s = procs.spawn([process.execPath, "bench/fetch-floor.ts", String(port), ...backends.map((b) => `http://${b}`)], { env: { FLOOR_ADD: add } });
  await waitUp(port, s);
  return { name, port, pids: () => [s.proc.pid] };
}

/** bench/bare-forwarder.ts: the least a Bun.listen / Bun.connect forwarder does; `copies` processes share the port. */
export async function bareForwarder(procs: Processes, name: string, backends: readonly string[], copies = 1): Promise<Target> {
  const port = freePort();
  const ss = Array.from({ length: copies }, () => procs.spawn([process.execPath, "bench/bare-forwarder.ts", String(port), ...backends.map((b) => `http://${b}`)]));
  for (const s of ss) await waitUp(port, s);
  return { name, port, pids: () => ss.map((s) => s.proc.pid) };
}

export interface NginxUpstream {
  name: string;
  /** "least_conn;", "" (round robin) ... */
  balance: string;
  /** host:port of each server. */
  servers: readonly string[];
  /** Share the upstream's state (least_conn's counts) between workers: nginx's `zone`. */
  zone?: boolean;
}

/**
 * The fields Switchyard adds (src/http/headers.ts), as nginx directives: to the backend
 * X-Forwarded-For/-Proto/-Host, X-Real-IP, Via and X-Request-Id, to the client Via and
 * X-Request-Id. With them nginx puts the same bytes on the wire as Switchyard does, so the
 * backends and wrk do the same work behind either (`fields: "switchyard"`).
 */
const SWITCHYARD_FIELDS = `
      proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host; proxy_set_header Via "1.1 switchyard";
      proxy_set_header X-Request-Id $request_id;
      add_header Via "1.1 switchyard"; add_header X-Request-Id $request_id;`;

/** The directives of a `location` that proxies to `upstream` with upstream keep-alive and the fields `fields` asks for. */
export function nginxProxyPass(upstream: string, fields: "minimal" | "switchyard" = "minimal"): string {
  return `proxy_pass http://${upstream}; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header Host $host;${fields === "switchyard" ? SWITCHYARD_FIELDS : ""}`;
}

/**
 * One nginx (master and `workers` workers, 1 unless told) whose `http` block holds `http` (its
 * upstreams and servers, written by the caller); resolves once every port of `ports` answers.
 * Its PIDs are the master's and its workers'. `tcp`: wait for a TCP connect instead of an
 * HTTP/1.1 answer, for ports that give none (TLS, or h2c-only `listen ... http2` in nginx 1.22).
 */
export async function nginxWith(procs: Processes, http: string, ports: readonly number[], o: { workers?: number; accessLog?: boolean; tcp?: boolean } = {}): Promise<{ pids(): number[] }> {
  const home = join(procs.dir, `nginx-${++serial}`);
  mkdirSync(home, { recursive: true });
  writeFileSync(join(home, "nginx.conf"), `
worker_processes ${o.workers ?? 1}; daemon off; pid ${home}/nginx.pid; error_log ${home}/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log ${o.accessLog ? `${home}/nginx-access.log` : "off"};${http}
}`);
  const s = procs.spawn(["nginx", "-c", join(home, "nginx.conf"), "-p", home]);
  for (const p of ports) await waitUp(p, s, { http: !o.tcp });
  return { pids: () => withChildren(s.proc.pid) };
}

/**
 * One nginx (master and `workers` workers, 1 unless told) with upstream keep-alive and one
 * server block per upstream, each a Target sharing the same processes. `fields`: "minimal"
 * (default) sends X-Forwarded-For and Host only, as a bare nginx proxy does; "switchyard" adds
 * what Switchyard adds (SWITCHYARD_FIELDS).
 */
export async function nginx(procs: Processes, upstreams: readonly NginxUpstream[], o: { workers?: number; accessLog?: boolean; fields?: "minimal" | "switchyard" } = {}): Promise<Target[]> {
  const ports = upstreams.map(() => freePort());
  const blocks = upstreams.map((u, i) => `
  upstream pool${i} { ${u.zone ? `zone pool${i} 64k; ` : ""}${u.balance} ${u.servers.map((s) => `server ${s};`).join(" ")} keepalive 64; }
  server { listen 127.0.0.1:${ports[i]};
    location / { ${nginxProxyPass(`pool${i}`, o.fields)} } }`);
  const n = await nginxWith(procs, blocks.join(""), ports, o);
  return upstreams.map((u, i) => ({ name: u.name, port: ports[i]!, pids: n.pids }));
}

/**
 * HAProxy with `threads` threads (2 unless told) in front of `servers`: in HTTP mode leastconn,
 * checked, with X-Forwarded-For and keep-alive; in TCP mode (`mode: "tcp"`) round robin, unchecked.
 */
export async function haproxy(procs: Processes, name: string, o: { servers: readonly string[]; threads?: number; mode?: "http" | "tcp" }): Promise<Target> {
  const port = freePort();
  const http = (o.mode ?? "http") === "http";
  const file = join(procs.dir, `haproxy-${++serial}.cfg`);
  writeFileSync(file, `
global
  nbthread ${o.threads ?? 2}
  maxconn 4096
defaults
  mode ${http ? "http" : "tcp"}
  timeout connect 5s
  timeout client 60s
  timeout server 60s
${http ? "  option forwardfor\n  option http-keep-alive\n" : ""}frontend fe
  bind 127.0.0.1:${port}
  default_backend pool
backend pool
  balance ${http ? "leastconn" : "roundrobin"}
${o.servers.map((b, i) => `  server b${i + 1} ${b}${http ? " check" : ""}`).join("\n")}
`);
  const s = procs.spawn(["haproxy", "-f", file]);
  await waitUp(port, s, { http });
  return { name, port, pids: () => [s.proc.pid] };
}

/**
 * Caddy (Debian's caddy 2.6) as a reverse proxy in front of `servers`: `reverse_proxy` with
 * `lb_policy least_conn` and upstream keep-alive (64 idle connections per backend, as nginx's
 * `keepalive 64`). No admin endpoint and no automatic HTTPS (an http:// site address and
 * `auto_https off`), so it never tries to get a certificate; its config and data directories
 * are in the bench's directory, so nothing is written to $HOME. It adds X-Forwarded-For/-Proto/-Host itself.
 *
 * For HTTP/2 (bench/h2.ts): `tls` serves HTTPS with that certificate (HTTP/1.1 and h2 by ALPN,
 * no HTTP/3); `h2c` takes cleartext HTTP/2 by prior knowledge beside HTTP/1.1 (its `servers {
 * protocols h1 h2 h2c }`); `upstream: "h2c"` speaks cleartext HTTP/2 to the backends
 * (`reverse_proxy h2c://...`).
 */
export async function caddy(procs: Processes, name: string, o: { servers: readonly string[]; tls?: { cert: string; key: string }; h2c?: boolean; upstream?: "http1" | "h2c" }): Promise<Target> {
  const port = freePort();
  const home = join(procs.dir, `caddy-${++serial}`);
  mkdirSync(home, { recursive: true });
  const file = join(home, "Caddyfile");
  const protocols = o.tls ? "h1 h2" : o.h2c ? "h1 h2 h2c" : undefined;
  const scheme = o.upstream === "h2c" ? "h2c://" : "";
  writeFileSync(file, `{
	admin off
	auto_https off${protocols ? `
	servers {
		protocols ${protocols}
	}` : ""}
}
${o.tls ? "https" : "http"}://:${port} {
	bind 127.0.0.1${o.tls ? `
	tls ${o.tls.cert} ${o.tls.key}` : ""}
	reverse_proxy ${o.servers.map((s) => scheme + s).join(" ")} {
		lb_policy least_conn
		transport http {
			keepalive 60s
			keepalive_idle_conns_per_host 64
		}
	}
}
`);
  const s = procs.spawn(["caddy", "run", "--config", file, "--adapter", "caddyfile"], { env: { XDG_CONFIG_HOME: home, XDG_DATA_HOME: home, HOME: home } });
  await waitUp(port, s, { http: !o.tls });
  return { name, port, pids: () => [s.proc.pid] };
}

/** A Redis server on an ephemeral port, no persistence. */
export async function redis(procs: Processes): Promise<Target> {
  const port = freePort();
  const s = procs.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", procs.dir]);
  await waitUp(port, s, { http: false });
  return { name: "direct (redis-server)", port, pids: () => [s.proc.pid] };
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/** utime and stime of every process in `pids` (all their threads), in µs. Linux only (/proc). */
export function processCpu(pids: readonly number[]): [user: number, sys: number] {
  const tickUs = 1_000_000 / 100; // USER_HZ
  let user = 0;
  let sys = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    user += Number(f[11]) * tickUs;
    sys += Number(f[12]) * tickUs;
  }
  return [user, sys];
}

/**
 * CPU time of the whole machine so far, µs, from /proc/stat's first line: `busy` is every
 * process's and the kernel's own work (user, nice, system, irq, softirq), `all` adds idle,
 * iowait and steal, and `steal` is the time a virtual machine's host ran something else when
 * it wanted to run (on a shared host, the share of a run it did not get).
 */
export function machineCpu(): { busy: number; all: number; steal: number } {
  const tickUs = 1_000_000 / 100; // USER_HZ
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy: busy * tickUs, all: (busy + idle! + iowait! + steal!) * tickUs, steal: steal! * tickUs };
}

/** The % of the machine's CPU time between two machineCpu() readings that its host took. */
export function stealPercent(a: ReturnType<typeof machineCpu>, b: ReturnType<typeof machineCpu>): number {
  const all = b.all - a.all;
  return all > 0 ? (100 * (b.steal - a.steal)) / all : 0;
}

/** What some work cost: the target's own CPU and the whole machine's, per unit of work done. */
export interface Cost {
  /** µs of the target's processes' user and system time per unit. */
  user: number;
  sys: number;
  /** µs of the whole machine's CPU per unit (machineCpu's busy): every process, load generator and backends included. */
  machine: number;
  /** % of the machine's CPU its host took meanwhile. */
  steal: number;
}

/**
 * Runs `work` and divides what the target's processes (`pids`, read before it starts) and the
 * machine spent meanwhile by the units it reports done. Throws when it did none.
 */
export async function costOf<T>(name: string, pids: readonly number[], work: () => Promise<{ units: number; result: T }>): Promise<Cost & { units: number; result: T }> {
  const [u0, s0] = processCpu(pids);
  const m0 = machineCpu();
  const { units, result } = await work();
  const [u1, s1] = processCpu(pids);
  const m1 = machineCpu();
  if (units === 0) throw new Error(`${name} completed nothing in a run`);
  return { units, result, user: (u1 - u0) / units, sys: (s1 - s0) / units, machine: (m1.busy - m0.busy) / units, steal: stealPercent(m0, m1) };
}

/** One wrk run against one target: its throughput and latency, beside its own CPU per request. */
export interface WrkResult extends Cost {
  name: string;
  connections: number;
  rps: number;
  requests: number;
  /** As wrk prints them ("1.23ms"). */
  p50: string;
  p90: string;
  p99: string;
  /** p99 in milliseconds. */
  p99Ms: number;
  /** Non-2xx/3xx answers and socket errors. */
  errors: number;
}

/** wrk --latency against `t` (1 thread unless told; `headers` sent with every request), with the CPU of `t`'s processes and of the machine around it. */
export async function wrk(t: Target, o: { connections: number; duration: number | string; path?: string; threads?: number | string; headers?: Readonly<Record<string, string>>; scheme?: "http" | "https" }): Promise<WrkResult> {
  // -H "Host: ..." replaces the Host wrk would send (the target's address).
  const headers = Object.entries(o.headers ?? {}).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const r = await costOf(t.name, t.pids(), async () => {
    const p = Bun.spawn(["wrk", `-t${o.threads ?? 1}`, `-c${o.connections}`, `-d${o.duration}s`, "--latency", ...headers, `${o.scheme ?? "http"}://127.0.0.1:${t.port}${o.path ?? "/"}`], { stdout: "pipe" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    return { units: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0), result: out };
  });
  const out = r.result;
  const pct = (n: number) => new RegExp(`^\\s+${n}%\\s+(\\S+)`, "m").exec(out)?.[1] ?? "?";
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?(\d+)/.exec(out)?.[1] ?? 0);
  const p99 = pct(99);
  return {
    name: t.name, connections: o.connections, rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0), requests: r.units,
    p50: pct(50), p90: pct(90), p99, p99Ms: wrkMs(p99), errors, user: r.user, sys: r.sys, machine: r.machine, steal: r.steal,
  };
}

/** wrk's "850.00us", "9.20ms", "1.02s", "2.00m" in milliseconds (NaN if unreadable). */
export function wrkMs(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as "us" | "ms" | "s" | "m"];
}

/**
 * Interleaved rounds that a virtual machine's host did not disturb. This machine is a VM on a
 * shared host: in some rounds the host takes 20-40% of its CPU time ("steal" in /proc/stat),
 * and every target measured then looks slower by about as much, whichever it is, so a ratio
 * between two targets of one round is off by however unevenly the steal fell on them. A round
 * in which any run lost more than `maxSteal` % is set aside and another run in its place, up
 * to `rounds` more; what was set aside is counted, never mixed in. Where there is no host to
 * steal (bare metal), no round is set aside.
 */
export async function cleanRounds<T extends { steal: number }>(
  rounds: number,
  maxSteal: number,
  runRound: (round: number) => Promise<T[]>,
): Promise<{ kept: (T & { round: number })[]; setAside: number; worstSteal: number }> {
  const kept: (T & { round: number })[] = [];
  let setAside = 0;
  let worstSteal = 0;
  for (let attempt = 0, good = 0; good < rounds && attempt < 2 * rounds; attempt++) {
    const runs = await runRound(attempt);
    const steal = Math.max(0, ...runs.map((r) => r.steal));
    if (steal > maxSteal) {
      setAside++;
      worstSteal = Math.max(worstSteal, steal);
      console.error(`round ${attempt + 1} set aside: the host took ${steal.toFixed(1)}% of the CPU in one of its runs (limit ${maxSteal}%)`);
      continue;
    }
    kept.push(...runs.map((r) => ({ ...r, round: good })));
    good++;
  }
  return { kept, setAside, worstSteal };
}

/** Every target once per round, the order rotated each round so that none always goes first. */
export function interleaved<T extends { name: string }, R>(targets: readonly T[], run: (t: T) => Promise<R>): (round: number) => Promise<R[]> {
  return async (round) => {
    const runs: R[] = [];
    for (let i = 0; i < targets.length; i++) runs.push(await run(targets[(i + round) % targets.length]!));
    return runs;
  };
}

/** Throws when cleanRounds kept nothing: a report of no rounds would be empty medians. */
export function requireKept(r: { kept: unknown[]; setAside: number; worstSteal: number }, maxSteal: number): void {
  if (r.kept.length === 0) throw new Error(`no round the host left alone (${setAsideNote(r, maxSteal)}): run it again later, or with a higher --max-steal`);
}

/** The line a report adds when rounds were set aside for the host's steal. */
export function setAsideNote(r: { setAside: number; worstSteal: number }, maxSteal: number): string {
  return r.setAside === 0
    ? `no round set aside for the host's steal (limit ${maxSteal}% of the CPU in any run)`
    : `${r.setAside} round(s) set aside: the host took up to ${r.worstSteal.toFixed(1)}% of the CPU (limit ${maxSteal}% in any run)`;
}

/** Median (min-max) of `xs`, to `d` decimals: how every bench reports a spread. */
export function spread(xs: readonly number[], d = 1): string {
  if (xs.length === 0) return "-";
  return `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
}

/** `pid` and its children (nginx's master and workers, Switchyard's owner and workers). */
export function withChildren(pid: number): number[] {
  const kids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) kids.push(Number(d));
    } catch {}
  }
  return [pid, ...kids];
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
