/**
 * build.ts's command line, refused before anything is compiled (the builds themselves are in
 * test/build.slow.test.ts).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");

test.each([
  [["--all", "--target", "bun-linux-x64"], "--all builds every release target: it takes --outdir, not --target or --outfile"],
  [["--all", "--outfile", "dist/x"], "--all builds every release target"],
  [["--outdir", "dist"], "--outdir goes with --all; for one binary give --outfile"],
  [["--target", "bun-beos-x64"], '--target: got "bun-beos-x64", expected bun-<linux|darwin|windows>-<x64|arm64>'],
  [["--target", "linux-x64"], '--target: got "linux-x64"'],
  [["--bogus"], "Unknown option '--bogus'"],
  [["extra"], "extra"],
])("build.ts %p exits 2: %s", (args, message) => {
  const r = Bun.spawnSync([process.execPath, "build.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect(r.exitCode).toBe(2);
  const err = r.stderr.toString();
  expect(err).toStartWith("build: ");
  expect(err).toContain(message);
  expect(err).toContain("Usage: bun build.ts");
  expect(r.stdout.toString()).toBe("");
});
