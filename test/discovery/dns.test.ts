/**
 * DNS service discovery against a real DNS server on loopback: Debian's dnsmasq on a high port,
 * answering from a hosts file that the test rewrites and has re-read (SIGHUP) mid-test, in
 * front of sim backends on 127.0.0.2-4 (all of 127/8 is loopback on Linux), all on one port as
 * an A record's addresses would be.
 *
 * Needs dnsmasq (Debian package dnsmasq-base): skipped with a notice where it is missing,
 * required under CI=true. The config checks at the end need nothing.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Resolver } from "node:dns/promises";
import type { Balancer } from "../../src/balancer.ts";
import { ConfigError, validateConfig } from "../../src/config/load.ts";
import { startSimBackend, type SimBackend } from "../../sim/backend.ts";
import { requirePrograms } from "../helpers/system.ts";
import { waitFor } from "../helpers/wait.ts";
import { rigDefaults, startRig } from "../helpers/balancer.ts";
import { srvWeights } from "../../src/discovery/dns.ts";
import { refusedPort } from "../tcp/helpers.ts";

const dnsmasq = requirePrograms("the DNS discovery tests", { dnsmasq: "dnsmasq-base" });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

interface Dns {
  port: number;
  /** Rewrite the hosts file and make dnsmasq re-read it. */
  setHosts(lines: string[]): Promise<void>;
  /** New SRV records: dnsmasq takes them on its command line, so it is restarted on the same port. */
  setSrv(lines: string[]): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** dnsmasq on 127.0.0.1:port answering only from `hosts` (TTL 1 s) and `srv` records; stopped by PID. */
async function startDns(hosts: string[], srvRecords: string[] = []): Promise<Dns> {
  let srv = srvRecords;
  dnsmasq.assertPresent();
  const dir = mkdtempSync(join(tmpdir(), "switchyard-dns-"));
  const file = join(dir, "hosts");
  writeFileSync(file, hosts.join("\n") + "\n");
  const port = refusedPort();
  let proc: Subprocess | undefined;
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const answers = async (name: string) => (await resolver.resolve4(name).catch(() => [])).length > 0;
  const probeName = hosts[0]!.split(/\s+/)[1]!;
  const dns: Dns = {
    port,
    async setHosts(lines) {
      writeFileSync(file, lines.join("\n") + "\n");
      proc!.kill("SIGHUP");
      const want = lines.filter((l) => l.split(/\s+/)[1] === probeName).map((l) => l.split(/\s+/)[0]).sort();
      await waitFor(async () => JSON.stringify((await resolver.resolve4(probeName).catch(() => [])).sort()) === JSON.stringify(want), "dnsmasq to serve the new hosts file");
    },
    async setSrv(lines) {
      srv = lines;
      await dns.stop();
      await dns.start();
    },
    async start() {
      proc = Bun.spawn(
        [
          dnsmasq.path("dnsmasq"), "--keep-in-foreground", `--port=${port}`, "--listen-address=127.0.0.1", "--bind-interfaces",
          "--no-resolv", "--no-hosts", `--addn-hosts=${file}`, "--local-ttl=1", "--pid-file=", "--user=root", "--group=root",
          "--log-facility=-", ...srv.map((s) => `--srv-host=${s}`),
        ],
        { stdout: "ignore", stderr: "pipe" },
      );
      await waitFor(async () => {
        if (proc!.exitCode !== null) throw new Error(`dnsmasq exited: ${await new Response(proc!.stderr as ReadableStream).text()}`);
        return answers(probeName);
      }, "dnsmasq to answer", 5000, 20);
    },
    async stop() {
      if (proc && proc.exitCode === null) {
        proc.kill();
        await proc.exited;
      }
    },
  };
  // Registered before the start: a dnsmasq that starts but never answers is stopped too.
  cleanups.push(async () => {
    await dns.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await dns.start();
  return dns;
}

/** Sims on one port at several loopback addresses, as one service's instances would be. */
async function startSims(addresses: string[]): Promise<{ port: number; at: Map<string, SimBackend> }> {
  const first = await startSimBackend({ name: addresses[0]!, host: addresses[0]!, port: 0 });
  const at = new Map([[addresses[0]!, first]]);
  for (const a of addresses.slice(1)) at.set(a, await startSimBackend({ name: a, host: a, port: first.port }));
  cleanups.push(() => Promise.all([...at.values()].map((s) => s.stop())));
  return { port: first.port, at };
}

async function balancerFor(config: Record<string, unknown>): Promise<{ lb: Balancer; lines: string[] }> {
  // The rig: SWITCHYARD_TEST_ENGINE selects the engine, as for every rig suite; a test may name its own.
  const rig = await startRig(0, {
    log: { access: false },
    healthCheck: { path: "/health", interval: "200ms", timeout: "500ms", rise: 1, fall: 1 },
    ...config,
  });
  cleanups.push(() => rig.stop());
  return { lb: rig.balancer, lines: rig.logLines };
}

/** Requests from `concurrency` loops until stopped; every answer that is not a 200 is kept. */
function load(url: string, concurrency = 4) {
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const res = await fetch(url);
        const body = await res.text();
        if (res.status === 200) ok++;
        else failures.push(`${res.status} ${body}`);
      } catch (e) {
        failures.push(String(e));
      }
    }
  });
  return {
    ok: () => ok,
    failures,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const names = (lb: Balancer) => lb.pool.backends.map((b) => b.name);

describe.skipIf(dnsmasq.skip)("DNS discovery with dnsmasq", () => {
  test("each A record becomes a backend; an added address gets traffic within one refresh, a removed one is drained, with zero failed requests under load", async () => {
    const sims = await startSims(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    const dns = await startDns(["127.0.0.2 api.test", "127.0.0.3 api.test"]);
    const { lb, lines } = await balancerFor({
      dns: { servers: [`127.0.0.1:${dns.port}`] },
      backends: [{ dns: "api.test", port: sims.port, refresh: "2s" }],
    });
    const p = sims.port;
    expect(names(lb)).toEqual([`api.test#127.0.0.2:${p}`, `api.test#127.0.0.3:${p}`]);
    expect(lb.pool.backends.map((b) => b.url.href)).toEqual([`http://127.0.0.2:${p}/`, `http://127.0.0.3:${p}/`]);

    const traffic = load(lb.url);
    cleanups.push(() => traffic.stop());
    await waitFor(() => sims.at.get("127.0.0.2")!.requests > 10 && sims.at.get("127.0.0.3")!.requests > 10, "traffic on both addresses");
    const kept = lb.pool.get(`api.test#127.0.0.2:${p}`)!;
    const keptRequests = kept.stats.requests;

    // .3 leaves DNS, .4 joins.
    await dns.setHosts(["127.0.0.2 api.test", "127.0.0.4 api.test"]);
    // Within one refresh (2 s) plus its first health check.
    await waitFor(() => sims.at.get("127.0.0.4")!.requests > 10, "the new address to get traffic", 5000);
    await waitFor(() => !names(lb).includes(`api.test#127.0.0.3:${p}`), "the vanished address to leave the pool", 5000);
    expect(names(lb)).toEqual([`api.test#127.0.0.2:${p}`, `api.test#127.0.0.4:${p}`]);
    // The address that stayed is the same backend: its counters carried over.
    expect(lb.pool.get(`api.test#127.0.0.2:${p}`)).toBe(kept);
    expect(kept.stats.requests).toBeGreaterThan(keptRequests);
    // Once out of the pool, .3 gets nothing new.
    const gone = sims.at.get("127.0.0.3")!;
    await waitFor(() => gone.active === 0, "requests in flight on the removed address to finish");
    const goneCount = gone.requests;
    const sent = traffic.ok();
    await waitFor(() => traffic.ok() > sent + 100, "100 more requests");
    expect(gone.requests).toBe(goneCount);

    await traffic.stop();
    expect(traffic.failures).toEqual([]);
    expect(lines.some((l) => l.includes("dns discovery") && l.includes(`api.test: 127.0.0.4:${p} appeared`) && l.includes(`api.test: 127.0.0.3:${p} gone`))).toBe(true);
  }, 30_000);

  test("a failed lookup keeps the last good set, says so once, and recovers", async () => {
    const sims = await startSims(["127.0.0.2", "127.0.0.3"]);
    const dns = await startDns(["127.0.0.2 api.test", "127.0.0.3 api.test"]);
    const { lb, lines } = await balancerFor({
      dns: { servers: [`127.0.0.1:${dns.port}`], timeout: "200ms" },
      backends: [{ dns: "api.test", port: sims.port, refresh: "1s" }],
    });
    const before = names(lb);
    expect(before.length).toBe(2);
    await dns.stop();
    await waitFor(() => lines.some((l) => /dns api\.test \(A\): lookup failed: \S+; keeping the last 2 addresses/.test(l)), "the failure to be logged", 5000);
    // Several more failed refreshes (1 s apart, 200 ms each): still one line, the same backends,
    // traffic still served. Nothing to wait for but time: this is about what does not happen.
    await Bun.sleep(2500);
    for (let i = 0; i < 20; i++) expect((await fetch(lb.url)).status).toBe(200);
    expect(names(lb)).toEqual(before);
    expect(lines.filter((l) => l.includes("lookup failed")).length).toBe(1);
    await dns.start();
    await waitFor(() => lines.some((l) => l.includes("dns api.test (A): resolves again (2 addresses)")), "the recovery to be logged", 5000);
    expect(names(lb)).toEqual(before);
  }, 30_000);

  test("the record's TTL, not a long refresh, sets the pace (bounded below by 1 s)", async () => {
    const sims = await startSims(["127.0.0.2", "127.0.0.3"]);
    const dns = await startDns(["127.0.0.2 api.test"]);
    const { lb } = await balancerFor({
      dns: { servers: [`127.0.0.1:${dns.port}`] },
      backends: [{ dns: "api.test", port: sims.port, refresh: "10m" }],
    });
    expect(names(lb)).toEqual([`api.test#127.0.0.2:${sims.port}`]);
    await dns.setHosts(["127.0.0.2 api.test", "127.0.0.3 api.test"]);
    // TTL 1 s: seen after about a second, not ten minutes.
    await waitFor(() => names(lb).length === 2, "the second address, at the TTL's pace", 5000);
  }, 15_000);

  test("SRV records give ports, priorities and weights: the best priority takes the traffic, by weight; the next is a standby", async () => {
    const a = await startSims(["127.0.0.2"]);
    const b = await startSims(["127.0.0.3"]);
    const dns = await startDns(["127.0.0.2 a.test", "127.0.0.3 b.test", "127.0.0.4 backup.test"], [
      `_http._tcp.api.test,a.test,${a.port},0,3`,
      `_http._tcp.api.test,b.test,${b.port},0,1`,
      `_http._tcp.api.test,backup.test,9,1,1`,
    ]);
    const { lb } = await balancerFor({
      strategy: "weighted-round-robin",
      dns: { servers: [`127.0.0.1:${dns.port}`] },
      backends: [{ name: "api", dns: "_http._tcp.api.test", type: "SRV" }],
    });
    // Best priority first; the backup is a backend too (probed: nothing listens on port 9).
    expect(lb.pool.backends.map((x) => [x.name, x.priority, x.weight])).toEqual([
      [`api#127.0.0.2:${a.port}`, 0, 3],
      [`api#127.0.0.3:${b.port}`, 0, 1],
      ["api#127.0.0.4:9", 1, 1],
    ]);
    expect(lb.pool.activePriority()).toBe(0);
    const answers = await Promise.all(Array.from({ length: 8 }, async () => (await fetch(lb.url)).text()));
    expect(answers.filter((x) => x === "127.0.0.2\n").length).toBe(6);
    expect(answers.filter((x) => x === "127.0.0.3\n").length).toBe(2);
  }, 15_000);

  test("SRV records that lead to one address and port make one backend: the best priority, that priority's weights added", async () => {
    const a = await startSims(["127.0.0.2"]);
    const dns = await startDns(["127.0.0.2 a.test", "127.0.0.2 alias.test"], [
      `_http._tcp.api.test,a.test,${a.port},0,1`,
      `_http._tcp.api.test,alias.test,${a.port},0,2`,
      `_http._tcp.api.test,a.test,${a.port},5,7`,
    ]);
    const { lb } = await balancerFor({
      dns: { servers: [`127.0.0.1:${dns.port}`] },
      backends: [{ name: "api", dns: "_http._tcp.api.test", type: "SRV" }],
    });
    expect(lb.pool.backends.map((x) => [x.name, x.priority, x.weight])).toEqual([[`api#127.0.0.2:${a.port}`, 0, 3]]);
  }, 15_000);

  test("AAAA records, in TCP mode: the addresses are dialled as [v6]:port", async () => {
    const sim = await startSimBackend({ name: "v6", host: "::1", port: 0 });
    cleanups.push(() => sim.stop());
    const dns = await startDns(["127.0.0.2 probe.test", "::1 v6.test"]);
    const { lb } = await balancerFor({
      mode: "tcp",
      healthCheck: { type: "tcp", interval: "200ms" },
      dns: { servers: [`127.0.0.1:${dns.port}`] },
      backends: [{ dns: "v6.test", type: "AAAA", port: sim.port }],
    });
    expect(lb.pool.backends.map((x) => [x.name, x.url.href])).toEqual([[`v6.test#[::1]:${sim.port}`, `tcp://[::1]:${sim.port}`]]);
    expect(await (await fetch(`http://127.0.0.1:${lb.port}/`)).text()).toBe("v6\n");
  }, 15_000);

  test("a reload adds and removes DNS entries; static backends beside them are untouched", async () => {
    const sims = await startSims(["127.0.0.2", "127.0.0.3"]);
    const dns = await startDns(["127.0.0.2 api.test", "127.0.0.3 api.test"]);
    const staticSim = await startSimBackend({ name: "static", port: 0 });
    cleanups.push(() => staticSim.stop());
    const base = { ...rigDefaults(), dns: { servers: [`127.0.0.1:${dns.port}`] } };
    let next: Record<string, unknown> = { ...base, backends: [{ name: "static", url: staticSim.url }] };
    const rig = await startRig(0, () => next, undefined, { load: async () => validateConfig(next), file: "test.json" });
    cleanups.push(() => rig.stop());
    const lb = rig.balancer;
    const stat = lb.pool.get("static")!;
    next = { ...base, backends: [{ name: "static", url: staticSim.url }, { dns: "api.test", port: sims.port }] };
    await lb.control.reload({ by: "test", from: "local" });
    expect(names(lb)).toEqual(["static", `api.test#127.0.0.2:${sims.port}`, `api.test#127.0.0.3:${sims.port}`]);
    expect(lb.pool.get("static")).toBe(stat);
    next = { ...base, backends: [{ name: "static", url: staticSim.url }] };
    await lb.control.reload({ by: "test", from: "local" });
    expect(names(lb)).toEqual(["static"]);
    // The admin API edits config entries: adding a backend keeps a DNS entry an entry.
    next = { ...base, backends: [{ name: "static", url: staticSim.url }, { dns: "api.test", port: sims.port }] };
    await lb.control.reload({ by: "test", from: "local" });
    await lb.control.add({ name: "extra", url: staticSim.url.replace("127.0.0.1", "localhost") }, { by: "test", from: "local" });
    expect(names(lb)).toEqual(["static", `api.test#127.0.0.2:${sims.port}`, `api.test#127.0.0.3:${sims.port}`, "extra"]);
    expect(lb.config.pools.default!.backends.map((b) => b.dns ?? b.url)).toEqual([`${staticSim.url}/`, "api.test", `${staticSim.url.replace("127.0.0.1", "localhost")}/`]);
    // A discovered backend can be drained like any, but its weight and presence are its entry's.
    const one = `api.test#127.0.0.2:${sims.port}`;
    const actor = { by: "test", from: "local" };
    await expect(lb.control.setWeight(one, 5, actor)).rejects.toThrow(`${one} was found through DNS (the entry "api.test", dns api.test)`);
    await expect(lb.control.remove(one, actor)).rejects.toThrow("change the entry in the config file and reload");
    expect(lb.pool.get(one)!.isEnabled).toBe(true);
    expect((await lb.control.drain(one, actor)).enabled).toBe(false);
  }, 20_000);
});

/**
 * SRV priorities as failover tiers (src/pool/tiers.ts), on both engines: primaries of priority
 * 0 at 127.0.0.2-3, a standby of priority 1 at 127.0.0.4, all the sims on one port. Health
 * checks every 200 ms, rise 1 and fall 1; traffic from 4 loops throughout, and no request may
 * fail.
 */
describe.skipIf(dnsmasq.skip).each(["fetch", "socket"])("SRV priorities with dnsmasq (%s engine)", (engine) => {
  const srvFor = (port: number, primaries: string[], standbys: string[]) => [
    ...primaries.map((name) => `_http._tcp.api.test,${name},${port},0,1`),
    ...standbys.map((name) => `_http._tcp.api.test,${name},${port},1,1`),
  ];
  const hosts = ["127.0.0.2 a.test", "127.0.0.3 b.test", "127.0.0.4 s.test"];

  async function tiered(primaries = ["a.test", "b.test"], standbys = ["s.test"]) {
    const sims = await startSims(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    const dns = await startDns(hosts, srvFor(sims.port, primaries, standbys));
    const { lb, lines } = await balancerFor({
      engine,
      dns: { servers: [`127.0.0.1:${dns.port}`] },
      backends: [{ name: "api", dns: "_http._tcp.api.test", type: "SRV", refresh: "1s" }],
    });
    const p = sims.port;
    const sim = (last: number) => sims.at.get(`127.0.0.${last}`)!;
    const backend = (last: number) => lb.pool.get(`api#127.0.0.${last}:${p}`)!;
    return { sims, dns, lb, lines, p, sim, backend };
  }

  /** Once `quiet` has nothing in flight, 100 more requests go through and it gets none of them. */
  async function getsNothing(quiet: SimBackend, traffic: ReturnType<typeof load>, what: string) {
    await waitFor(() => quiet.active === 0, `requests in flight on ${what} to finish`);
    const before = quiet.requests;
    const sent = traffic.ok();
    await waitFor(() => traffic.ok() > sent + 100, "100 more requests");
    expect(quiet.requests).toBe(before);
  }

  test("the standby gets no traffic while a primary is up, but is probed; it takes over when every primary fails its check, and traffic comes back when one passes again", async () => {
    const { lb, p, sim, backend } = await tiered();
    expect(lb.pool.backends.map((b) => [b.name, b.priority])).toEqual([
      [`api#127.0.0.2:${p}`, 0], [`api#127.0.0.3:${p}`, 0], [`api#127.0.0.4:${p}`, 1],
    ]);
    const traffic = load(lb.url);
    cleanups.push(() => traffic.stop());
    await waitFor(() => sim(2).requests > 20 && sim(3).requests > 20, "traffic on both primaries");
    expect(sim(4).requests).toBe(0);
    // The standby is probed like any backend, so that it is known good before it is needed.
    const firstCheck = backend(4).lastCheck!;
    expect(firstCheck.ok).toBe(true);
    await waitFor(() => backend(4).lastCheck!.at > firstCheck.at, "a later probe of the standby");
    expect(lb.pool.activePriority()).toBe(0);

    // One primary fails its check: the other takes everything; the standby still nothing.
    sim(2).setHealth("down");
    await waitFor(() => backend(2).state() === "down", "the first primary to be marked down");
    await getsNothing(sim(2), traffic, "the first primary");
    expect(sim(4).requests).toBe(0);

    // The second fails too: failover to priority 1.
    const failingAt = performance.now();
    sim(3).setHealth("down");
    await waitFor(() => lb.pool.activePriority() === 1, "failover to the standby tier");
    const failoverMs = performance.now() - failingAt;
    const atFailover = sim(4).requests;
    await waitFor(() => sim(4).requests > atFailover + 20, "traffic on the standby");
    await getsNothing(sim(3), traffic, "the second primary");

    // The first passes its check again: failback, and the standby is a standby again.
    const backAt = performance.now();
    sim(2).setHealth("up");
    await waitFor(() => lb.pool.activePriority() === 0, "failback to the primaries' tier");
    // Informational (probes every 200 ms, fall 1, rise 1): not asserted.
    console.log(`${engine}: failover ${failoverMs.toFixed(0)} ms after the last primary's check began failing, failback ${(performance.now() - backAt).toFixed(0)} ms after it passed again`);
    const back = sim(2).requests;
    await getsNothing(sim(4), traffic, "the standby");
    // Those 100 went to the primary, but for the (at most 4) in flight when `back` was read:
    // received before it, answered after (measured once: 99 more).
    expect(sim(2).requests).toBeGreaterThan(back + 100 - 4);

    await traffic.stop();
    expect(traffic.failures).toEqual([]);
  }, 30_000);

  test("a primary that dies (connections refused) fails over without a failed request; its restart is found by its health check and traffic comes back", async () => {
    const { lb, sim, backend } = await tiered(["a.test"], ["b.test", "s.test"]);
    expect(lb.pool.backends.map((b) => b.priority)).toEqual([0, 1, 1]);
    const traffic = load(lb.url);
    cleanups.push(() => traffic.stop());
    await waitFor(() => sim(2).requests > 20, "traffic on the primary");
    expect(sim(3).requests + sim(4).requests).toBe(0);

    // Killed: requests in flight on it are reset and retried on the standbys, and new
    // connections are refused, which marks it down at once.
    await sim(2).stop();
    await waitFor(() => sim(3).requests > 20 && sim(4).requests > 20, "traffic on both standbys");
    expect(backend(2).state()).toBe("down");
    expect(lb.pool.activePriority()).toBe(1);

    // Back on the same address and port: the next probe readmits it and the tier with it.
    await sim(2).start();
    await waitFor(() => lb.pool.activePriority() === 0, "failback once the primary's check passes", 5000);
    await getsNothing(sim(3), traffic, "one standby");
    await getsNothing(sim(4), traffic, "the other standby");

    await traffic.stop();
    expect(traffic.failures).toEqual([]);
  }, 30_000);

  test("a record whose priority changes in DNS moves its backend between tiers in place: same backend, counters kept", async () => {
    const { sims, dns, lb, lines, p, sim, backend } = await tiered(["a.test"], ["b.test", "s.test"]);
    const standby = backend(3);
    await fetch(lb.url);
    expect(sim(3).requests).toBe(0);
    // b.test (127.0.0.3) joins priority 0; a.test (127.0.0.2) drops to priority 1.
    await dns.setSrv([
      `_http._tcp.api.test,a.test,${sims.port},1,1`,
      `_http._tcp.api.test,b.test,${sims.port},0,1`,
      `_http._tcp.api.test,s.test,${sims.port},1,1`,
    ]);
    await waitFor(() => backend(3).priority === 0 && backend(2).priority === 1, "the new priorities", 5000);
    expect(backend(3)).toBe(standby);
    expect(lb.pool.backends.map((b) => [b.name, b.priority])).toEqual([
      [`api#127.0.0.3:${p}`, 0], [`api#127.0.0.2:${p}`, 1], [`api#127.0.0.4:${p}`, 1],
    ]);
    const before = sim(2).requests;
    for (let i = 0; i < 20; i++) expect(await (await fetch(lb.url)).text()).toBe("127.0.0.3\n");
    expect(sim(2).requests).toBe(before);
    expect(lines.some((l) => l.includes(`api: 127.0.0.3:${p} priority 1 weight 1 now priority 0 weight 1`) && l.includes(`api#127.0.0.3:${p}: priority 1 -> 0`))).toBe(true);
  }, 30_000);
});

describe("config", () => {
  const problems = (backends: unknown[], extra: Record<string, unknown> = {}) => {
    try {
      validateConfig({ backends, ...extra });
      return [];
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      return e.problems;
    }
  };

  test("a dns entry gets its name, type A and a 10s refresh; a url entry none of those", () => {
    const c = validateConfig({ backends: [{ dns: "api.internal", port: 8080 }, { url: "http://10.0.0.1:80" }] });
    expect(c.pools.default!.backends[0]).toMatchObject({ name: "api.internal", dns: "api.internal", port: 8080, type: "A", refresh: 10_000 });
    expect(c.pools.default!.backends[1]).toEqual({ name: "backend-2", url: "http://10.0.0.1/", weight: 1, maxConnections: 0, disabled: false });
    expect(c.dns).toEqual({ servers: [], timeout: 2000 });
  });

  test.each([
    ["backends[0].url: missing; this option is required (or dns, for DNS discovery)", [{}]],
    ["backends[0]: got both url and dns, expected one", [{ url: "http://a:1", dns: "a.test", port: 1 }]],
    ["backends[0].port: only with dns (DNS discovery); a url entry takes none", [{ url: "http://a:1", port: 8080 }]],
    ["backends[0].refresh: only with dns", [{ url: "http://a:1", refresh: "5s" }]],
    ["backends[0].port: missing; an A record gives addresses, not ports", [{ dns: "a.test" }]],
    ["backends[0].port: missing; an AAAA record gives addresses, not ports", [{ dns: "a.test", type: "AAAA" }]],
    ["backends[0].port: got 80, expected none: SRV records carry their ports", [{ dns: "_x._tcp.a.test", type: "SRV", port: 80 }]],
    ["backends[0].priority: got 1, expected none: SRV records carry their priorities", [{ dns: "_x._tcp.a.test", type: "SRV", priority: 1 }]],
    ["backends[0].priority: got -1, expected a priority of at least 0", [{ url: "http://a:1", priority: -1 }]],
    ["backends[0].priority: got 65536, expected a priority of at most 65535", [{ dns: "a.test", port: 80, priority: 65536 }]],
    ["backends[0].priority: got 1.5, expected an integer priority", [{ url: "http://a:1", priority: 1.5 }]],
    ['backends[0].type: got "MX", expected "A", "AAAA" or "SRV"', [{ dns: "a.test", port: 80, type: "MX" }]],
    ["backends[0].refresh: got \"0s\", expected a duration of more than 0", [{ dns: "a.test", port: 80, refresh: "0s" }]],
    ['backends[1].name: got "a.test", expected a unique name', [{ dns: "a.test", port: 80 }, { dns: "a.test", port: 81 }]],
  ])("%s", (message, backends) => {
    expect(problems(backends as unknown[]).join("\n")).toContain(message);
  });

  test("priority: on a url entry and on an A/AAAA entry (every address gets it); absent means 0", () => {
    const c = validateConfig({ backends: [{ url: "http://10.0.0.1", priority: 2 }, { dns: "a.test", port: 80, priority: 1 }, { url: "http://10.0.0.2" }] });
    expect(c.pools.default!.backends.map((b) => b.priority)).toEqual([2, 1, undefined]);
  });

  test("dns.servers must be addresses the resolver takes", () => {
    expect(problems([{ dns: "a.test", port: 1 }], { dns: { servers: ["127.0.0.1:5353", "[::1]:53", "10.0.0.2"] } })).toEqual([]);
    expect(problems([{ dns: "a.test", port: 1 }], { dns: { servers: ["dns.example.com"] } })).toEqual([
      'dns.servers[0]: got "dns.example.com", expected an address with an optional port, like "10.0.0.2", "127.0.0.1:5353" or "[::1]:53"',
    ]);
    expect(problems([{ dns: "a.test", port: 1 }], { dns: { server: ["10.0.0.2"] } })).toEqual(['dns.server: unknown option; did you mean "servers"?']);
  });
});

describe("SRV weights as backend weights (RFC 2782)", () => {
  test.each([
    ["as they are when they fit", [3, 1], [3, 1]],
    ["all 0: an even share", [0, 0, 0], [1, 1, 1]],
    ["0 beside others: the smallest share, the others scaled by a whole factor (ratios exact)", [0, 3, 1], [1, 999, 333]],
    ["0 beside a 1", [0, 1], [1, 1000]],
    ["above 1000: scaled into 1..1000 in proportion", [65535, 32768, 1], [1000, 500, 1]],
    ["one record", [7], [7]],
  ])("%s", (_, given, expected) => {
    expect(srvWeights(given)).toEqual(expected);
  });
});
