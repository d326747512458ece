/**
 * The single binary: built once, copied to an empty directory, and run there with nothing else
 * on disk: --version, check, a short demo, workers, and an upgrade to the binary installed over it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { requirePrograms } from "./helpers/system.ts";
import { waitFor } from "./helpers/wait.ts";

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

const loadTool = requirePrograms("the binary upgrade under load", { wrk: "wrk" });

test.skipIf(loadTool.skip)("an upgrade runs the binary now on disk: installed over the running one under wrk at 64 connections, 0 failed", async () => {
  loadTool.assertPresent();
  const wrk = loadTool.path("wrk");
  const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("up\n") });
  const pidFile = join(empty, "switchyard.pid");
  const proc = Bun.spawn([bin, "serve", "--host", "127.0.0.1", "--port", "0", "--no-admin", "--pid-file", pidFile, "--backend", `http://127.0.0.1:${backend.port}`], {
    cwd: empty, stdout: "pipe", stderr: "inherit",
  });
  let successor = 0;
  try {
    let out = "";
    void (async () => {
      // The new process writes to the same pipe, so this ends when it does.
      for await (const chunk of proc.stdout) out += new TextDecoder().decode(chunk);
    })();
    const listening = /proxy listening on (http:\/\/\S+)/;
    await waitFor(() => listening.test(out), "the proxy to listen", 10_000);
    const url = listening.exec(out)![1]!;
    const load = Bun.spawn([wrk, "-t2", "-c64", "-d4s", "--timeout", "5s", `${url}/`], { stdout: "pipe", stderr: "pipe" });
    const report = new Response(load.stdout).text();
    await Bun.sleep(1000);
    // As install(1) does: a new file renamed over the old path; the running process keeps the old one.
    copyFileSync(join(work, "switchyard"), `${bin}.new`);
    Bun.spawnSync(["chmod", "+x", `${bin}.new`]);
    renameSync(`${bin}.new`, bin);
    expect(readlinkSync(`/proc/${proc.pid}/exe`)).toBe(`${bin} (deleted)`);
    proc.kill("SIGUSR2");
    await waitFor(() => Number(readFileSync(pidFile, "utf8")) !== proc.pid, "the pid file to name the new process", 15_000);
    successor = Number(readFileSync(pidFile, "utf8"));
    expect(readlinkSync(`/proc/${successor}/exe`)).toBe(bin);
    expect(await proc.exited).toBe(0);
    await load.exited;
    const text = await report;
    console.log(`binary upgrade under wrk -t2 -c64 4s: ${/(\d+) requests in/.exec(text)?.[1]} requests; ${/Socket errors.*/.exec(text)?.[0] ?? "no socket errors"}`);
    expect(text).toMatch(/\d+ requests in/);
    expect(text).not.toContain("Non-2xx");
    expect(text).not.toContain("Socket errors");
    expect(await (await fetch(`${url}/`)).text()).toBe("up\n");
    process.kill(successor, "SIGTERM");
    await waitFor(() => !existsSync(`/proc/${successor}`), "the new process to stop", 15_000);
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    if (successor && existsSync(`/proc/${successor}`)) process.kill(successor, "SIGKILL");
    backend.stop(true);
  }
}, 30_000);

/** What a binary is built for, from its first bytes: ELF machine and interpreter, or Mach-O CPU. */
function platformOf(bytes: Uint8Array): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) {
    const machine = view.getUint16(18, true);
    const arch = machine === 0x3e ? "x64" : machine === 0xb7 ? "arm64" : `machine-${machine}`;
    // The program interpreter names the C library: ld-musl-* for musl, ld-linux-* for glibc.
    const head = new TextDecoder("latin1").decode(bytes.subarray(0, 4096));
    return `linux-${arch}${head.includes("ld-musl") ? "-musl" : ""}`;
  }
  if (view.getUint32(0, true) === 0xfeedfacf) {
    const cpu = view.getUint32(4, true);
    return `darwin-${cpu === 0x0100000c ? "arm64" : cpu === 0x01000007 ? "x64" : `cpu-${cpu}`}`;
  }
  return "unknown";
}

test("bun run build -- --all: four release binaries, each for its platform, and a SHA256SUMS that sha256sum -c accepts", async () => {
  const outdir = mkdtempSync(join(tmpdir(), "switchyard-release-"));
  try {
    // Cross-compiling fetches each target's runtime from the npm registry (cached afterwards).
    const built = Bun.spawn([process.execPath, "run", "build", "--", "--all", "--outdir", outdir], { cwd: join(import.meta.dir, ".."), stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(built.stdout).text(), new Response(built.stderr).text(), built.exited]);
    if (code !== 0) throw new Error(`build --all failed (${code}):\n${out}\n${err}`);
    const names = ["switchyard-darwin-arm64", "switchyard-linux-arm64", "switchyard-linux-x64", "switchyard-linux-x64-musl"];
    const sums = (await Bun.file(join(outdir, "SHA256SUMS")).text()).trim().split("\n");
    expect(sums.map((l) => l.split("  ")[1]).sort()).toEqual(names);
    for (const name of names) {
      const head = new Uint8Array(await Bun.file(join(outdir, name)).slice(0, 4096).arrayBuffer());
      expect(`${name}: ${platformOf(head)}`).toBe(`${name}: ${name.slice("switchyard-".length)}`);
    }
    const check = Bun.spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: outdir, stdout: "pipe", stderr: "pipe" });
    expect(check.stdout.toString().trim().split("\n").sort()).toEqual(names.map((n) => `${n}: OK`).sort());
    expect(check.exitCode).toBe(0);
    // The one for this machine runs.
    if (process.platform === "linux" && process.arch === "x64") {
      const version = Bun.spawnSync([join(outdir, "switchyard-linux-x64"), "--version"], { cwd: empty, stdout: "pipe" });
      expect(version.stdout.toString().trim()).toBe(pkg.version);
    }
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}, 240_000);
