/**
 * The single binary: built once, copied to an empty directory, and run there with nothing else
 * on disk: --version, check, and a short demo.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };

const work = mkdtempSync(join(tmpdir(), "switchyard-build-"));
const empty = mkdtempSync(join(tmpdir(), "switchyard-run-"));
const bin = join(empty, "switchyard");

beforeAll(() => {
  const built = Bun.spawnSync([process.execPath, "build.ts", "--outfile", join(work, "switchyard")], { cwd: join(import.meta.dir, ".."), stdout: "pipe", stderr: "pipe" });
  if (built.exitCode !== 0) throw new Error(`build failed: ${built.stderr.toString()}`);
  copyFileSync(join(work, "switchyard"), bin);
  Bun.spawnSync(["chmod", "+x", bin]);
  // A .env and bunfig.toml in the working directory must not be read by the binary.
  writeFileSync(join(empty, ".env"), "BUN_CONFIG_VERBOSE_FETCH=curl\n");
  writeFileSync(join(empty, "bunfig.toml"), "this is not toml [[[\n");
}, 60_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(empty, { recursive: true, force: true });
});

const run = (...args: string[]) => Bun.spawnSync([bin, ...args], { cwd: empty, stdout: "pipe", stderr: "pipe" });

test("--version", () => {
  const r = run("--version");
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString().trim()).toBe(pkg.version);
});

test("check validates a config from the working directory", () => {
  writeFileSync(join(empty, "lb.toml"), 'strategy = "round-robin"\n[[backends]]\nurl = "http://127.0.0.1:5001"\n');
  const ok = run("check", "--config", "lb.toml");
  expect(ok.exitCode).toBe(0);
  expect(JSON.parse(ok.stdout.toString()).strategy).toBe("round-robin");
  writeFileSync(join(empty, "bad.toml"), 'strategy = "fastest"\n');
  const bad = run("check", "--config", "bad.toml");
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString()).toContain('strategy: got "fastest"');
});

test("a short demo: sim backends, balancer and dashboard answer, Ctrl-C exits 0", async () => {
  const proc = Bun.spawn([bin, "demo"], { cwd: empty, stdout: "pipe", stderr: "pipe" });
  try {
    let out = "";
    const reader = proc.stdout.getReader();
    while (!out.includes("Ctrl-C stops everything")) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`demo exited: ${out}${await new Response(proc.stderr).text()}`);
      out += new TextDecoder().decode(value);
    }
    void (async () => {
      while (!(await reader.read()).done);
    })();
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add(await (await fetch("http://127.0.0.1:8000/")).text());
    expect([...names].sort()).toEqual(["backend-1\n", "backend-2\n", "backend-3\n"]);
    expect((await fetch("http://127.0.0.1:8081/healthz")).status).toBe(200);
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
}, 20_000);

test("the binary starts its workers from itself (serve --workers 2) and stops them", async () => {
  const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("up\n") });
  const proc = Bun.spawn([bin, "serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--workers", "2", "--backend", `http://127.0.0.1:${backend.port}`], { cwd: empty, stdout: "pipe", stderr: "pipe" });
  try {
    let out = "";
    const reader = proc.stdout.getReader();
    const ready = /proxy listening on (http:\/\/\S+) [\s\S]*admin listening on (http:\/\/\S+)/;
    while (!ready.test(out)) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`serve exited: ${out}${await new Response(proc.stderr).text()}`);
      out += new TextDecoder().decode(value);
    }
    void (async () => {
      while (!(await reader.read()).done);
    })();
    const [, url, admin] = ready.exec(out)!;
    expect(await (await fetch(`${url}/`)).text()).toBe("up\n");
    const stats = (await (await fetch(`${admin}/stats`)).json()) as { workers: { list: { state: string; pid: number }[] } };
    expect(stats.workers.list.map((w) => w.state)).toEqual(["serving", "serving"]);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    for (const w of stats.workers.list) expect(() => process.kill(w.pid, 0)).toThrow();
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    backend.stop(true);
  }
}, 20_000);
