/**
 * The access log of a real `switchyard serve` process writing to log.file: reopened on SIGUSR1
 * after logrotate's rename (one process, and two workers, each of which appends to the file
 * itself), and two workers writing thousands of long lines to one file, or to one stdout pipe,
 * without breaking one.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startCluster, type SimCluster } from "../../sim/cluster.ts";
import { testEngine } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");
const engine = testEngine().engine ?? "socket";
const dir = mkdtempSync(join(tmpdir(), "switchyard-access-process-"));
let proc: Subprocess | undefined;
/** What the serve process wrote to stdout so far. */
let stdout = "";
let cluster: SimCluster | undefined;
afterEach(async () => {
  if (proc && proc.exitCode === null) {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  proc = undefined;
  await cluster?.stop();
  cluster = undefined;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `serve` with this log config in its own process; resolves with the proxy's URL once it listens. */
async function serve(name: string, log: Record<string, unknown>, more: Record<string, unknown> = {}): Promise<string> {
  cluster = await startCluster({ count: 1, basePort: 0 });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({
    engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
    backends: [{ name: "b1", url: cluster.backends[0]!.url }], log: { access: true, ...log }, ...more,
  }));
  const p = (proc = Bun.spawn([process.execPath, CLI, "serve", "--config", file], { stdout: "pipe", stderr: "pipe" }));
  let out = "";
  stdout = "";
  const reader = p.stdout.getReader();
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = /proxy listening on (http:\/\/\S+)/.exec(out);
    if (m) {
      stdout = out;
      void (async () => {
        const text = new TextDecoder();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          stdout += text.decode(value, { stream: true });
        }
      })();
      return m[1]!;
    }
    const { done, value } = await reader.read();
    if (done || Date.now() > deadline) throw new Error(`no "proxy listening on" line: ${out}${await new Response(p.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
}

const linesOf = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").slice(0, -1) : []);

/** `n` GET requests, `concurrency` at a time, each on a new connection (so that every worker takes some). */
async function load(url: string, paths: string[], concurrency = 16, headers: (i: number) => Record<string, string> = () => ({})): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < paths.length; i = next++) {
      const r = await fetch(url + paths[i], { headers: { connection: "close", ...headers(i) } });
      await r.arrayBuffer();
    }
  }));
}

const COMBINED = /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/[^"]* HTTP\/1\.1" \d{3} (\d+|-) "[^"]*" "[^"]*"$/;

describe(`log.file on the ${engine} engine`, () => {
  for (const workers of [1, 2]) {
    test(`SIGUSR1 after a rename: the next lines go to a new file, none is lost (workers: ${workers})`, async () => {
      const path = join(dir, `rotate-${workers}.log`);
      const url = await serve(`rotate-${workers}`, { format: "combined", file: path }, { workers });
      let sent = 0;
      const batch = async (n: number) => {
        await load(url, Array.from({ length: n }, (_, i) => `/?n=${sent + i}`));
        sent += n;
      };
      await batch(20);
      await waitFor(() => linesOf(path).length === sent, "the first lines in the file");
      renameSync(path, path + ".1");
      proc!.kill("SIGUSR1");
      // Every process must reopen: keep sending batches on new connections until one lands
      // wholly in the new file (with two workers, 20 new connections all on one worker by
      // chance is one in half a million).
      for (let round = 0; ; round++) {
        const before = linesOf(path + ".1").length;
        await batch(20);
        await waitFor(() => linesOf(path + ".1").length + linesOf(path).length === sent, "every line written, old file and new");
        if (linesOf(path + ".1").length === before) break;
        if (round > 50) throw new Error("the old file still grows");
      }
      const all = [...linesOf(path + ".1"), ...linesOf(path)];
      expect(all.length).toBe(sent);
      for (const l of all) expect(l).toMatch(COMBINED);
      expect(new Set(all.map((l) => /n=(\d+)/.exec(l)![1])).size).toBe(sent);
    }, 60_000);
  }

  test("two workers, thousands of long lines in one file: every line whole", async () => {
    const path = join(dir, "workers.log");
    const url = await serve("workers", { format: "json", fields: ["target", "user_agent", "status"], file: path }, { workers: 2 });
    const n = 3000;
    // Lines from about 200 bytes to nearly 4 KiB, so that batches fill up unevenly.
    const agent = (i: number) => "agent-" + "a".repeat((i * 997) % 3700);
    await load(url, Array.from({ length: n }, (_, i) => `/?i=${i}`), 32, (i) => ({ "user-agent": agent(i) }));
    await waitFor(() => linesOf(path).length >= n, `${n} lines in the file`, 20_000);
    const lines = linesOf(path);
    expect(lines.length).toBe(n);
    const seen = new Set<number>();
    for (const l of lines) {
      const e = JSON.parse(l) as { target: string; user_agent: string; status: number };
      const i = Number(/i=(\d+)/.exec(e.target)![1]);
      expect(e.user_agent).toBe(agent(i));
      expect(e.status).toBe(200);
      seen.add(i);
    }
    expect(seen.size).toBe(n);
  }, 60_000);

  test("two workers, thousands of long lines to one stdout pipe: every line whole", async () => {
    const url = await serve("workers-stdout", { format: "json", fields: ["target", "user_agent", "status"] }, { workers: 2 });
    const n = 2000;
    // Each line under 4 KiB (PIPE_BUF), so that a batch of whole lines fits a pipe's atomic write.
    const agent = (i: number) => "agent-" + "a".repeat((i * 997) % 3700);
    await load(url, Array.from({ length: n }, (_, i) => `/?i=${i}`), 32, (i) => ({ "user-agent": agent(i) }));
    const access = () => stdout.split("\n").filter((l) => l.includes('"target"'));
    await waitFor(() => access().length >= n, `${n} access-log lines on stdout`, 20_000);
    const seen = new Set<number>();
    for (const l of access()) {
      const e = JSON.parse(l) as { target: string; user_agent: string; status: number };
      const i = Number(/i=(\d+)/.exec(e.target)![1]);
      expect(e.user_agent).toBe(agent(i));
      seen.add(i);
    }
    expect(seen.size).toBe(n);
    expect(access().length).toBe(n);
  }, 60_000);
});
