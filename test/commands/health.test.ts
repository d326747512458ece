/**
 * `switchyard health` as the container HEALTHCHECK runs it: a subprocess asking a real
 * balancer's admin port, judged by its exit code and what it prints.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { startStack, type Stack } from "../admin/helpers.ts";
import { waitFor } from "../helpers/wait.ts";
import { refusedPort } from "../tcp/helpers.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

async function health(...args: string[]) {
  return healthWith({}, ...args);
}

async function healthWith(env: Record<string, string>, ...args: string[]) {
  const p = Bun.spawn([process.execPath, CLI, "health", ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

test("exits 0 when /healthz answers; a URL without a path asks /healthz", async () => {
  stack = await startStack(1);
  const full = await health("--url", `${stack.adminUrl}/healthz`);
  expect(full.code).toBe(0);
  expect(full.stdout).toContain('200 {"status":"ok"');
  const bare = await health("--url", stack.adminUrl);
  expect(bare.code).toBe(0);
  expect(bare.stdout).toContain(`${stack.adminUrl}/healthz: 200`);
});

test("SWITCHYARD_HEALTH_URL is the default URL (a sim's /health in compose); --url wins over it", async () => {
  stack = await startStack(1);
  const sim = stack.cluster.backends[0]!;
  const viaEnv = await healthWith({ SWITCHYARD_HEALTH_URL: `${sim.url}/health` });
  expect(viaEnv.code).toBe(0);
  expect(viaEnv.stdout).toContain(`${sim.url}/health: 200`);
  sim.setHealth("down");
  expect((await healthWith({ SWITCHYARD_HEALTH_URL: `${sim.url}/health` })).code).toBe(1);
  expect((await healthWith({ SWITCHYARD_HEALTH_URL: `${sim.url}/health` }, "--url", stack.adminUrl)).code).toBe(0);
  const bad = await healthWith({ SWITCHYARD_HEALTH_URL: "nonsense" });
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('SWITCHYARD_HEALTH_URL: got "nonsense"');
});

test("exits 1 naming the status when the endpoint says no (readyz with every backend down)", async () => {
  stack = await startStack(1);
  stack.cluster.backends[0]!.setHealth("down");
  await waitFor(() => stack!.balancer.pool.backends.every((b) => !b.isHealthy), "the backend to go down");
  const r = await health("--url", `${stack.adminUrl}/readyz`);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("/readyz: status 503");
  // The balancer itself is still alive.
  expect((await health("--url", stack.adminUrl)).code).toBe(0);
});

test("exits 1 when nothing listens, 1 when the answer is too slow", async () => {
  const refused = await health("--url", `http://127.0.0.1:${refusedPort()}/healthz`);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/ECONNREFUSED|ConnectionRefused/);

  // A server that accepts and never answers.
  const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const slow = await health("--url", `http://127.0.0.1:${silent.port}/healthz`, "--timeout", "200ms");
    expect(slow.code).toBe(1);
    expect(slow.stderr).toContain("no answer within 200ms");
  } finally {
    silent.stop(true);
  }
});

test("bad usage exits 2 naming the flag", async () => {
  const url = await health("--url", "ftp://example");
  expect(url.code).toBe(2);
  expect(url.stderr).toContain('--url: got "ftp://example"');
  const timeout = await health("--timeout", "soon");
  expect(timeout.code).toBe(2);
  expect(timeout.stderr).toContain('--timeout: got "soon"');
  const unknown = await health("--port", "8081");
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain("--port");
});
