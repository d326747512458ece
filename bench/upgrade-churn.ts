/**
 * Linux's SO_REUSEPORT caveat during `switchyard upgrade` (docs/operations.md, "Upgrading the binary"):
 * clients that open a new connection for every request, across one upgrade. A connection still
 * in the old process's accept queue when its listener closes is reset, unless
 * net.ipv4.tcp_migrate_req is 1. Keep-alive clients (wrk's default) are the test's business
 * (test/control/upgrade.test.ts); this measures the worst case for the accept queue.
 *
 *   bun bench/upgrade-churn.ts [--engine fetch|socket] [--workers 1] [--duration 5] [--runs 3]
 *   # with the sysctl at 1, without touching the host's: a private network namespace (root)
 *   unshare -n sh -c 'ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && bun bench/upgrade-churn.ts'
 *
 * 64 loops each connect, send one `GET /` with `Connection: close`, and read the whole answer;
 * anything but a complete 200 counts as failed, by what happened. The upgrade is sent 1.5 s
 * into each run, through the admin API. Each run also gives Switchyard's own CPU per request
 * answered 200: the user and system time of the old process (from the load's start to its
 * exit, its workers included) and of the new one (its start-up included, to the load's end).
 * Loopback only, ephemeral ports, bounded in time; every process it starts is stopped by PID
 * (the new process of each run by the PID the upgrade reported).
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { Processes, processCpu, sim, switchyard, withChildren } from "./harness.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    engine: { type: "string", default: "socket" },
    workers: { type: "string", default: "1" },
    duration: { type: "string", default: "5" },
    runs: { type: "string", default: "3" },
  },
});
const seconds = Number(values.duration);
const LOOPS = 64;
const TOKEN = "upgrade-churn-bench-token-0123456789";
const procs = new Processes();

/** One connection, one request, the whole answer: undefined when it was a 200, else what went wrong. */
function oneRequest(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let got = "";
    let done = false;
    const finish = (problem: string | undefined) => {
      if (done) return;
      done = true;
      resolve(problem ?? (got.startsWith("HTTP/1.1 200") ? undefined : `answer ${JSON.stringify(got.slice(0, 12))}`));
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open: (s) => void s.write("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"),
        data: (_s, d) => void (got += d.toString()),
        close: () => finish(got.length > 0 ? undefined : "closed before any answer"),
        error: (_s, e) => finish(`error ${(e as { code?: string }).code ?? e.message}`),
        connectError: (_s, e) => finish(`connect ${(e as { code?: string }).code ?? e.message}`),
      },
    }).catch((e: { code?: string; message: string }) => finish(`connect ${e.code ?? e.message}`));
  });
}

async function run(i: number, backend: string): Promise<string> {
  const old = await switchyard(procs, `switchyard ${i}`, {
    admin: { host: "127.0.0.1", port: 0, token: TOKEN },
    engine: values.engine,
    workers: Number(values.workers),
    backends: [{ url: `http://${backend}` }],
  });
  let newPid = 0;
  try {
    const failures = new Map<string, number>();
    let ok = 0;
    const [u0, s0] = processCpu(old.pids());
    const until = performance.now() + seconds * 1000;
    const load = Promise.all(Array.from({ length: LOOPS }, async () => {
      while (performance.now() < until) {
        const problem = await oneRequest(old.port);
        if (problem === undefined) ok++;
        else failures.set(problem, (failures.get(problem) ?? 0) + 1);
      }
    }));
    await Bun.sleep(1500);
    const res = await fetch(`${old.admin}/api/upgrade`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    const report = (await res.json()) as { newPid?: number; message?: string };
    if (!res.ok) throw new Error(`upgrade refused: ${report.message}`);
    newPid = report.newPid!;
    await load;
    const [u1, s1] = processCpu(withChildren(newPid));
    // The old process drains and exits on its own; its usage (with the workers it reaped) is
    // known once it has.
    const oldCpu = (await old.started.proc.exited, old.started.proc.resourceUsage()!.cpuTime);
    const cpu = Number(oldCpu.user + oldCpu.system) - u0 - s0 + u1 + s1;
    const failed = [...failures.values()].reduce((a, b) => a + b, 0);
    return `run ${i}: ${ok} ok, ${failed} failed${failed ? ` ${JSON.stringify(Object.fromEntries(failures))}` : ""}; own CPU ${ok ? (cpu / ok).toFixed(1) : "-"} µs/request (user+system, old and new process)`;
  } finally {
    for (const pid of [old.started.proc.pid, newPid]) {
      try {
        if (pid) process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
    await old.started.proc.exited;
    while (newPid && isAlive(newPid)) await Bun.sleep(20);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let migrate = "unknown";
try {
  migrate = readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
} catch {
  // Not Linux, or a kernel before 5.14.
}
console.log(`upgrade under churn: ${values.engine} engine, workers ${values.workers}, ${LOOPS} loops of one request per connection, ${seconds}s, net.ipv4.tcp_migrate_req=${migrate}`);
try {
  const { backends } = await sim(procs, { count: 1 });
  for (let i = 1; i <= Number(values.runs); i++) console.log(await run(i, backends[0]!));
} finally {
  await procs.stop();
}
