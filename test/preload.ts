/**
 * Loaded by `bun test` before any test file (bunfig.toml [test] preload).
 *
 * On a fresh clone `bun run demo` works (bun run installs missing packages on its own) but
 * `bun test` never auto-installs, so every file importing hono, valibot or a test tool failed
 * with "Cannot find package". A newcomer's `bun test` should just work: when a package the
 * lockfile pins is absent, this installs exactly the locked versions, saying so. This process's
 * resolver has already recorded node_modules as absent (Bun caches directory lookups; a fresh
 * resolve still fails after the install), so the same command line is then run again in a
 * child, whose exit status becomes ours.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };

const root = join(import.meta.dir, "..");
const wanted = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
const absent = wanted.filter((name) => !existsSync(join(root, "node_modules", name, "package.json")));

if (absent.length > 0) {
  const fail = (why: string): never => {
    console.error(`switchyard tests: ${why}; run \`bun install\`, then \`bun test\` again`);
    process.exit(1);
  };
  if (process.env.SWITCHYARD_PRELOAD_INSTALLED) fail(`${absent.join(", ")} still missing after installing`);
  console.error(`switchyard tests: ${absent.join(", ")} not installed; running \`bun install --frozen-lockfile\` first`);
  const install = Bun.spawnSync([process.execPath, "install", "--frozen-lockfile"], { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (install.exitCode !== 0) fail("`bun install --frozen-lockfile` failed (see above)");
  // The original command line, flags included (Bun.argv keeps only the test files).
  const cmdline = existsSync("/proc/self/cmdline") ? readFileSync("/proc/self/cmdline", "utf8").split("\0").filter(Boolean) : [];
  if (cmdline.length < 2) fail("installed the dependencies, but cannot re-run this command here");
  console.error("switchyard tests: installed; running the tests");
  const again = Bun.spawnSync([process.execPath, ...cmdline.slice(1)], {
    stdio: ["inherit", "inherit", "inherit"],
    env: { ...process.env, SWITCHYARD_PRELOAD_INSTALLED: "1" },
  });
  process.exit(again.exitCode ?? 1);
}
