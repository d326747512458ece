/**
 * The command line as a user runs it: a subprocess per case, real servers, signals.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startCluster, type SimCluster } from "../sim/cluster.ts";
import { waitFor } from "./helpers/wait.ts";

const CLI = join(import.meta.dir, "../src/cli.ts");
const dir = mkdtempSync(join(tmpdir(), "switchyard-cli-"));
const procs: Subprocess[] = [];
let cluster: SimCluster | undefined;
afterEach(async () => {
  for (const p of procs.splice(0)) if (p.exitCode === null) p.kill("SIGKILL");
  await cluster?.stop();
  cluster = undefined;
});

async function run(...args: string[]) {
  const p = Bun.spawn([process.execPath, CLI, ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** Start a long-running command and wait for a line matching `ready` on stdout. */
async function start(args: string[], ready: RegExp): Promise<{ proc: Subprocess<"ignore", "pipe", "pipe">; match: RegExpMatchArray; output: () => string }> {
  const proc = Bun.spawn([process.execPath, CLI, ...args], { stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  let out = "";
  const reader = proc.stdout.getReader();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = out.match(ready);
    if (m) {
      void (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          out += new TextDecoder().decode(value);
        }
      })();
      return { proc, match: m, output: () => out };
    }
    if (Date.now() > deadline) throw new Error(`no ${ready} in: ${out}`);
    const { done, value } = await reader.read();
    if (done) throw new Error(`exited before ${ready}: ${out}${await new Response(proc.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
}

describe("help and version", () => {
  test("--version prints the package version", async () => {
    const r = await run("--version");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
  test.each(["", "serve", "sim", "demo", "check", "ctl", "reload", "health"])("%s --help", async (cmd) => {
    const r = await run(...(cmd ? [cmd] : []), "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage");
  });
  test("an unknown command or flag exits 2", async () => {
    expect((await run("frobnicate")).code).toBe(2);
    const r = await run("serve", "--bogus");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--bogus");
  });
});

describe("check", () => {
  test("a valid file prints normalized and exits 0", async () => {
    const file = join(dir, "ok.yaml");
    writeFileSync(file, "backends:\n  - url: http://127.0.0.1:5001\nretry:\n  timeout: 20s\n");
    const r = await run("check", "--config", file);
    expect(r.code).toBe(0);
    const config = JSON.parse(r.stdout);
    expect(config.retry.timeout).toBe(20_000);
    expect(config.pools.default.backends[0].name).toBe("backend-1");
    expect(config.listeners).toEqual([{ name: "default", host: "0.0.0.0", port: 8000, mode: "http", proxyProtocol: false }]);
    expect(config.routes).toEqual([{ name: "default", match: {}, pool: "default" }]);
  });
  test("an invalid file prints every problem and exits 2", async () => {
    const file = join(dir, "bad.json");
    writeFileSync(file, JSON.stringify({ lisen: { port: 1 }, strategy: "fastest", backends: [{ url: "ftp://x" }] }));
    const r = await run("check", "--config", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('lisen: unknown option; did you mean "listen"?');
    expect(r.stderr).toContain('strategy: got "fastest"');
    expect(r.stderr).toContain('backends[0].url: got "ftp://x"');
    expect(r.stderr).toContain("3 problems");
  });
});

/** check and serve validate alike, and start-up failures say which listener. */
describe("config faults, as a user meets them", () => {
  test("check and serve refuse the same bad trustedProxies with the same words (exit 2)", async () => {
    const file = join(dir, "trusted.json");
    writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, admin: false, backends: [{ url: "http://127.0.0.1:9" }], trustedProxies: ["10.0.0.0/99", "999.1.1.1"] }));
    for (const command of ["check", "serve"]) {
      const r = await run(command, "--config", file);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('trustedProxies[0]: got "10.0.0.0/99", expected a prefix length of 0-32 for IPv4');
      expect(r.stderr).toContain('trustedProxies[1]: got "999.1.1.1", expected an IPv4 address (four numbers 0-255)');
    }
  });

  test("a directory given as the config is reported as a directory", async () => {
    const r = await run("check", "--config", dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is a directory");
    expect(r.stderr).not.toContain("file not found");
  });

  test("YAML duplicate keys: the key and its lines", async () => {
    const file = join(dir, "dup.yaml");
    writeFileSync(file, "backends:\n  - url: http://127.0.0.1:5001\nhealthCheck:\n  interval: 1s\n  interval: 0\n");
    const r = await run("check", "--config", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("healthCheck.interval: duplicate key (lines 4 and 5)");
  });

  test("a bad listen host names listen.host and the value (exit 2, not EINVAL)", async () => {
    const r = await run("serve", "--host", "999.1.1.1", "--port", "0", "--backend", "http://127.0.0.1:9", "--no-admin");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('listen.host: got "999.1.1.1"');
  });

  test("the admin port equal to the proxy port is a config error naming both (HTTP and TCP mode)", async () => {
    for (const mode of ["http", "tcp"]) {
      const backend = mode === "tcp" ? "127.0.0.1:9" : "http://127.0.0.1:9";
      const r = await run("serve", "--mode", mode, "--port", "18099", "--admin-port", "18099", "--backend", backend);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("admin.port: got 18099, expected a port other than listen.port (18099");
    }
  });

  test("a listener that cannot bind is named with its address (exit 1)", async () => {
    const busy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
    try {
      const file = join(dir, "busy-admin.json");
      writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, admin: { host: "127.0.0.1", port: busy.port }, healthCheck: false, backends: [{ url: "http://127.0.0.1:9" }] }));
      const admin = await run("serve", "--config", file);
      expect(admin.code).toBe(1);
      expect(admin.stderr).toContain(`cannot start: admin listener on 127.0.0.1:${busy.port}: address already in use`);
      for (const [mode, backend] of [["http", "http://127.0.0.1:9"], ["tcp", "127.0.0.1:9"]]) {
        const proxy = await run("serve", "--mode", mode!, "--host", "127.0.0.1", "--port", String(busy.port), "--backend", backend!, "--no-admin");
        expect(proxy.code).toBe(1);
        expect(proxy.stderr).toContain(`cannot start: proxy listener on 127.0.0.1:${busy.port}: address already in use`);
      }
    } finally {
      busy.stop(true);
    }
  });
});

describe("serve", () => {
  test("without config or backends, or with a bad config, exits 2 naming the problem", async () => {
    expect((await run("serve")).code).toBe(2);
    const r = await run("serve", "--backend", "http://127.0.0.1:5001", "--strategy", "nope", "--no-admin");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('strategy: got "nope"');
    const noKey = await run("serve", "--backend", "http://127.0.0.1:5001", "--strategy", "consistent-hash", "--no-admin");
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('hash: missing; "strategy": "consistent-hash" needs "hash"');
  });

  test("--hash-key gives consistent-hash its key: one user, one backend", async () => {
    cluster = await startCluster({ count: 3, basePort: 0 });
    const { match } = await start(
      ["serve", "--host", "127.0.0.1", "--port", "0", "--no-admin", "--strategy", "consistent-hash", "--hash-key", "header:X-User", ...cluster.backends.flatMap((b) => ["--backend", b.url])],
      /proxy listening on (http:\/\/\S+) \(strategy consistent-hash/,
    );
    const answers = await Promise.all(Array.from({ length: 6 }, async () => (await fetch(`${match[1]}/`, { headers: { "x-user": "alice" } })).text()));
    expect(new Set(answers).size).toBe(1);
  });

  test("a busy port: a clear message and exit 1", async () => {
    const busy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
    try {
      const r = await run("serve", "--host", "127.0.0.1", "--port", String(busy.port), "--backend", "http://127.0.0.1:9", "--no-admin");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("cannot start");
    } finally {
      busy.stop(true);
    }
  });

  test("flags override the file; SIGTERM lets in-flight requests finish, then exits 0", async () => {
    cluster = await startCluster({ count: 2, basePort: 0 });
    const file = join(dir, "serve.json");
    writeFileSync(file, JSON.stringify({
      listen: { host: "127.0.0.1", port: 1 },
      admin: false,
      strategy: "random",
      healthCheck: false,
      timeouts: { shutdownGrace: "5s" },
      backends: [{ url: "http://127.0.0.1:9" }],
    }));
    const { proc, match } = await start(
      ["serve", "--config", file, "--port", "0", "--strategy", "round-robin", ...cluster.backends.flatMap((b) => ["--backend", b.url])],
      /proxy listening on (http:\/\/\S+) \(strategy (\S+)\)/,
    );
    const [, url, strategy] = match;
    expect(strategy).toBe("round-robin");
    const names = await Promise.all([1, 2].map(async () => (await fetch(`${url}/`)).text()));
    expect(names.sort()).toEqual(["backend-1\n", "backend-2\n"]);

    const slow = fetch(`${url}/delay/700`);
    await waitFor(() => cluster!.backends.some((b) => b.active === 1), "the slow request to reach a backend");
    proc.kill("SIGTERM");
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("delayed 700ms");
    expect(await proc.exited).toBe(0);
  });

  test("--workers 2: Ctrl-C (SIGINT to every process of the group) drains the workers, then exits 0", async () => {
    cluster = await startCluster({ count: 1, basePort: 0 });
    const { proc, match } = await start(
      ["serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--workers", "2", "--backend", cluster.backends[0]!.url],
      /proxy listening on (http:\/\/\S+) .*2 worker processes[\s\S]*admin listening on (http:\/\/\S+)/,
    );
    const [, url, admin] = match;
    const stats = (await (await fetch(`${admin}/stats`)).json()) as { workers: { list: { pid: number; state: string }[] } };
    const pids = stats.workers.list.map((w) => w.pid);
    expect(stats.workers.list.map((w) => w.state)).toEqual(["serving", "serving"]);
    const slow = fetch(`${url}/delay/700`);
    await Bun.sleep(150);
    // A terminal's Ctrl-C reaches the workers too: they leave the shutdown to the owner.
    for (const pid of [...pids, proc.pid]) process.kill(pid, "SIGINT");
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await proc.exited).toBe(0);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });

  test("the grace period bounds the wait for in-flight requests", async () => {
    cluster = await startCluster({ count: 1, basePort: 0 });
    const file = join(dir, "grace.json");
    writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false, timeouts: { shutdownGrace: "300ms" }, backends: [{ url: cluster.backends[0]!.url }] }));
    const { proc, match } = await start(["serve", "--config", file], /proxy listening on (http:\/\/\S+)/);
    const hanging = fetch(`${match[1]}/delay/10000`).catch(() => "cut");
    await waitFor(() => cluster!.backends[0]!.active === 1, "the hanging request to reach the backend");
    const stopped = performance.now();
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
    expect(performance.now() - stopped).toBeLessThan(3000);
    expect(await hanging).toBe("cut");
  });
});

describe("reload and ctl", () => {
  const TOKEN = "cli-test-token-0123456789";

  test("SIGHUP reloads the file; ctl and reload talk to the admin API with exit codes 0, 1 and 2", async () => {
    cluster = await startCluster({ count: 2, basePort: 0 });
    const [u1, u2] = cluster.backends.map((b) => b.url);
    const file = join(dir, "reload.json");
    const config = (weight: number | string) => JSON.stringify({
      listen: { host: "127.0.0.1", port: 0 },
      admin: { host: "127.0.0.1", port: 0, token: TOKEN },
      healthCheck: false,
      log: { access: false },
      backends: [{ name: "one", url: u1 }, { name: "two", url: u2, weight }],
    });
    writeFileSync(file, config(1));
    const { proc, match, output } = await start(["serve", "--config", file], /admin listening on (http:\/\/\S+)/);
    const admin = match[1]!;
    const ctl = (...args: string[]) => run("ctl", "--admin", admin, "--token", TOKEN, ...args);

    let r = await ctl("backends");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toMatch(/^NAME\s+STATE\s+WEIGHT\s+IN FLIGHT\s+REQUESTS\s+URL\s+REASON$/);
    expect(r.stdout).toMatch(/\ntwo\s+up\s+1\s+0\s+0\s+http:/);

    writeFileSync(file, config(3));
    proc.kill("SIGHUP");
    const deadline = Date.now() + 5000;
    while (!/change #1 reload from .*\(by SIGHUP from signal\): two: weight 1 -> 3/.test(output())) {
      if (Date.now() > deadline) throw new Error(`no reload line in: ${output()}`);
      await Bun.sleep(20);
    }

    r = await ctl("drain", "one");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("one: draining, 0 in flight\n");
    r = await ctl("weight", "two", "7");
    expect(r.stdout).toBe("two: up, weight 7, 0 in flight\n");
    r = await ctl("add", "three", u1!, "--weight", "2");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("added three: up, weight 2, 0 in flight\n");
    r = await ctl("remove", "three");
    expect(r.stdout).toMatch(/^removed three \(drained in \d+ms\)\n$/);
    r = await ctl("health", "two", "down");
    expect(r.stdout).toBe("two: down (forced down), weight 7, 0 in flight\n");

    // Refused requests and bad usage: 2.
    r = await ctl("weight", "nine", "2");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no backend named "nine"');
    r = await ctl("weight", "two", "heavy");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('weight: got "heavy", expected a whole number');
    r = await run("ctl", "--admin", admin, "enable", "one");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Authorization: Bearer");
    expect((await ctl("frobnicate")).code).toBe(2);
    // Nothing listening there: 1.
    r = await run("ctl", "--admin", "http://127.0.0.1:9", "backends");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot reach the admin API at http://127.0.0.1:9");

    // A bad file: reload is refused with every problem, and exits 2; the balancer keeps running.
    writeFileSync(file, config("heavy"));
    r = await run("reload", "--admin", admin, "--token", TOKEN);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('backends[1].weight: got "heavy", expected a weight');
    writeFileSync(file, config(3));
    r = await run("reload", "--admin", admin, "--token", TOKEN);
    expect(r.code).toBe(0);
    // The file resets what the API changed: weight 7 -> 3.
    expect(r.stdout).toContain("two: weight 7 -> 3");
    expect(proc.exitCode).toBeNull();
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  });

  test("an unreadable admin.tokenFile stops the start with exit 2, naming the field", async () => {
    const file = join(dir, "badtoken.json");
    writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, admin: { host: "127.0.0.1", port: 0, tokenFile: join(dir, "missing") }, backends: [{ url: "http://127.0.0.1:9" }] }));
    const r = await run("serve", "--config", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("admin.tokenFile: cannot read");
  });
});
