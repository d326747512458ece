/**
 * `switchyard sim` / `bun sim/main.ts`: runs a simulated backend cluster until SIGINT or SIGTERM.
 */

import { parseArgs } from "node:util";
import { checkFailRate } from "./backend.ts";
import { CLUSTER_DEFAULTS, startCluster, type ClusterOptions, type SimCluster } from "./cluster.ts";
import { parseLatency } from "./latency.ts";

export function simHelp(): string {
  const d = CLUSTER_DEFAULTS;
  return `Usage: switchyard sim [options]

Runs simulated HTTP backends for trying out and testing the load balancer.
Stops on Ctrl-C (SIGINT) or SIGTERM.

Options:
  --count N            number of backends (default ${d.count})
  --base-port P        port of the first backend, the others follow (default ${d.basePort});
                       0 gives every backend an ephemeral port
  --host H             address to listen on (default ${d.host})
  --name-prefix S      backend names are S1, S2, ... (default "${d.namePrefix}")
  --name NAME          one backend named exactly NAME (one per container, as in compose.yaml)
  --latency MS         delay every answer by MS milliseconds, or by a random
                       MIN-MAX range, e.g. 50 or 10-100 (default 0)
  --fail-rate R        answer this fraction (0 to 1) of requests with 500 (default 0)
  --help               show this help

Endpoints of each backend (latency and --fail-rate apply to all but the first three):
  /health                        200 "ok", 503 or no answer at all, as set with /_control
  /stats                         uptime, memory and request count as JSON
  /_control                      GET the state as JSON; POST or PUT JSON to change it:
                                 {"latency": "10-100", "failRate": 0.1, "health": "down"}
  /                              the backend's name (JSON with Accept: application/json)
  /echo[/...]                    the request as JSON: method, path, query, headers, body sha256
  /delay/:ms                     answers after ms milliseconds
  /status/:code                  answers with that status (200 to 599)
  /bytes/:n                      n bytes
  /stream?chunks=5&interval=100  a chunked body, one line every interval ms
  /sse?count=5&interval=100      server-sent events, one every interval ms
  /gzip                          a gzip-encoded body
  /redirect?to=/x                302 to /x
  /cookies?n=3                   n Set-Cookie headers
  /response-headers?Name=Value   sets the given response headers`;
}

/** Returns the process exit code: 0 after a clean stop or --help, 1 if a backend could not start, 2 on bad flags. */
export async function runSimCli(argv: string[]): Promise<number> {
  let options: ClusterOptions;
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        count: { type: "string" },
        "base-port": { type: "string" },
        host: { type: "string" },
        "name-prefix": { type: "string" },
        name: { type: "string" },
        latency: { type: "string" },
        "fail-rate": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      console.log(simHelp());
      return 0;
    }
    options = toClusterOptions(values);
  } catch (err) {
    console.error(`switchyard sim: ${err instanceof Error ? err.message : String(err)}`);
    console.error("Run with --help for usage.");
    return 2;
  }

  let cluster: SimCluster;
  try {
    cluster = await startCluster(options);
  } catch (err) {
    console.error(`switchyard sim: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  for (const b of cluster.backends) console.log(`${b.name} listening on ${b.url}`);

  await new Promise<void>((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
  await cluster.stop();
  console.log(`stopped ${cluster.backends.length} backends`);
  return 0;
}

interface Flags {
  count?: string;
  "base-port"?: string;
  host?: string;
  "name-prefix"?: string;
  name?: string;
  latency?: string;
  "fail-rate"?: string;
}

/** Validates each flag; throws an Error naming the flag, the bad value and what was expected. */
function toClusterOptions(flags: Flags): ClusterOptions {
  const count = wholeFlag("--count", flags.count, CLUSTER_DEFAULTS.count, 1, 1000);
  const basePort = wholeFlag("--base-port", flags["base-port"], CLUSTER_DEFAULTS.basePort, 0, 65535);
  if (basePort > 0 && basePort + count - 1 > 65535) {
    throw new Error(`--base-port ${basePort} with --count ${count}: the last port would be ${basePort + count - 1}, above 65535`);
  }
  const options: ClusterOptions = {
    count,
    basePort,
    host: nonEmptyFlag("--host", flags.host, CLUSTER_DEFAULTS.host),
    namePrefix: nonEmptyFlag("--name-prefix", flags["name-prefix"], CLUSTER_DEFAULTS.namePrefix),
  };
  if (flags.name !== undefined) {
    if (count !== 1 && flags.count !== undefined) throw new Error(`--name names one backend: it cannot be used with --count ${count}`);
    if (flags["name-prefix"] !== undefined) throw new Error("--name and --name-prefix cannot be used together");
    options.count = 1;
    options.name = nonEmptyFlag("--name", flags.name, "");
  }
  if (flags.latency !== undefined) {
    try {
      options.latency = parseLatency(flags.latency);
    } catch (err) {
      throw new Error(`--latency: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const failRate = flags["fail-rate"];
  if (failRate !== undefined) {
    const n = failRate.trim() === "" ? Number.NaN : Number(failRate);
    try {
      options.failRate = checkFailRate(n);
    } catch {
      throw new Error(`--fail-rate: invalid value ${JSON.stringify(failRate)}: expected a number from 0 to 1, like 0.1`);
    }
  }
  return options;
}

function wholeFlag(flag: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new Error(`${flag}: invalid value ${JSON.stringify(raw)}: expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function nonEmptyFlag(flag: string, raw: string | undefined, fallback: string): string {
  if (raw === undefined) return fallback;
  if (raw.trim() === "") throw new Error(`${flag}: invalid value ${JSON.stringify(raw)}: expected a non-empty value`);
  return raw;
}
