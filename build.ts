/**
 * Builds the single-file executable: `bun run build` → dist/switchyard (this host's platform).
 *
 *   bun build.ts [--target bun-linux-arm64] [--outfile dist/switchyard-arm64]
 *
 * The dashboard page and the demo config are imported as text/JSON and so are embedded.
 * The binary must not pick up a .env or bunfig.toml from whatever directory it runs in.
 */
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { target: { type: "string" }, outfile: { type: "string", default: "dist/switchyard" } },
});
const outfile = resolve(import.meta.dir, values.outfile!);
mkdirSync(dirname(outfile), { recursive: true });

const cmd = [
  process.execPath, "build", "--compile", "--minify", "--sourcemap",
  "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
  ...(values.target ? [`--target=${values.target}`] : []),
  "src/cli.ts", "--outfile", outfile,
];
const started = performance.now();
const proc = Bun.spawnSync(cmd, { cwd: import.meta.dir, stdout: "inherit", stderr: "inherit" });
if (proc.exitCode !== 0) {
  console.error(`build failed: ${cmd.join(" ")}`);
  process.exit(proc.exitCode ?? 1);
}
const size = Bun.file(outfile).size;
console.log(`built ${outfile} (${(size / 1024 / 1024).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)}s`);
