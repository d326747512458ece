/**
 * HTTP through TCP mode, driven by curl: the balancer knows nothing of HTTP, so keep-alive is
 * the client's and the backend's business and one client connection is one backend connection.
 */
import { afterEach, expect, test } from "bun:test";
import { startRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { requirePrograms } from "../helpers/system.ts";

const curl = requirePrograms("the curl-through-TCP-mode tests", { curl: "curl" });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

test.skipIf(curl.skip)("curl: two URLs in one invocation reuse one connection through the balancer", async () => {
  curl.assertPresent();
  const backends = ["a", "b"].map((name) => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      development: false,
      fetch: (req) => new Response(`${name} ${new URL(req.url).pathname}\n`),
    });
    cleanups.push(() => server.stop(true));
    return server;
  });
  const rig = await startRig(0, {
    mode: "tcp",
    healthCheck: { type: "tcp", interval: "1s" },
    strategy: "round-robin",
    backends: backends.map((s) => ({ url: `127.0.0.1:${s.port}` })),
  });
  cleanups.push(() => rig.stop());
  const lb = rig.balancer;

  const base = `http://127.0.0.1:${lb.port}`;
  const proc = Bun.spawn(["curl", "-sv", `${base}/one`, `${base}/two`], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  // Both answers from one backend: one connection, paired with one backend connection.
  const lines = out.trim().split("\n");
  expect(lines).toHaveLength(2);
  const name = lines[0]!.split(" ")[0];
  expect(lines).toEqual([`${name} /one`, `${name} /two`]);
  // curl 7.x: "Re-using existing connection #0"; 8.x: "Re-using existing http: connection".
  expect(err).toMatch(/Re-using existing/i);
  await waitFor(() => lb.pool.backends.every((b) => b.inFlight === 0), "the connection to close");
  expect(lb.pool.backends.reduce((n, b) => n + b.acquired, 0)).toBe(1);

  // A POST with a body, and a second curl run: a new connection, the next backend.
  const post = Bun.spawn(["curl", "-s", "-d", "x=1", `${base}/post`], { stdout: "pipe", stderr: "inherit" });
  const [postOut, postCode] = await Promise.all([new Response(post.stdout).text(), post.exited]);
  expect(postCode).toBe(0);
  expect(postOut).toMatch(/^[ab] \/post\n$/);
  expect(postOut[0]).not.toBe(name);
});
