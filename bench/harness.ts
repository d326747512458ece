/**
 * What the HTTP benches share: starting and stopping the processes they run (by PID, always),
 * waiting for a port to answer, running wrk and reading its report, the CPU a run costs per
 * request (processCpu, machineCpu, cpuPerRequest), rounds a VM's host did not disturb
 * (cleanRounds), and nginx and HAProxy configs for a set of upstreams. Loopback only.
 */
import type { Subprocess } from "bun";
import { readFileSync, readdirSync } from "node:fs";

export const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Is `cmd` installed (also looking in the sbin directories, where nginx and haproxy live)? */
export function has(cmd: string): boolean {
  return Bun.which(cmd, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }) !== null;
}

/** The processes one bench started; stop() ends them, each by its own PID. */
export class Processes {
  private readonly procs: Subprocess[] = [];

  constructor() {
    process.on("SIGINT", () => void this.stop().then(() => process.exit(130)));
  }

  spawn(cmd: string[], opts: { cwd?: string } = {}): Subprocess {
    const p = Bun.spawn(cmd, { cwd: opts.cwd ?? root, stdout: "ignore", stderr: "pipe" });
    this.procs.push(p);
    return p;
  }

  /** One started otherwise (its own environment, say), to be stopped with the rest. */
  track(p: Subprocess): void {
    this.procs.push(p);
  }

  async stop(): Promise<void> {
    for (const p of this.procs) if (p.exitCode === null) p.kill("SIGTERM");
    await Promise.all(this.procs.map((p) => p.exited));
  }
}

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

/** Resolves once http://127.0.0.1:port/ answers at all; throws after 10 s. */
export async function waitUp(port: number): Promise<void> {
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

export interface WrkResult {
  name: string;
  connections: number;
  rps: number;
  /** As wrk prints them ("1.23ms"), and in milliseconds. */
  p50: string;
  p90: string;
  p99: string;
  p99Ms: number;
  errors: number;
  /** % of the machine's CPU time its host gave to others during the run (machineCpu). */
  steal: number;
}

/** wrk with --latency against one port (2 threads unless told); the report parsed. */
export async function wrk(name: string, port: number, o: { connections: number; duration: number | string; path?: string; threads?: number | string }): Promise<WrkResult> {
  const m0 = machineCpu();
  const p = Bun.spawn(["wrk", `-t${o.threads ?? 2}`, `-c${o.connections}`, `-d${o.duration}s`, "--latency", `http://127.0.0.1:${port}${o.path ?? "/"}`], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const steal = stealPercent(m0, machineCpu());
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const pct = (n: number) => new RegExp(`^\\s+${n}%\\s+(\\S+)`, "m").exec(out)?.[1] ?? "?";
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?(\d+)/.exec(out)?.[1] ?? 0);
  const p99 = pct(99);
  return { name, connections: o.connections, rps, p50: pct(50), p90: pct(90), p99, p99Ms: wrkMs(p99), errors, steal };
}

/** One wrk run (-t1, no latency report) and the CPU it cost per request: processes `pids`, and the whole machine. */
export interface CpuRun {
  name: string;
  rps: number;
  /** µs per request of `pids`' user and system time. */
  user: number;
  sys: number;
  /** µs per request of the whole machine (machineCpu's busy). */
  machine: number;
  /** % of the machine's CPU its host took meanwhile. */
  steal: number;
}

/** wrk against `port` for `duration` s, with the CPU of `pids` and of the machine around it. Throws when nothing was answered. */
export async function cpuPerRequest(name: string, port: number, pids: readonly number[], o: { connections: number | string; duration: number | string }): Promise<CpuRun> {
  const [u0, s0] = processCpu(pids);
  const m0 = machineCpu();
  const p = Bun.spawn(["wrk", "-t1", `-c${o.connections}`, `-d${o.duration}s`, `http://127.0.0.1:${port}/`], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  const [u1, s1] = processCpu(pids);
  const m1 = machineCpu();
  const n = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  if (n === 0) throw new Error(`${name} answered no requests in a run: ${out}`);
  return { name, rps: n / Number(o.duration), user: (u1 - u0) / n, sys: (s1 - s0) / n, machine: (m1.busy - m0.busy) / n, steal: stealPercent(m0, m1) };
}

/** Median (min-max) of `xs`, to `d` decimals: how every bench reports a spread. */
export function spread(xs: readonly number[], d = 1): string {
  return `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
}

/** Throws when cleanRounds kept nothing: a report of no rounds would be empty medians. */
export function requireKept(r: { kept: unknown[]; setAside: number; worstSteal: number }, maxSteal: number): void {
  if (r.kept.length === 0) throw new Error(`no round the host left alone (${setAsideNote(r, maxSteal)}): run it again later, or with a higher --max-steal`);
}

/** The % of the machine's CPU time between two machineCpu() readings that its host took. */
export function stealPercent(a: ReturnType<typeof machineCpu>, b: ReturnType<typeof machineCpu>): number {
  const all = b.all - a.all;
  return all > 0 ? (100 * (b.steal - a.steal)) / all : 0;
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

/** The line a report adds when rounds were set aside for the host's steal. */
export function setAsideNote(r: { setAside: number; worstSteal: number }, maxSteal: number): string {
  return r.setAside === 0
    ? `no round set aside for the host's steal (limit ${maxSteal}% of the CPU in any run)`
    : `${r.setAside} round(s) set aside: the host took up to ${r.worstSteal.toFixed(1)}% of the CPU (limit ${maxSteal}% in any run)`;
}

/** wrk's "850.00us", "9.20ms", "1.02s", "2.00m" in milliseconds (NaN if unreadable). */
export function wrkMs(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as "us" | "ms" | "s" | "m"];
}

export interface NginxUpstream {
  /** Share the upstream's state (least_conn's counts) between workers: nginx's `zone`. */
  zone?: boolean;
  /** Where nginx listens for this upstream. */
  port: number;
  /** "least_conn;", "" (round robin) ... */
  balance: string;
  /** host:port of each server. */
  servers: string[];
}

/**
 * The fields Switchyard adds (proxy/headers.ts), as nginx directives: to the backend
 * X-Forwarded-For/-Proto/-Host, X-Real-IP, Via and X-Request-Id, to the client Via and
 * X-Request-Id. With them nginx puts the same bytes on the wire as Switchyard does, so the
 * backends and wrk do the same work behind either (`nginxConfig`'s `fields: "switchyard"`).
 */
const SWITCHYARD_FIELDS = `
      proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host; proxy_set_header Via "1.1 switchyard";
      proxy_set_header X-Request-Id $request_id;
      add_header Via "1.1 switchyard"; add_header X-Request-Id $request_id;`;

/**
 * An nginx.conf (upstream keep-alive) with one server block per upstream. `fields`: "minimal"
 * (default) sends X-Forwarded-For and Host only, as a bare nginx proxy does; "switchyard" adds
 * what Switchyard adds (SWITCHYARD_FIELDS).
 */
export function nginxConfig(dir: string, upstreams: NginxUpstream[], o: { workers?: number; accessLog?: boolean; fields?: "minimal" | "switchyard" } = {}): string {
  const extra = o.fields === "switchyard" ? SWITCHYARD_FIELDS : "";
  const blocks = upstreams.map((u, i) => `
  upstream pool${i} { ${u.zone ? `zone pool${i} 64k; ` : ""}${u.balance} ${u.servers.map((s) => `server ${s};`).join(" ")} keepalive 64; }
  server { listen 127.0.0.1:${u.port};
    location / { proxy_pass http://pool${i}; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header Host $host;${extra} } }`);
  return `
worker_processes ${o.workers ?? 1}; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log ${o.accessLog ? `${dir}/nginx-access.log` : "off"};${blocks.join("")}
}`;
}

/** HAProxy in HTTP mode with `threads` threads, leastconn over `servers`, checked, with X-Forwarded-For. */
export function haproxyConfig(port: number, servers: readonly string[], threads = 2): string {
  return `
global
  nbthread ${threads}
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  default_backend pool
backend pool
  balance leastconn
${servers.map((b, i) => `  server b${i + 1} ${b} check`).join("\n")}
`;
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
