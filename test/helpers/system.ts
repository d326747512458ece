/**
 * Tests that drive a system program (Chromium, redis-server, curl, podman...) ask for it here.
 *
 * On a machine that has only Bun, a missing program skips those tests with a notice naming the
 * program and the Debian package that provides it, so `bun test` passes on a fresh machine.
 * Under CI=true nothing is skipped: CI installs these programs (.ci/run), so a missing one is a
 * failure of the test that needs it, never a silent gap in coverage.
 */
import { existsSync } from "node:fs";

export const IN_CI = process.env.CI === "true";

export interface Programs {
  /** True when the tests should be skipped: something is missing and this is not CI. */
  readonly skip: boolean;
  readonly missing: readonly string[];
  /** Absolute path of a program that was found. */
  path(name: string): string;
  /** Throws, naming what is missing and how to install it; call it first in the test or its beforeAll. */
  assertPresent(): void;
}

/** PATH first, then the sbin and bin directories a non-login shell's PATH may lack. */
export function findProgram(name: string): string | undefined {
  const onPath = Bun.which(name);
  if (onPath) return onPath;
  return ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    .map((dir) => `${dir}/${name}`)
    .find((p) => existsSync(p));
}

/**
 * `purpose` names the tests ("the Redis tests"); `programs` maps each program to the Debian
 * package that installs it. Prints one notice when the tests will be skipped.
 */
export function requirePrograms(purpose: string, programs: Record<string, string>): Programs {
  const found = new Map<string, string>();
  const missing: string[] = [];
  for (const name of Object.keys(programs)) {
    const p = findProgram(name);
    if (p) found.set(name, p);
    else missing.push(name);
  }
  const packages = [...new Set(missing.map((m) => programs[m]!))].join(" ");
  const what = `${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not installed (Debian: apt-get install -y ${packages})`;
  const skip = missing.length > 0 && !IN_CI;
  if (skip) console.warn(`SKIPPED ${purpose}: ${what}. With CI=true this is a failure; .ci/run installs them.`);
  return {
    skip,
    missing,
    path(name) {
      const p = found.get(name);
      if (!p) throw new Error(`${purpose}: ${name} is not installed (Debian: apt-get install -y ${programs[name] ?? name})`);
      return p;
    },
    assertPresent() {
      if (missing.length > 0) throw new Error(`${purpose}: ${what}${IN_CI ? "; CI=true requires them" : ""}`);
    },
  };
}
