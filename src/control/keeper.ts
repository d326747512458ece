/**
 * PID 1 across binary upgrades (a container's entry point).
 *
 * An upgrade (control/upgrade.ts) ends with the old process exiting once its successor serves.
 * In a container the first process is PID 1, and its exit ends the container, successor and
 * all. So when `serve` finds itself PID 1, it does not serve: it becomes the keeper, a small
 * init that runs the real `serve` as its child and stays for as long as a generation of it
 * serves:
 *
 * - It follows the serving process from generation to generation. A successor carries
 *   $SWITCHYARD_UPGRADE_FROM naming its predecessor's PID, and /proc/PID/environ keeps the
 *   environment a process was started with (the successor removes the variable from its own
 *   view, not from there). When the followed process exits, the process naming it there, if
 *   any, is followed next; when none does, the keeper exits with the last one's exit status.
 * - It passes on the signals a container runtime sends: SIGTERM and SIGINT to every serving
 *   generation (a draining old one and its successor both stop), SIGHUP (reload) and SIGUSR2
 *   (upgrade) to the newest only. PID 1 has no default signal actions, so nothing else would.
 * - It reaps: a predecessor's exit makes its successor an orphan, adopted by PID 1, whose own
 *   exit leaves a zombie that only PID 1 can collect (waitpid(2), through bun:ffi from libc:
 *   Bun waits only for the processes it started). Its exit status is read from
 *   /proc/PID/stat first (the exit_code field, Linux 3.5 and later).
 *
 * It polls /proc every POLL_MS: nothing here is on a request's path, and Linux gives no other
 * way to wait for a process that is not one's own child (a pidfd would, but Bun exposes none).
 */
import { readdirSync, readFileSync } from "node:fs";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { UPGRADE_FROM_ENV } from "./upgrade.ts";

/** Set (to anything) to run `serve` as PID 1 itself, without a keeper. */
export const NO_KEEPER_ENV = "SWITCHYARD_NO_KEEPER";

const POLL_MS = 200;
const WNOHANG = 1;

/** Whether this `serve` should become the keeper: it is PID 1, not already kept, not told otherwise. */
export function keeperWanted(pid = process.pid, env: Record<string, string | undefined> = process.env): boolean {
  // The keeper's own child is never PID 1, so it serves.
  return pid === 1 && env[NO_KEEPER_ENV] === undefined;
}

/** What a process is, as far as the keeper cares, from /proc/PID/stat. */
interface ProcState {
  /** R, S, D... or Z once it has exited and not yet been reaped. */
  state: string;
  ppid: number;
  /** waitpid(2)'s status word, valid once the state is Z. */
  exitStatus: number;
}

function procState(pid: number): ProcState | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).trim().split(" ");
  return { state: rest[0]!, ppid: Number(rest[1]), exitStatus: Number(rest[rest.length - 1]) };
}

/** An exit status word as a shell reports it: the code, or 128 + the signal. */
function exitCodeOf(status: number): number {
  const signal = status & 0x7f;
  return signal === 0 ? (status >> 8) & 0xff : 128 + signal;
}

/** The PID named by a process's $SWITCHYARD_UPGRADE_FROM, as it was started. */
function predecessorOf(pid: number): number | undefined {
  let environ: string;
  try {
    environ = readFileSync(`/proc/${pid}/environ`, "latin1");
  } catch {
    return undefined;
  }
  const prefix = `${UPGRADE_FROM_ENV}=`;
  for (const entry of environ.split("\0")) {
    if (!entry.startsWith(prefix)) continue;
    try {
      const pid = (JSON.parse(entry.slice(prefix.length)) as { pid?: unknown }).pid;
      return typeof pid === "number" ? pid : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Live processes (not zombies) whose $SWITCHYARD_UPGRADE_FROM names `pid`. */
function successorsOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const p = Number(d);
    if (p === process.pid || p === pid) continue;
    const s = procState(p);
    if (s === undefined || s.state === "Z") continue;
    if (predecessorOf(p) === pid) out.push(p);
  }
  return out;
}

let libc: { symbols: { waitpid: (pid: number, status: unknown, options: number) => number } } | undefined;

/** Collect a zombie that is not Bun's own child. */
function reap(pid: number): void {
  libc ??= dlopen("libc.so.6", { waitpid: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 } }) as unknown as typeof libc;
  const status = new Int32Array(1);
  libc!.symbols.waitpid(pid, ptr(status), WNOHANG);
}

export interface KeeperOptions {
  /** The `serve` command to run (this binary, the same arguments). */
  command: string[];
  log(line: string): void;
}

/** Run the keeper until the last serving generation exits; resolves with its exit code. */
export function runKeeper(o: KeeperOptions): Promise<number> {
  const first = Bun.spawn(o.command, { stdio: ["inherit", "inherit", "inherit"] });
  let firstExit: number | undefined;
  first.exited.then((code) => (firstExit = code));
  /** The generation followed: the oldest one still serving or draining. */
  let followed = first.pid;
  o.log(`keeper: PID 1 runs serve as pid ${followed}, and stays across upgrades`);

  /** The followed generation and every successor after it, oldest first. */
  const generations = (): number[] => {
    const chain = [followed];
    for (let next = successorsOf(followed); next.length > 0; next = successorsOf(chain[chain.length - 1]!)) chain.push(...next);
    return chain;
  };
  const pass = (signal: NodeJS.Signals, newestOnly: boolean) => () => {
    const chain = generations();
    for (const pid of newestOnly ? chain.slice(-1) : chain) {
      try {
        process.kill(pid, signal);
      } catch {
        // Gone between the scan and the signal.
      }
    }
  };
  const handlers: [NodeJS.Signals, () => void][] = [
    ["SIGTERM", pass("SIGTERM", false)],
    ["SIGINT", pass("SIGINT", false)],
    ["SIGHUP", pass("SIGHUP", true)],
    ["SIGUSR2", pass("SIGUSR2", true)],
    // Every generation appends to the access-log file while it serves, a draining one too.
    ["SIGUSR1", pass("SIGUSR1", false)],
  ];
  for (const [sig, fn] of handlers) process.on(sig, fn);

  return new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      // Zombies adopted from generations gone (a successor, a worker that outlived its owner).
      const exited = new Map<number, number>();
      for (const d of readdirSync("/proc")) {
        if (!/^\d+$/.test(d)) continue;
        const p = Number(d);
        // Bun collects its own child; once it has, the PID may be another process's.
        if (p === first.pid && firstExit === undefined) continue;
        const s = procState(p);
        if (s?.state === "Z" && s.ppid === process.pid) {
          exited.set(p, exitCodeOf(s.exitStatus));
          reap(p);
        }
      }
      const code = followed === first.pid ? firstExit : exited.get(followed) ?? (procState(followed) === undefined ? 0 : undefined);
      if (code === undefined) return;
      const next = successorsOf(followed);
      if (next.length > 0) {
        o.log(`keeper: pid ${followed} exited (${code}); following its successor, pid ${next[0]}`);
        followed = next[0]!;
        return;
      }
      clearInterval(timer);
      for (const [sig, fn] of handlers) process.off(sig, fn);
      resolve(code);
    }, POLL_MS);
  });
}
