/** Shared by the workers tests: load through the proxy port, spread over the worker processes. */
import { readFileSync } from "node:fs";
import type { Balancer } from "../../src/balancer.ts";
import type { WorkerSupervisor } from "../../src/workers/supervisor.ts";

export interface LoadResult {
  ok: number;
  failed: number;
  statuses: Map<number, number>;
}

/**
 * `total` GETs of `path` from `concurrency` loops. `fresh`: each on a new connection (the
 * kernel then spreads them over the workers' listeners); else on kept-alive connections.
 */
export async function load(url: string, total: number, concurrency: number, opts: { fresh?: boolean; path?: string; stop?: () => boolean; headers?: Record<string, string> } = {}): Promise<LoadResult> {
  const result: LoadResult = { ok: 0, failed: 0, statuses: new Map() };
  let sent = 0;
  const one = async () => {
    while (sent < total && !(opts.stop?.() ?? false)) {
      sent++;
      try {
        const res = await fetch(url + (opts.path ?? "/"), opts.fresh ? { headers: { ...opts.headers, connection: "close" }, keepalive: false } : { headers: { ...opts.headers } });
        await res.arrayBuffer();
        result.statuses.set(res.status, (result.statuses.get(res.status) ?? 0) + 1);
        if (res.status === 200) result.ok++;
        else result.failed++;
      } catch {
        result.failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
  return result;
}

export function supervisorOf(b: Balancer): WorkerSupervisor {
  if (!b.workers) throw new Error("this balancer runs without workers");
  return b.workers;
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The sockets listening on TCP `port` now (Linux: the LISTEN entries of /proc/net/tcp and tcp6).
 * With workers, each worker's listener is one socket on its port (SO_REUSEPORT), and a listener
 * bound anew is one more until the old one has closed.
 */
export function listeningSockets(port: number): number {
  let n = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; st 0A is LISTEN.
      if (f[3] === "0A" && parseInt(f[1]?.split(":")[1] ?? "", 16) === port) n++;
    }
  }
  return n;
}
