/**
 * A balancer in its own process, so that a test can read that process's memory: the memory
 * tests (TCP mode, both HTTP engines, WebSockets) start it here and sample its peak RSS.
 */

/** VmRSS of a process in bytes, from /proc (Linux). */
export async function rss(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(await Bun.file(`/proc/${pid}/status`).text())?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

export interface BalancerProcess {
  port: number;
  /** RSS once it listens, before any traffic. */
  base: number;
  /** The highest RSS seen so far (sampled every 20 ms, and read once more now). */
  peak(): Promise<number>;
}

/**
 * Start `config` in a subprocess (test/tcp/fixtures/tcp-balancer.ts, which serves any mode) and
 * sample its RSS. Everything it starts is handed to `cleanups`: the process is killed and the
 * sampler stopped when the test ends.
 */
export async function spawnBalancer(config: Record<string, unknown>, cleanups: (() => unknown)[]): Promise<BalancerProcess> {
  const proc = Bun.spawn([process.execPath, `${import.meta.dir}/../tcp/fixtures/tcp-balancer.ts`, JSON.stringify(config)], {
    stdin: "pipe", stdout: "pipe", stderr: "inherit",
  });
  cleanups.push(async () => {
    proc.kill();
    await proc.exited;
  });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the balancer process exited before printing its port: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const base = await rss(proc.pid);
  let peak = base;
  const sampler = setInterval(() => void rss(proc.pid).then((r) => (peak = Math.max(peak, r)), () => {}), 20);
  cleanups.push(() => clearInterval(sampler));
  return { port: Number(out.trim()), base, peak: async () => Math.max(peak, await rss(proc.pid)) };
}
