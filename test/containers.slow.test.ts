/**
 * The Dockerfile and compose.yaml, for real, with podman from Debian: the image is built from
 * source (its build stage compiles the binary), run read-only as non-root with traffic through
 * it and stopped with SIGTERM; then compose brings up the balancer and three sim backends, one
 * backend is stopped and started again (the walk-through in docs/operations.md), and it all comes down.
 *
 * No image registry is reachable here, so both images the Dockerfile starts from are made from
 * this host: the Bun runtime's libraries (per ldd) in an otherwise empty root filesystem, plus
 * Bun itself for the build stage, imported with `podman import` and passed as BASE_IMAGE and
 * BUILD_IMAGE. The build stage still installs its packages from the npm registry.
 *
 * Needs podman, runc and podman-compose (Debian packages of those names; .ci/run installs them
 * and writes the containers.conf this machine needs). Missing: skipped with a notice, or a
 * failure under CI=true. Present but unable to run a container (no namespaces, say): skipped,
 * saying why.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { startCluster, type SimCluster } from "../sim/cluster.ts";
import { requirePrograms } from "./helpers/system.ts";
import { processAlive, waitFor } from "./helpers/wait.ts";
import { refusedPort } from "./tcp/helpers.ts";

const ROOT = join(import.meta.dir, "..");
const RUN_ID = `${process.pid}`;
const BASE = `localhost/switchyard-test-base:${RUN_ID}`;
const BUILD = `localhost/switchyard-test-build:${RUN_ID}`;
const IMAGE = `localhost/switchyard-test:${RUN_ID}`;
const PROJECT = `switchyard-test-${RUN_ID}`;

const tools = requirePrograms("the container tests", { podman: "podman", runc: "runc", "podman-compose": "podman-compose", ldd: "libc-bin" });

/** Every podman command gets runc: crun refuses the hybrid cgroup layout of these machines. */
async function sh(cmd: string[], opts: { env?: Record<string, string>; stdin?: Blob } = {}) {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdin: opts.stdin ?? "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...opts.env } });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { out, err, code };
}
const podman = (...args: string[]) => sh([tools.path("podman"), ...args]);
const must = async (what: string, p: Promise<{ out: string; err: string; code: number }>) => {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.err}${r.out}`);
  return r.out;
};
const RUNTIME = () => ["--runtime", tools.path("runc")];

/** A root filesystem holding the libraries the Bun runtime links (the compiled binary links the same). */
function hostRootfs(withBun: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-rootfs-"));
  const ldd = Bun.spawnSync([tools.path("ldd"), process.execPath]).stdout.toString();
  for (const lib of ldd.match(/\/\S+/g) ?? []) {
    mkdirSync(join(dir, dirname(lib)), { recursive: true });
    cpSync(lib, join(dir, lib), { dereference: true });
  }
  mkdirSync(join(dir, "tmp"));
  chmodSync(join(dir, "tmp"), 0o1777);
  if (withBun) {
    mkdirSync(join(dir, "usr/local/bin"), { recursive: true });
    cpSync(process.execPath, join(dir, "usr/local/bin/bun"), { dereference: true });
    mkdirSync(join(dir, "root"));
    // A machine behind a TLS-inspecting proxy trusts an extra CA; the build stage's bun install must too.
    const ca = process.env.NODE_EXTRA_CA_CERTS;
    if (ca) {
      mkdirSync(join(dir, "etc/ssl/certs"), { recursive: true });
      cpSync(ca, join(dir, "etc/ssl/certs/extra-ca.crt"), { dereference: true });
    }
  }
  return dir;
}

async function importRootfs(dir: string, tag: string, changes: string[]): Promise<void> {
  const tar = Bun.spawnSync(["tar", "-C", dir, "-c", "."], { stdout: "pipe" });
  rmSync(dir, { recursive: true, force: true });
  if (tar.exitCode !== 0) throw new Error("tar of the root filesystem failed");
  await must(`podman import ${tag}`, sh([tools.path("podman"), "import", ...changes.flatMap((c) => ["--change", c]), "-", tag], { stdin: new Blob([new Uint8Array(tar.stdout)]) }));
}

/** Makes the two host images and runs one container; says why when this machine cannot. */
async function prepareEngine(): Promise<string | undefined> {
  if (tools.skip) return undefined;
  tools.assertPresent();
  await importRootfs(hostRootfs(false), BASE, []);
  await importRootfs(hostRootfs(true), BUILD, process.env.NODE_EXTRA_CA_CERTS ? ["ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/extra-ca.crt"] : []);
  const probe = await podman("run", "--rm", ...RUNTIME(), "--network", "host", BUILD, "/usr/local/bin/bun", "--version");
  if (probe.code !== 0 || probe.out.trim() !== Bun.version) {
    return `podman cannot run a container here (exit ${probe.code}): ${(probe.err || probe.out).trim().split("\n").slice(-3).join(" / ")}`;
  }
  return undefined;
}

/**
 * What an earlier run of this file left behind when it was killed before afterAll (a CI step
 * cut at its time limit): containers, images and networks named after a process that is gone.
 * A compose project left running keeps its published ports DNAT'd to containers that no longer
 * answer, and every later server that binds one of them loses its connections (see
 * publishablePort).
 */
async function sweepLeftovers(): Promise<void> {
  const list = async (...args: string[]) => (await podman(...args)).out.split("\n").map((l) => l.trim()).filter(Boolean);
  const deadRun = (name: string) => {
    const m = /^(?:localhost\/)?switchyard-test(?:-base|-build)?[-:](\d+)(?:\b|_)/.exec(name);
    return m !== null && Number(m[1]) !== process.pid && !processAlive(Number(m[1]));
  };
  const containers = (await list("ps", "-a", "--format", "{{.Names}}")).filter(deadRun);
  if (containers.length > 0) await podman("rm", "-f", "-t", "0", ...containers);
  const images = (await list("images", "--format", "{{.Repository}}:{{.Tag}}")).filter(deadRun);
  if (images.length > 0) await podman("rmi", "-f", ...images);
  const networks = (await list("network", "ls", "--format", "{{.Name}}")).filter(deadRun);
  if (networks.length > 0) await podman("network", "rm", "-f", ...networks);
}

/**
 * A host port for podman to publish, free now and outside the kernel's ephemeral range
 * (ip_local_port_range). A published port is a DNAT rule, not a socket: the kernel still hands
 * it to anyone who binds port 0, and connections to that server then go to the container. Seen
 * in full runs as a rig whose proxy or backend refused every connection.
 */
function publishablePort(): number {
  const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number) as [number];
  const floor = 10_000;
  if (!(low > floor + 1000)) throw new Error(`the ephemeral port range starts at ${low}: no room below it for published ports`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    try {
      // Free on every address: compose publishes the balancer's port on 0.0.0.0.
      Bun.listen({ hostname: "0.0.0.0", port, exclusive: true, socket: { data() {} } }).stop(true);
      return port;
    } catch {
      // Taken: try another.
    }
  }
  throw new Error(`no free port found between ${floor} and ${low}`);
}

let cannotRun: string | undefined;
try {
  if (!tools.skip) await sweepLeftovers();
  cannotRun = await prepareEngine();
} catch (e) {
  // A missing program under CI=true is a failure, reported by the tests below.
  if (!tools.skip && tools.missing.length === 0) cannotRun = `preparing the host images failed: ${(e as Error).message}`;
}
if (cannotRun) console.warn(`SKIPPED the container tests: ${cannotRun}`);

/** Images this run built that may lose their tag before afterAll. */
const builtIds: string[] = [];

afterAll(async () => {
  if (tools.missing.length > 0) return;
  await sh([tools.path("podman-compose"), "-p", PROJECT, "down", "-t", "2"], { env: { SWITCHYARD_IMAGE: IMAGE } });
  await podman("rm", "-f", "-t", "2", `${PROJECT}-single`);
  await podman("rmi", "-f", IMAGE, ...builtIds, BUILD, BASE);
  // podman-compose down leaves the project's network behind.
  await podman("network", "rm", "-f", `${PROJECT}_default`);
});

describe.skipIf(tools.skip || cannotRun !== undefined)("container image and compose", () => {
  // Every test below uses the image, so it is built once, first. --format docker: the OCI
  // format has no HEALTHCHECK. --network host: the build stage runs bun install.
  beforeAll(async () => {
    tools.assertPresent();
    await must(
      "podman build",
      podman("build", ...RUNTIME(), "--format", "docker", "--network", "host", "--layers=false",
        "--build-arg", `BUILD_IMAGE=${BUILD}`, "--build-arg", `BASE_IMAGE=${BASE}`, "-t", IMAGE, "."),
    );
    // compose's own build later takes the tag; this one is removed by its ID.
    builtIds.push((await must("podman inspect", podman("image", "inspect", "--format", "{{.Id}}", IMAGE))).trim());
  }, 300_000);

  test("the image built from source holds the binary, runs as non-root and declares its ports and health check", async () => {
    const [info] = JSON.parse(await must("podman inspect", podman("image", "inspect", IMAGE)));
    const config = info.Config;
    expect(config.User).toBe("65532:65532");
    expect(Object.keys(config.ExposedPorts).sort()).toEqual(["8000/tcp", "8081/tcp"]);
    expect(config.Entrypoint).toEqual(["/usr/local/bin/switchyard"]);
    expect(config.Cmd).toEqual(["serve", "--config", "/etc/switchyard/switchyard.yaml"]);
    expect(info.Healthcheck?.Test ?? config.Healthcheck?.Test).toEqual(["CMD", "/usr/local/bin/switchyard", "health"]);
    expect(config.Env).toContain("BUN_CONFIG_DNS_TIME_TO_LIVE_SECONDS=1");
    // Only the binary on top of the base: no node_modules, no sources, no Bun.
    const base = JSON.parse(await must("podman inspect", podman("image", "inspect", BASE)))[0];
    const binary = Bun.file(process.execPath).size;
    expect(info.Size - base.Size).toBeLessThan(binary + 16 * 1024 * 1024);
    const version = await must("switchyard --version", podman("run", "--rm", ...RUNTIME(), "--network", "host", IMAGE, "--version"));
    expect(version.trim()).toBe((await Bun.file(join(ROOT, "package.json")).json()).version);
  });

  test("run read-only as non-root: traffic through it, health check passes, an upgrade in place loses nothing, SIGTERM lets a request finish and exits 0", async () => {
    let cluster: SimCluster | undefined;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-container-"));
    const name = `${PROJECT}-single`;
    try {
      cluster = await startCluster({ count: 3, basePort: 0 });
      const [port, adminPort] = [refusedPort(), refusedPort()];
      writeFileSync(join(dir, "switchyard.yaml"), [
        `listen: { host: 127.0.0.1, port: ${port} }`,
        `admin: { host: 127.0.0.1, port: ${adminPort} }`,
        "strategy: round-robin",
        "healthCheck: { path: /health, interval: 500ms }",
        "backends:",
        ...cluster.backends.map((b) => `  - { name: ${b.name}, url: "${b.url}" }`),
      ].join("\n"));
      // mkdtemp makes the directory 0700; the container's user (65532) must be able to read it.
      chmodSync(dir, 0o755);
      // --network host: the sims listen on this host's loopback. --read-only-tmpfs=false: not even
      // a writable /tmp, so anything the binary tried to write would fail.
      await must("podman run", podman("run", "-d", "--name", name, ...RUNTIME(), "--network", "host", "--read-only", "--read-only-tmpfs=false",
        "-v", `${dir}:/etc/switchyard:ro`, "-e", `SWITCHYARD_HEALTH_URL=http://127.0.0.1:${adminPort}/healthz`, IMAGE));
      const lb = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined))?.status === 200, "the container's /readyz", 20_000, 100)
        .catch(async (e) => {
          const logs = await podman("logs", name);
          throw new Error(`${(e as Error).message}; container logs:\n${logs.out}${logs.err}`);
        });

      const names = await Promise.all(Array.from({ length: 30 }, async () => (await fetch(`${lb}/`)).text()));
      expect(new Set(names)).toEqual(new Set(["backend-1\n", "backend-2\n", "backend-3\n"]));
      const hc = await podman("healthcheck", "run", name);
      expect(hc.code).toBe(0);
      const top = await must("podman top", podman("top", name, "user", "pid", "args"));
      expect(top).toMatch(/65532\s+1\s+\/usr\/local\/bin\/switchyard serve/);

      // An upgrade in place: SIGUSR2 to PID 1, which is the keeper (src/control/keeper.ts), under
      // 16 request loops. The new generation takes over, the old one drains and exits, and PID 1,
      // so the container, stays: no request fails.
      let answered = 0;
      let failed = 0;
      let going = true;
      const loops = Array.from({ length: 16 }, async () => {
        while (going) {
          try {
            const r = await fetch(`${lb}/`);
            await r.text();
            if (r.status === 200) answered++;
            else failed++;
          } catch {
            failed++;
          }
        }
      });
      await waitFor(() => answered > 200, "traffic through the container");
      await must("podman kill --signal USR2", podman("kill", "--signal", "USR2", name));
      const logsText = async () => {
        const l = await podman("logs", name);
        return l.out + l.err;
      };
      await waitFor(async () => /keeper: pid \d+ exited \(0\); following its successor/.test(await logsText()), "the old generation to drain and exit", 30_000, 200);
      const before = answered;
      await waitFor(() => answered > before + 200, "traffic through the new generation");
      going = false;
      await Promise.all(loops);
      expect(failed).toBe(0);
      expect(await logsText()).toContain("upgrade: serving beside pid");
      expect(await must("podman top", podman("top", name, "user", "pid", "args"))).toMatch(/65532\s+1\s+\/usr\/local\/bin\/switchyard serve/);

      // PID 1 gets the SIGTERM: an in-flight request still completes, then a clean exit.
      const slow = fetch(`${lb}/delay/800`);
      await waitFor(() => cluster!.backends.some((b) => b.active > 0), "the slow request to reach a backend");
      const stop = await podman("stop", "-t", "20", name);
      expect(stop.code).toBe(0);
      const res = await slow;
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("delayed 800ms");
      const [state] = JSON.parse(await must("podman inspect", podman("container", "inspect", name)));
      expect(state.State.ExitCode).toBe(0);
      const logs = await podman("logs", name);
      expect(logs.out + logs.err).toContain("SIGTERM: stopping");
    } finally {
      await podman("rm", "-f", "-t", "2", name);
      await cluster?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test("compose: three sims behind the balancer; a stopped backend goes down and comes back when started", async () => {
    const port = publishablePort();
    let adminPort = publishablePort();
    while (adminPort === port) adminPort = publishablePort();
    // BASE_IMAGE and BUILD_IMAGE from the environment reach the Dockerfile through compose.yaml.
    const env = { SWITCHYARD_IMAGE: IMAGE, SWITCHYARD_PORT: String(port), SWITCHYARD_ADMIN_PORT: String(adminPort), BASE_IMAGE: BASE, BUILD_IMAGE: BUILD };
    const compose = (...args: string[]) => sh([tools.path("podman-compose"), "-p", PROJECT, ...args], { env });
    const balancerLogs = async () => {
      const r = await podman("logs", `${PROJECT}_switchyard_1`);
      return r.out + r.err;
    };
    // The admin port answers only Hosts that name it (against DNS rebinding): the port it is
    // published on here is not 8081, so send what a browser at localhost:8081 as the docs publish it sends.
    const admin = (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`, { headers: { host: "localhost:8081" } });
    const backendStates = async () => {
      const stats = (await (await admin("/stats")).json()) as { backends: { name: string; state: string }[] };
      return Object.fromEntries(stats.backends.map((b) => [b.name, b.state]));
    };
    // up --build, as docs/operations.md says: compose builds the image itself from compose.yaml's build section.
    const built = await must("podman-compose up --build", compose(
      "--podman-build-args", ["--format", "docker", "--network", "host", "--layers=false", ...RUNTIME()].join(" "),
      "--podman-run-args", RUNTIME().join(" "),
      "up", "--build", "-d",
    ));
    expect(built).toContain(`FROM ${BUILD} AS build`);
    expect(built).toContain(`FROM ${BASE}`);
    try {
      await waitFor(async () => (await admin("/readyz").catch(() => undefined))?.status === 200, "compose's balancer to be ready", 30_000, 200);
      await waitFor(async () => Object.values(await backendStates()).every((s) => s === "up"), "all three backends up", 15_000, 200);
      const names = await Promise.all(Array.from({ length: 9 }, async () => (await fetch(`http://127.0.0.1:${port}/`)).text()));
      expect(names.sort()).toEqual(["backend-1\n", "backend-1\n", "backend-1\n", "backend-2\n", "backend-2\n", "backend-2\n", "backend-3\n", "backend-3\n", "backend-3\n"]);
      // The dashboard is published.
      expect(await (await admin("/")).text()).toContain("<html");

      // Traffic all along, as in the walk-through in docs/operations.md: not one request may fail.
      const answers: string[] = [];
      let running = true;
      const load = (async () => {
        while (running) {
          try {
            const r = await fetch(`http://127.0.0.1:${port}/`);
            answers.push(`${r.status} ${(await r.text()).trim()}`);
          } catch (e) {
            answers.push(`error ${(e as Error).message}`);
          }
        }
      })();
      try {
        await must("compose stop backend-2", compose("stop", "-t", "2", "backend-2"));
        await waitFor(async () => /backend backend-2 up -> down/.test(await balancerLogs()), "the balancer to log backend-2 going down", 15_000, 200);
        expect((await backendStates())["backend-2"]).toBe("down");
        const seen = answers.length;
        await waitFor(() => answers.length >= seen + 10, "ten more answers with backend-2 down", 5_000);
        expect(answers.slice(seen).filter((r) => !/^200 backend-[13]$/.test(r))).toEqual([]);
      } finally {
        running = false;
        await load;
      }
      expect(answers.filter((r) => !r.startsWith("200 "))).toEqual([]);

      await must("compose start backend-2", compose("start", "backend-2"));
      // Usually back within 2-3 s. In 2 of about 20 runs on the reference machine, the health
      // checks of the restarted container timed out ("timeout after 500ms") for more than 15 s.
      // The cause is not pinned down; it is not DNS (aardvark answers the new address at once,
      // and the image's 1 s DNS cache was measured to follow a change). The bound leaves room,
      // and a failure shows the containers, the balancer's log and /stats.
      await waitFor(async () => /backend backend-2 down -> up/.test(await balancerLogs()), "the balancer to log backend-2 coming back", 45_000, 200).catch(async (e) => {
        const ps = await podman("ps", "-a", "--filter", `label=io.podman.compose.project=${PROJECT}`, "--format", "{{.Names}} {{.Status}}");
        const lines = (await balancerLogs()).split("\n").filter((l) => !l.includes('"GET /"'));
        const stats = await (await admin("/stats")).text();
        const inspect = await podman("inspect", `${PROJECT}_backend-2_1`, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
        throw new Error(`${(e as Error).message}\ncontainers:\n${ps.out}backend-2 at ${inspect.out}balancer log:\n${lines.slice(-15).join("\n")}\nstats: ${stats}`);
      });
      await waitFor(async () => {
        const r = await fetch(`http://127.0.0.1:${port}/`);
        return (await r.text()) === "backend-2\n";
      }, "backend-2 to answer again", 5_000, 20);
    } finally {
      const down = await compose("down", "-t", "2");
      expect(down.code).toBe(0);
    }
    const left = await podman("ps", "-a", "--filter", `label=io.podman.compose.project=${PROJECT}`, "--format", "{{.Names}}");
    expect(left.out.trim()).toBe("");
  }, 180_000);
});
