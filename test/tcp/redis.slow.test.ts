/**
 * A real protocol through TCP mode: two Redis servers behind the balancer, driven by
 * redis-benchmark and redis-cli. Needs Debian's redis-server and redis-tools (.ci/run installs
 * them): skipped with a notice where they are missing, required under CI=true.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import type { Balancer } from "../../src/balancer.ts";
import type { Backend } from "../../src/pool/backend.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { refusedPort } from "./helpers.ts";
import { waitFor } from "../helpers/wait.ts";
import { requirePrograms } from "../helpers/system.ts";

const redis = requirePrograms("the Redis tests", { "redis-server": "redis-server", "redis-cli": "redis-tools", "redis-benchmark": "redis-tools" });

const servers: { port: number; proc: Subprocess }[] = [];
let rig: TestRig | undefined;
let lb: Balancer | undefined;

/** A Redis server on a free loopback port, with no persistence; stopped by PID in afterAll. */
async function startRedis(): Promise<{ port: number; proc: Subprocess }> {
  const port = refusedPort();
  const proc = Bun.spawn(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
    { stdout: "ignore", stderr: "pipe" },
  );
  const server = { port, proc };
  servers.push(server);
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`redis-server on port ${port} exited with ${proc.exitCode}`);
    return Bun.spawnSync(["redis-cli", "-p", String(port), "ping"]).stdout.toString().trim() === "PONG";
  }, `redis-server on port ${port} to answer PING`, 5000);
  return server;
}

describe.skipIf(redis.skip)("Redis through TCP mode", () => {
  beforeAll(async () => {
    redis.assertPresent();
    const [a, b] = [await startRedis(), await startRedis()];
    rig = await startRig(0, {
      mode: "tcp",
      strategy: "least-connections",
      healthCheck: { type: "tcp", interval: "1s", timeout: "500ms" },
      backends: [{ name: "redis-a", url: `127.0.0.1:${a.port}` }, { name: "redis-b", url: `tcp://127.0.0.1:${b.port}` }],
    });
    lb = rig.balancer;
  });

  afterAll(async () => {
    await rig?.stop();
    for (const s of servers) {
      s.proc.kill();
      await s.proc.exited;
    }
  });

  /** Runs a client asynchronously: the balancer lives in this process, so spawnSync would starve it. */
  async function run(cmd: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
    const proc = Bun.spawn(cmd, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, out, err };
  }

  test("redis-cli: SET and GET round trip on one connection through the balancer", async () => {
    const value = `switchyard-${crypto.randomUUID()}`;
    // Several commands on one connection: both reach the same Redis.
    const r = await run(["redis-cli", "-p", String(lb!.port)], `SET sy:key ${value}\nGET sy:key\nDEL sy:key\n`);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out.split("\n").filter(Boolean)).toEqual(["OK", value, "1"]);
  });

  test("redis-benchmark: 2000 SETs and GETs over 10 connections, zero errors, both servers used", async () => {
    const r = await run(["redis-benchmark", "-h", "127.0.0.1", "-p", String(lb!.port), "-q", "-n", "2000", "-c", "10", "-t", "set,get"]);
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
    // "SET: 41666.67 requests per second, p50=0.143 msec"; an error would print instead or besides.
    expect(r.out).toMatch(/SET: [\d.]+ requests per second/);
    expect(r.out).toMatch(/GET: [\d.]+ requests per second/);
    expect(r.out).not.toMatch(/error|reset|refused/i);
    const [a, b] = lb!.pool.backends as [Backend, Backend];
    expect(a.acquired).toBeGreaterThan(0);
    expect(b.acquired).toBeGreaterThan(0);
    for (const x of [a, b]) {
      expect(x.stats.connectFailures).toBe(0);
      expect(x.stats.proxyErrors).toBe(0);
      expect(x.isHealthy).toBe(true);
    }
    await waitFor(() => a.inFlight === 0 && b.inFlight === 0, "every benchmark connection to close");
  }, 20_000);
});
