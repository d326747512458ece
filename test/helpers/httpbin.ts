/**
 * httpbin (Debian's python3-httpbin) served by gunicorn on an ephemeral loopback port: a real
 * backend, not ours, for tests of what a proxy changes on the way: a backend we wrote would
 * share our own reading of the RFCs.
 *
 * Found through test/helpers/system.ts: gunicorn is the program; the httpbin module must be
 * importable by gunicorn's own Python (its #! line, /usr/bin/python3 on Debian, which need not
 * be the python3 first on PATH). Missing either: skipped with a SKIPPED line, or under CI=true
 * a failure (.ci/run installs both).
 */
import { readFileSync } from "node:fs";
import { IN_CI, requirePrograms } from "./system.ts";

export interface Httpbin {
  readonly port: number;
  /** "http://127.0.0.1:PORT" */
  readonly url: string;
  stop(): Promise<void>;
}

export interface HttpbinAvailability {
  /** True when the tests should be skipped: something is missing and this is not CI. */
  readonly skip: boolean;
  /** Throws, naming what is missing and how to install it. */
  assertPresent(): void;
}

/** Whether httpbin can run here; prints one SKIPPED notice when the tests will be skipped. */
export function requireHttpbin(purpose: string): HttpbinAvailability {
  const programs = requirePrograms(purpose, { gunicorn: "gunicorn" });
  let problem: string | undefined;
  if (programs.missing.length === 0) {
    const python = interpreterOf(programs.path("gunicorn"));
    const check = Bun.spawnSync([python, "-c", "import httpbin"], { stdout: "ignore", stderr: "ignore" });
    if (check.exitCode !== 0) problem = `the httpbin module is not importable by ${python} (Debian: apt-get install -y python3-httpbin)`;
    if (problem !== undefined && !IN_CI) console.warn(`SKIPPED ${purpose}: ${problem}. With CI=true this is a failure; .ci/run installs it.`);
  }
  return {
    skip: programs.skip || (problem !== undefined && !IN_CI),
    assertPresent() {
      programs.assertPresent();
      if (problem !== undefined) throw new Error(`${purpose}: ${problem}${IN_CI ? "; CI=true requires it" : ""}`);
    },
  };
}

/** The interpreter named by a script's #! line (gunicorn is a Python script). */
function interpreterOf(script: string): string {
  const first = readFileSync(script, "utf8").split("\n", 1)[0] ?? "";
  const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(first);
  if (m === null) return "python3";
  // "#!/usr/bin/env python3"
  return m[1]!.endsWith("/env") && m[2] !== undefined ? m[2] : m[1]!;
}

/** Start httpbin on a free port; resolves once gunicorn says where it listens. */
export async function startHttpbin(): Promise<Httpbin> {
  const gunicorn = requirePrograms("httpbin", { gunicorn: "gunicorn" }).path("gunicorn");
  // Threads, so that a test's concurrent requests do not queue behind one another.
  const proc = Bun.spawn([gunicorn, "--bind", "127.0.0.1:0", "--worker-class", "gthread", "--threads", "16", "--log-level", "info", "httpbin:app"], {
    stdout: "ignore",
    stderr: "pipe",
  });
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  let log = "";
  const timeout = setTimeout(() => proc.kill(), 15_000);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`gunicorn exited (${await proc.exited}) before listening:\n${log}`);
      log += decoder.decode(value, { stream: true });
      const m = /Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      // Booting the worker follows "Listening at"; requests wait in the backlog until it is up.
      if (m !== null) {
        clearTimeout(timeout);
        // Keep draining stderr so that gunicorn never blocks on a full pipe.
        void (async () => {
          while (!(await reader.read()).done);
        })().catch(() => {});
        const port = Number(m[1]);
        return {
          port,
          url: `http://127.0.0.1:${port}`,
          async stop() {
            proc.kill("SIGTERM");
            // gunicorn's graceful stop can take its 30 s timeout: not a test's.
            const forced = setTimeout(() => proc.kill("SIGKILL"), 2000);
            await proc.exited;
            clearTimeout(forced);
          },
        };
      }
    }
  } catch (e) {
    clearTimeout(timeout);
    proc.kill("SIGKILL");
    throw e;
  }
}
