/**
 * Builds the single-file executable.
 *
 *   bun run build                                   dist/switchyard, for this machine
 *   bun build.ts --target bun-linux-arm64 --outfile dist/switchyard-arm64
 *   bun run build -- --all [--outdir dist]          every release target, and SHA256SUMS
 *
 * The dashboard page and the demo config are imported as text/JSON and so are embedded.
 * The binary must not pick up a .env or bunfig.toml from whatever directory it runs in.
 * A target other than this machine's needs that target's Bun runtime, which bun build fetches
 * from the npm registry.
 */
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/** What `--all` builds: the file name suffix and Bun's --target for each. */
export const RELEASE_TARGETS = {
  "linux-x64": "bun-linux-x64",
  "linux-arm64": "bun-linux-arm64",
  "linux-x64-musl": "bun-linux-x64-musl",
  "darwin-arm64": "bun-darwin-arm64",
} as const;

const TARGET = /^bun-(linux|darwin|windows)-(x64|arm64)(-baseline|-modern)?(-musl)?$/;

const USAGE = `Usage: bun build.ts [--target bun-<os>-<arch>] [--outfile dist/switchyard]
       bun build.ts --all [--outdir dist]`;

function usage(problem: string): never {
  console.error(`build: ${problem}\n\n${USAGE}`);
  process.exit(2);
}

let values;
try {
  values = parseArgs({
    args: Bun.argv.slice(2),
    options: { target: { type: "string" }, outfile: { type: "string" }, all: { type: "boolean" }, outdir: { type: "string" } },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (e) {
  usage((e as Error).message);
}
if (values.all && (values.target !== undefined || values.outfile !== undefined)) usage("--all builds every release target: it takes --outdir, not --target or --outfile");
if (!values.all && values.outdir !== undefined) usage("--outdir goes with --all; for one binary give --outfile");
if (values.target !== undefined && !TARGET.test(values.target)) {
  usage(`--target: got "${values.target}", expected bun-<linux|darwin|windows>-<x64|arm64>[-baseline|-modern][-musl], e.g. bun-linux-arm64`);
}

/** Compiles one binary; returns false (having printed why) when bun build fails. */
function compile(outfile: string, target: string | undefined): boolean {
  mkdirSync(dirname(outfile), { recursive: true });
  const cmd = [
    process.execPath, "build", "--compile", "--minify", "--sourcemap",
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
    ...(target ? [`--target=${target}`] : []),
    "src/cli.ts", "--outfile", outfile,
  ];
  const started = performance.now();
  const proc = Bun.spawnSync(cmd, { cwd: import.meta.dir, stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) {
    console.error(`build failed: ${cmd.join(" ")}`);
    return false;
  }
  const size = Bun.file(outfile).size;
  console.log(`built ${outfile} (${(size / 1024 / 1024).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  return true;
}

if (!values.all) {
  process.exit(compile(resolve(import.meta.dir, values.outfile ?? "dist/switchyard"), values.target) ? 0 : 1);
}

// Every release target, then SHA256SUMS in the format `sha256sum -c` reads.
const outdir = resolve(import.meta.dir, values.outdir ?? "dist");
const sums: string[] = [];
const failed: string[] = [];
for (const [name, target] of Object.entries(RELEASE_TARGETS)) {
  const outfile = join(outdir, `switchyard-${name}`);
  if (!compile(outfile, target)) {
    failed.push(name);
    continue;
  }
  const hash = new Bun.CryptoHasher("sha256").update(await Bun.file(outfile).arrayBuffer()).digest("hex");
  sums.push(`${hash}  ${basename(outfile)}`);
}
writeFileSync(join(outdir, "SHA256SUMS"), sums.length ? `${sums.join("\n")}\n` : "");
console.log(`wrote ${join(outdir, "SHA256SUMS")} (${sums.length} binaries)`);
if (failed.length > 0) {
  console.error(`build: could not build ${failed.join(", ")} (bun build fetches a target's runtime from the npm registry: see the errors above)`);
  process.exit(1);
}
