import { afterEach, beforeEach, expect, spyOn, test } from "bun:test";
import { runSimCli, simHelp } from "../../sim/cli.ts";
import { fetchErrorCode, REFUSED } from "./helpers.ts";

let out: string[];
let err: string[];

beforeEach(() => {
  out = [];
  err = [];
  spyOn(console, "log").mockImplementation((...args: unknown[]) => void out.push(args.join(" ")));
  spyOn(console, "error").mockImplementation((...args: unknown[]) => void err.push(args.join(" ")));
});

afterEach(() => {
  (console.log as unknown as { mockRestore(): void }).mockRestore();
  (console.error as unknown as { mockRestore(): void }).mockRestore();
});

test("--help prints the usage and returns 0", async () => {
  expect(await runSimCli(["--help"])).toBe(0);
  expect(out.join("\n")).toBe(simHelp());
  for (const flag of ["--count", "--base-port", "--host", "--name-prefix", "--name", "--latency", "--fail-rate", "--help"]) {
    expect(simHelp()).toContain(flag);
  }
});

test.each([
  [["--count", "abc"], '--count: invalid value "abc": expected a whole number from 1 to 1000'],
  [["--count", "0"], '--count: invalid value "0"'],
  [["--base-port", "70000"], '--base-port: invalid value "70000": expected a whole number from 0 to 65535'],
  [["--base-port", "65535", "--count", "2"], "--base-port 65535 with --count 2: the last port would be 65536, above 65535"],
  [["--latency", "5-1"], '--latency: invalid latency "5-1": minimum 5 is greater than maximum 1'],
  [["--latency=-5"], '--latency: invalid latency "-5": latency cannot be negative'],
  [["--latency", "fast"], '--latency: invalid latency "fast": expected milliseconds like "50" or a range like "10-100"'],
  [["--fail-rate", "2"], '--fail-rate: invalid value "2": expected a number from 0 to 1'],
  [["--fail-rate", ""], '--fail-rate: invalid value "": expected a number from 0 to 1'],
  [["--host", ""], '--host: invalid value "": expected a non-empty value'],
  [["--name", "app", "--count", "2"], "--name names one backend: it cannot be used with --count 2"],
  [["--name", "app", "--name-prefix", "x-"], "--name and --name-prefix cannot be used together"],
  [["--name", " "], '--name: invalid value " ": expected a non-empty value'],
  [["--bogus"], "Unknown option '--bogus'"],
  [["--count"], "--count"],
  [["extra"], "extra"],
])("%p returns 2 and says why", async (argv, message) => {
  expect(await runSimCli(argv)).toBe(2);
  expect(err[0]).toStartWith("switchyard sim: ");
  expect(err[0]).toContain(message);
  expect(err[1]).toBe("Run with --help for usage.");
  expect(out).toEqual([]);
});

test("a busy port returns 1 and names the backend", async () => {
  const squatter = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  try {
    expect(await runSimCli(["--base-port", String(squatter.port), "--count", "1"])).toBe(1);
    expect(err.join("\n")).toMatch(/backend-1: .*in use/);
  } finally {
    await squatter.stop(true);
  }
});

test("--name runs one backend with exactly that name", async () => {
  const p = Bun.spawn([process.execPath, "sim/main.ts", "--base-port", "0", "--name", "backend-2"], {
    cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe",
  });
  try {
    const reader = p.stdout.getReader();
    let text = "";
    while (!/listening on (\S+)/.test(text)) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`sim exited: ${text}`);
      text += new TextDecoder().decode(value);
    }
    const url = text.match(/^backend-2 listening on (\S+)$/m)?.[1];
    expect(url).toBeDefined();
    expect(await (await fetch(`${url}/`)).text()).toBe("backend-2\n");
  } finally {
    p.kill("SIGTERM");
    await p.exited;
  }
});

test("bun sim/main.ts runs backends until SIGTERM, then exits 0", async () => {
  const proc = Bun.spawn(["bun", "sim/main.ts", "--base-port", "0", "--count", "2", "--name-prefix", "sim-"], {
    cwd: `${import.meta.dir}/../..`,
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    // Read stdout until both "listening" lines are in.
    const reader = proc.stdout.getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (text.split("\n").length < 3) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`sim exited early: ${text} ${await new Response(proc.stderr).text()}`);
      text += decoder.decode(value, { stream: true });
    }
    const lines = text.trim().split("\n");
    const urls = lines.map((line, i) => {
      const match = /^sim-(\d) listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      expect(match?.[1]).toBe(String(i + 1));
      return match![2]!;
    });
    for (const [i, url] of urls.entries()) expect(await (await fetch(url)).text()).toBe(`sim-${i + 1}\n`);

    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    for (const url of urls) expect(REFUSED).toContain(await fetchErrorCode(url));
  } finally {
    proc.kill("SIGKILL");
  }
});
