/**
 * Errors local to the proxy never count against a backend, on both HTTP engines.
 *
 * Out of descriptors: a balancer run by `switchyard serve`
 * in a child process under `ulimit -n 128`, in front of two healthy sim backends that answer
 * after 300 ms (with TCP checks every 100 ms, so probes run into the shortage too), is sent
 * 200 requests at once: each holds a client and an upstream descriptor, so the child runs
 * out and its dials fail with EMFILE (Bun 1.4.5 reports that as ECONNREFUSED on Bun.connect).
 * No backend may be marked down; the shortage is counted as the proxy's, and the requests it
 * cost are answered 503 SY_LOCAL_RESOURCES.
 *
 * Out of local ports, and a resolver that cannot answer (both HTTP engines and TCP mode): in a network namespace of its own
 * (`unshare -rn`, no privilege needed), test/proxy/fixtures/local-shortage.ts cuts the local
 * port range to two ports and takes them, so every upstream connect fails with EADDRNOTAVAIL;
 * or names a backend by a host name that the unreachable resolver fails with EAI_AGAIN.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startCluster, type SimCluster } from "../../sim/cluster.ts";
import { IN_CI, requirePrograms } from "../helpers/system.ts";
import { serveProcess } from "../helpers/balancer.ts";
import { rawExchange } from "../helpers/raw.ts";

const programs = requirePrograms("the descriptor-exhaustion tests", { sh: "dash" });
const netns = requirePrograms("the port-exhaustion tests", { sh: "dash", unshare: "util-linux", ip: "iproute2" });
const LIMIT = 128;
const CLIENTS = 200;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Child {
  proxyPort: number;
  adminUrl: string;
  /** Its stdout so far (start-up lines, state changes; access log off). */
  output(): string;
}

/** `switchyard serve` in front of `cluster`, under `ulimit -n LIMIT`. */
async function serveLimited(engine: string, cluster: SimCluster): Promise<Child> {
  const child = serveProcess({
    config: {
      engine, admin: { host: "127.0.0.1", port: 0 },
      healthCheck: { type: "tcp", interval: "100ms", timeout: "100ms" },
      backends: cluster.backends.map((b) => ({ name: b.name, url: b.url })),
    },
    wrap: (argv) => [programs.path("sh"), "-c", `ulimit -n ${LIMIT} && exec "$0" "$@"`, ...argv],
  }, cleanups);
  const adminUrl = await child.adminUrl(10_000);
  return { proxyPort: await child.proxyPort(), adminUrl, output: child.output };
}

/** One GET on its own connection; its status line ("" if the connection closed without one). */
async function request(port: number): Promise<string> {
  try {
    const { text } = await rawExchange(port, "GET / HTTP/1.1\r\nhost: lb\r\nconnection: close\r\n\r\n", { timeoutMs: 20_000 });
    return text.split("\r\n")[0] ?? "";
  } catch {
    return "";
  }
}

for (const engine of ["fetch", "socket"] as const) {
  describe.skipIf(programs.skip)(`${engine} engine`, () => {
    test(`out of descriptors (ulimit -n ${LIMIT}, ${CLIENTS} requests at once): no backend is marked down, the proxy's errors are counted`, async () => {
      programs.assertPresent();
      const cluster = await startCluster({ count: 2, basePort: 0 });
      cleanups.push(() => cluster.stop());
      for (const b of cluster.backends) b.setLatency({ min: 300, max: 300 });
      const child = await serveLimited(engine, cluster);

      const lines = await Promise.all(Array.from({ length: CLIENTS }, () => request(child.proxyPort)));
      const count = (prefix: string) => lines.filter((l) => l.startsWith(prefix)).length;
      // The shortage happened, and cost some requests their answer from a backend.
      const tally: Record<string, number> = {};
      for (const l of lines) tally[l] = (tally[l] ?? 0) + 1;
      expect(count("HTTP/1.1 503"), `${JSON.stringify(tally)}\n${child.output()}`).toBeGreaterThan(0);
      // Those that got through were answered by the backends, which stayed in the pool.
      expect(count("HTTP/1.1 200")).toBeGreaterThan(0);

      // Read once the load is over (the admin listener needs a descriptor too).
      const stats = await (await fetch(`${child.adminUrl}/stats`)).json();
      expect(stats.totals.localErrors.EMFILE).toBeGreaterThan(0);
      expect(stats.totals.proxyErrors.SY_LOCAL_RESOURCES).toBe(count("HTTP/1.1 503"));
      expect(stats.totals.proxyErrors.SY_NO_BACKEND).toBe(0);
      expect(stats.totals.proxyErrors.SY_UPSTREAM_FAILED).toBe(0);
      for (const b of stats.backends) {
        expect(b.state).toBe("up");
        expect(b.connectFailures).toBe(0);
        expect(b.errors.proxy).toBe(0);
        expect(b.ejections).toBe(0);
      }
      // Not even for a moment: no state change was logged (probes that hit the shortage too
      // counted neither way).
      expect(child.output()).not.toMatch(/backend \S+ up -> /);
      const metrics = await (await fetch(`${child.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/^switchyard_local_errors_total\{code="EMFILE"\} [1-9]\d*$/m);
    }, 30_000);
  });
}

/** Whether this machine lets an unprivileged process make a user and network namespace. */
function namespacesAllowed(): boolean {
  if (netns.skip) return false;
  return Bun.spawnSync([netns.path("unshare"), "-rn", "true"]).exitCode === 0;
}
const NETNS = namespacesAllowed();
if (!NETNS && !netns.skip) console.warn("port-exhaustion tests: `unshare -rn` is not permitted here (user namespaces off): skipped");

for (const engine of ["fetch", "socket"] as const) {
  describe.skipIf(!NETNS && !IN_CI)(`${engine} engine`, () => {
    test("out of local ports (EADDRNOTAVAIL): answered 503 SY_LOCAL_RESOURCES, counted as the proxy's, no backend marked down", async () => {
      netns.assertPresent();
      const proc = Bun.spawn(
        [netns.path("unshare"), "-rn", netns.path("sh"), "-c", `"$0" link set lo up && exec "$1" "$2" "$3" ports 5`, netns.path("ip"), process.execPath, `${import.meta.dir}/fixtures/local-shortage.ts`, engine],
        { stdout: "pipe", stderr: "pipe" },
      );
      cleanups.push(() => proc.kill());
      const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      expect(await proc.exited, err).toBe(0);
      const r = JSON.parse(out.trim());
      expect(r.answers).toEqual(Array(5).fill({ status: 503, error: "SY_LOCAL_RESOURCES" }));
      // Each request tried up to retry.attempts (3) times, every try refused a local port.
      expect(r.localErrors.EADDRNOTAVAIL).toBe(15);
      for (const b of r.backends) {
        expect(b.state).toBe("up");
        expect(b.connectFailures).toBe(0);
        expect(b.proxyErrors).toBe(0);
        // The TCP probes met the same shortage and counted it neither way.
        expect(b.lastCheck).toBe("no local address or port left (EADDRNOTAVAIL)");
      }
      expect(r.changes).toEqual([]);
    }, 30_000);

    test("a resolver that cannot answer (EAI_AGAIN): the named backend is not blamed, the request moves on", async () => {
      netns.assertPresent();
      const proc = Bun.spawn(
        [netns.path("unshare"), "-rn", netns.path("sh"), "-c", `"$0" link set lo up && exec "$1" "$2" "$3" resolver 4`, netns.path("ip"), process.execPath, `${import.meta.dir}/fixtures/local-shortage.ts`, engine],
        { stdout: "pipe", stderr: "pipe" },
      );
      cleanups.push(() => proc.kill());
      const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      expect(await proc.exited, err).toBe(0);
      const r = JSON.parse(out.trim());
      // Round-robin sends every other first try to the named backend; each is retried on the other.
      expect(r.answers).toEqual(Array(4).fill({ status: 200 }));
      expect(r.localErrors.EAI_AGAIN).toBeGreaterThanOrEqual(2);
      const [named, other] = r.backends;
      expect(named).toMatchObject({ state: "up", connectFailures: 0, proxyErrors: 0 });
      expect(named.lastCheck).toBe("the resolver could not answer now (EAI_AGAIN)");
      expect(other).toMatchObject({ state: "up", connectFailures: 0, proxyErrors: 0 });
      expect(r.changes).toEqual([]);
    }, 30_000);
  });
}

describe.skipIf(!NETNS && !IN_CI)("TCP mode", () => {
  /** The fixture in its own network namespace; its JSON report. */
  async function shortage(kind: "ports" | "resolver", requests: number) {
    netns.assertPresent();
    const proc = Bun.spawn(
      [netns.path("unshare"), "-rn", netns.path("sh"), "-c", `"$0" link set lo up && exec "$1" "$2" tcp "$3" "$4"`, netns.path("ip"), process.execPath, `${import.meta.dir}/fixtures/local-shortage.ts`, kind, String(requests)],
      { stdout: "pipe", stderr: "pipe" },
    );
    cleanups.push(() => proc.kill());
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(await proc.exited, err).toBe(0);
    return JSON.parse(out.trim());
  }

  test("out of local ports: the relay closes the client, counts the proxy's errors, marks no backend down", async () => {
    const r = await shortage("ports", 3);
    // Closed with nothing written, as when every backend is unreachable.
    expect(r.answers).toEqual(Array(3).fill({ status: 0 }));
    expect(r.tcp).toEqual({ localErrors: 6, unreachable: 3, connectFailures: 0 });
    for (const b of r.backends) {
      expect(b).toMatchObject({ state: "up", connectFailures: 0, proxyErrors: 0 });
      expect(b.lastCheck).toBe("no local address or port left (EADDRNOTAVAIL)");
    }
    expect(r.changes).toEqual([]);
  }, 30_000);

  test("a resolver that cannot answer: the connection goes to the other backend; the named one is not blamed", async () => {
    const r = await shortage("resolver", 4);
    expect(r.answers).toEqual(Array(4).fill({ status: 200 }));
    expect(r.tcp.localErrors).toBeGreaterThanOrEqual(2);
    expect(r.tcp.connectFailures).toBe(0);
    expect(r.backends[0]).toMatchObject({ state: "up", connectFailures: 0, proxyErrors: 0, lastCheck: "the resolver could not answer now (EAI_AGAIN)" });
    expect(r.changes).toEqual([]);
  }, 30_000);
});
