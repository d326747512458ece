import { afterEach, expect, test } from "bun:test";
import { startCluster, type ClusterOptions, type SimCluster } from "../../sim/cluster.ts";
import { fetchErrorCode, REFUSED } from "./helpers.ts";

const running: SimCluster[] = [];

async function cluster(opts?: ClusterOptions): Promise<SimCluster> {
  const c = await startCluster(opts);
  running.push(c);
  return c;
}

/**
 * Starts a cluster on fixed consecutive ports. The ports are picked below Linux's ephemeral
 * range (32768+), where nothing else here binds, and another block is tried if one is busy.
 */
async function clusterOnFixedPorts(opts: ClusterOptions): Promise<SimCluster> {
  for (let attempt = 1; ; attempt++) {
    const basePort = 20000 + Math.floor(Math.random() * 10000);
    try {
      return await cluster({ ...opts, basePort });
    } catch (err) {
      if (attempt === 5) throw err;
    }
  }
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
});

test("names backend-1..N on consecutive ports from basePort", async () => {
  const c = await clusterOnFixedPorts({ count: 3 });
  const base = c.backends[0]!.port;
  expect(c.backends.map((b) => [b.name, b.port, b.url])).toEqual([1, 2, 3].map((i) => [`backend-${i}`, base + i - 1, `http://127.0.0.1:${base + i - 1}`]));
  for (const b of c.backends) expect(await (await fetch(b.url)).text()).toBe(`${b.name}\n`);
});

test("basePort 0 gives every backend its own ephemeral port; options reach every backend", async () => {
  const c = await cluster({ basePort: 0, count: 4, namePrefix: "node-", latency: { min: 1, max: 2 }, failRate: 0.5 });
  expect(c.backends.map((b) => b.name)).toEqual(["node-1", "node-2", "node-3", "node-4"]);
  expect(new Set(c.backends.map((b) => b.port)).size).toBe(4);
  for (const b of c.backends) {
    expect(await (await fetch(`${b.url}/_control`)).json()).toMatchObject({ name: b.name, latency: { min: 1, max: 2 }, failRate: 0.5 });
  }
});

test("stop() stops every backend", async () => {
  const c = await cluster({ basePort: 0, count: 2 });
  await c.stop();
  for (const b of c.backends) {
    expect(b.running).toBe(false);
    expect(REFUSED).toContain(await fetchErrorCode(b.url));
  }
});

test("a busy port fails the start, names the backend, and stops the ones already started", async () => {
  const first = await clusterOnFixedPorts({ count: 1 });
  const busyPort = first.backends[0]!.port;
  // backend-1 would take busyPort - 1, backend-2 the busy port.
  const err = await startCluster({ basePort: busyPort - 1, count: 2 }).catch((e: Error) => e);
  expect(String(err)).toMatch(/backend-2: .*in use/);
  // backend-1 of the failed cluster let its port go again.
  expect(REFUSED).toContain(await fetchErrorCode(`http://127.0.0.1:${busyPort - 1}/`));
});

test.each([
  [{ count: 0 }, /invalid cluster count 0/],
  [{ count: 1.5 }, /invalid cluster count 1.5/],
  [{ basePort: -1 }, /invalid base port -1/],
  [{ basePort: 65535, count: 2 }, /invalid base port 65535/],
])("rejects %j", async (opts, message) => {
  await expect(startCluster(opts)).rejects.toThrow(message);
});
