/**
 * As PID 1 (a container's entry point), `serve` becomes the keeper (src/control/keeper.ts):
 * upgrades replace the serving process under load with no gap while PID 1, and so the
 * container, stays; signals reach the right generation; and the keeper exits with the last
 * generation's status. PID 1 is made here as a container runtime makes it, in a PID namespace
 * of its own (`unshare --pid --fork --mount-proc`, unprivileged through a user namespace); the
 * network is the host's, so the test reaches the ports as any client would.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import type { Server } from "bun";
import { serveProcess } from "../helpers/balancer.ts";
import { IN_CI, requirePrograms } from "../helpers/system.ts";
import { waitFor } from "../helpers/wait.ts";
import { wrk as wrkRun } from "../helpers/wrk.ts";

const programs = requirePrograms("the PID 1 keeper tests", { unshare: "util-linux", wrk: "wrk" });

/** Whether this machine lets an unprivileged process make a PID namespace (some forbid user namespaces). */
function namespacesAllowed(): boolean {
  if (programs.skip) return false;
  const r = Bun.spawnSync([programs.path("unshare"), "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "true"], { stderr: "pipe" });
  if (r.exitCode === 0) return true;
  const why = `unshare --user --pid cannot run here (${new TextDecoder().decode(r.stderr).trim()})`;
  if (IN_CI) throw new Error(`the PID 1 keeper tests: ${why}`);
  console.warn(`SKIPPED the PID 1 keeper tests: ${why}`);
  return false;
}
const SKIP = !namespacesAllowed();

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function startBackend(): Server<unknown> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  cleanups.push(() => server.stop(true));
  return server;
}

/** The host's PIDs of `pid`'s children. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "latin1");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** Children of `pid` that have exited and not been collected. */
function zombiesOf(pid: number): number[] {
  return childrenOf(pid).filter((c) => {
    try {
      const stat = readFileSync(`/proc/${c}/stat`, "latin1");
      return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z";
    } catch {
      return false;
    }
  });
}

function wrk(url: string, seconds: number): ReturnType<typeof wrkRun> {
  return wrkRun(programs.path("wrk"), url, seconds);
}

describe.skipIf(SKIP)("serve as PID 1: the keeper", () => {
  for (const workers of [1, 2]) {
    test(`two upgrades by SIGUSR2 to PID 1 under wrk -c64 (${workers === 1 ? "one process" : `${workers} workers`}): 0 failed requests, PID 1 stays, SIGTERM ends every generation with 0`, async () => {
      programs.assertPresent();
      const backend = startBackend();
      const serving = serveProcess({
        config: {
          workers,
          timeouts: { shutdownGrace: "20s" },
          backends: [{ name: "b1", url: `http://127.0.0.1:${backend.port}` }],
        },
        wrap: (argv) => [programs.path("unshare"), "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", ...argv],
        stderr: "inherit",
      });
      const ns = serving.proc;
      cleanups.push(async () => {
        // The namespace's PID 1 and everything in it end with unshare's child.
        for (const pid of childrenOf(ns.pid)) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {}
        }
        ns.kill("SIGKILL");
        await ns.exited;
      });
      const out = serving.output;
      await waitFor(() => /proxy listening on http:\/\/\S+/.test(out()), "the proxy to listen", 20_000);
      const url = /proxy listening on (http:\/\/\S+)/.exec(out())![1]!;
      expect(out()).toMatch(/keeper: PID 1 runs serve as pid \d+, and stays across upgrades/);
      const [pid1] = childrenOf(ns.pid);
      expect(pid1).toBeDefined();

      const load = wrk(`${url}/`, 7);
      await Bun.sleep(1500);
      process.kill(pid1!, "SIGUSR2");
      await waitFor(() => (out().match(/upgrade: serving beside pid/g) ?? []).length === 1, "the first successor to serve", 15_000);
      await waitFor(() => (out().match(/keeper: pid \d+ exited \(0\); following its successor/g) ?? []).length === 1, "the keeper to follow the first successor", 15_000);
      // The second goes to the newest generation, which is no child of PID 1's first.
      process.kill(pid1!, "SIGUSR2");
      await waitFor(() => (out().match(/upgrade: serving beside pid/g) ?? []).length === 2, "the second successor to serve", 15_000);
      const result = await load;
      expect(result.requests).toBeGreaterThan(0);
      expect({ errors: result.errors, non2xx: result.non2xx }).toEqual({ errors: 0, non2xx: 0 });
      await waitFor(() => (out().match(/following its successor/g) ?? []).length === 2, "the keeper to follow the second successor", 20_000);
      console.log(`keeper (workers ${workers}): wrk -t2 -c64 7s across two upgrades: ${result.requests} requests, 0 errors`);
      // PID 1 is still the keeper, it has collected the generations that exited, and the port still answers.
      expect(childrenOf(ns.pid)).toEqual([pid1!]);
      await waitFor(() => zombiesOf(pid1!).length === 0, "PID 1 to reap the generations gone", 5000);
      expect((await fetch(`${url}/`)).status).toBe(200);

      process.kill(pid1!, "SIGTERM");
      expect(await ns.exited).toBe(0);
    }, 90_000);
  }
});
