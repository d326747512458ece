/**
 * Reloads that touch selection: a switch to consistent-hash (the new policy learns the
 * members at once), a weight change (the ring is rebuilt for it), sticky sessions and the
 * peak-ewma decay taking effect without a restart.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.ts";
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-reload-policies-"));
let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

test("strategy, hash key, weights, sticky and peakEwma.decay change on reload", async () => {
  const file = join(dir, "switchyard.json");
  let urls: string[] = [];
  const base = { ...testEngine(), listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, log: { access: false } };
  const write = (config: Record<string, unknown>) => {
    writeFileSync(`${file}.tmp`, JSON.stringify({ ...base, ...config }));
    renameSync(`${file}.tmp`, file);
  };
  rig = await startRig(
    3,
    (cluster) => {
      urls = cluster.backends.map((b) => b.url);
      const config = { ...base, strategy: "round-robin", backends: urls.map((url, i) => ({ name: `b${i + 1}`, url })) };
      writeFileSync(file, JSON.stringify(config));
      return config;
    },
    undefined,
    { load: () => loadConfigFile(file), file },
  );
  const url = rig.balancer.url;
  const owner = async (user: string, init: RequestInit = {}) => {
    const res = await fetch(`${url}/`, { ...init, headers: { "x-user": user, ...(init.headers as Record<string, string>) } });
    return { name: (await res.text()).trim(), setCookie: res.headers.get("set-cookie") };
  };
  const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
  const owners = async () => Promise.all(users.map(async (u) => (await owner(u)).name));

  write({ strategy: "consistent-hash", hash: { key: "header:X-User" }, peakEwma: { decay: "2s" }, backends: urls.map((url, i) => ({ name: `b${i + 1}`, url })) });
  const report = await rig.balancer.reload();
  expect(report.lines).toContain('strategy "round-robin" -> "consistent-hash"');
  expect(rig.balancer.pool.backends.map((b) => b.stats.ewma.decayMs)).toEqual([2000, 2000, 2000]);
  const first = await owners();
  expect(await owners()).toEqual(first);
  expect(new Set(first).size).toBe(3);

  // b1 weighs 20 now: the ring is rebuilt and b1 owns most users.
  write({ strategy: "consistent-hash", hash: { key: "header:X-User" }, backends: urls.map((url, i) => ({ name: `b${i + 1}`, url, weight: i === 0 ? 20 : 1 })) });
  await rig.balancer.reload();
  const heavy = await owners();
  expect(heavy.filter((n) => n === "backend-1").length).toBeGreaterThan(45);
  expect(rig.balancer.pool.backends.map((b) => b.stats.ewma.decayMs)).toEqual([1000, 1000, 1000]);

  // Sticky sessions switched on: the answer pins the session, and the cookie beats the hash.
  write({ strategy: "consistent-hash", hash: { key: "header:X-User" }, sticky: { cookie: "route" }, backends: urls.map((url, i) => ({ name: `b${i + 1}`, url })) });
  await rig.balancer.reload();
  const a = await owner("alice");
  const cookie = /^route=([^;]+)/.exec(a.setCookie ?? "")?.[1];
  expect(cookie).toBeDefined();
  const others = users.filter((u, i) => first[i] !== a.name);
  for (const u of others.slice(0, 5)) {
    const r = await owner(u, { headers: { cookie: `route=${cookie}` } });
    expect(r.name).toBe(a.name);
    expect(r.setCookie).toBeNull();
  }
});
