/**
 * Linux's SO_REUSEPORT caveat during `switchyard upgrade` (README, "Upgrading the binary"):
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
 * into each run, through the admin API. Loopback only, bounded in time; every process it
 * starts is stopped by PID (the new process of each run by the PID the upgrade reported).
 */
import { parseArgs } from "node:util";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root, waitUp } from "./harness.ts";

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

async function run(i: number): Promise<string> {
  const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  const dir = mkdtempSync(join(tmpdir(), "switchyard-upgrade-churn-"));
  const config = join(dir, "switchyard.json");
  writeFileSync(config, JSON.stringify({
    listen: { host: "127.0.0.1", port: 0 },
    admin: { host: "127.0.0.1", port: 0, token: TOKEN },
    engine: values.engine,
    workers: Number(values.workers),
    log: { access: false },
    backends: [{ url: `http://127.0.0.1:${backend.port}` }],
  }));
  const old = Bun.spawn([process.execPath, join(root, "src/cli.ts"), "serve", "--config", config], { stdout: "pipe", stderr: "inherit" });
  let out = "";
  void (async () => {
    for await (const c of old.stdout) out += new TextDecoder().decode(c);
  })();
  let newPid = 0;
  try {
    while (!/admin listening on/.test(out)) {
      if (old.exitCode !== null) throw new Error(`serve exited: ${out}`);
      await Bun.sleep(20);
    }
    const port = Number(/proxy listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    const admin = /admin listening on (\S+)/.exec(out)![1]!;
    await waitUp(port);
    const failures = new Map<string, number>();
    let ok = 0;
    const until = performance.now() + seconds * 1000;
    const load = Promise.all(Array.from({ length: LOOPS }, async () => {
      while (performance.now() < until) {
        const problem = await oneRequest(port);
        if (problem === undefined) ok++;
        else failures.set(problem, (failures.get(problem) ?? 0) + 1);
      }
    }));
    await Bun.sleep(1500);
    const res = await fetch(`${admin}/api/upgrade`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    const report = (await res.json()) as { newPid?: number; message?: string };
    if (!res.ok) throw new Error(`upgrade refused: ${report.message}`);
    newPid = report.newPid!;
    await load;
    const failed = [...failures.values()].reduce((a, b) => a + b, 0);
    return `run ${i}: ${ok} ok, ${failed} failed${failed ? ` ${JSON.stringify(Object.fromEntries(failures))}` : ""}`;
  } finally {
    for (const pid of [old.pid, newPid]) {
      try {
        if (pid) process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
    await old.exited;
    while (newPid && isAlive(newPid)) await Bun.sleep(20);
    backend.stop(true);
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
for (let i = 1; i <= Number(values.runs); i++) console.log(await run(i));
