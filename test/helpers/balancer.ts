/** Shared by the end-to-end tests: a balancer on an ephemeral port in front of sim backends. */
import { validateConfig } from "../../src/config/load.ts";
import { startBalancer, type Balancer, type BalancerOptions } from "../../src/balancer.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import type { AccessEntry } from "../../src/log/access.ts";
import { startCluster, type SimCluster } from "../../sim/cluster.ts";

export interface TestRig {
  balancer: Balancer;
  cluster: SimCluster;
  logLines: string[];
  /** Access-log lines as written (text format unless the config says json). */
  access: string[];
  stop(): Promise<void>;
}

export type RigConfig = Record<string, unknown> | ((cluster: SimCluster) => Record<string, unknown>);

/** Resolve a RigConfig against the running cluster. */
export function rigConfig(config: RigConfig, cluster: SimCluster): Record<string, unknown> {
  return typeof config === "function" ? config(cluster) : config;
}

/**
 * Start `count` sim backends on ephemeral ports and a balancer in front of them.
 * `config` (or a function of the cluster giving it) is merged over a test default: loopback,
 * ephemeral port, no admin, no active checks, access log kept in memory.
 */
export async function startRig(
  count: number,
  config: RigConfig = {},
  /** Run on the backends before the balancer starts, so that its start-up probes see it. */
  prepare: (cluster: SimCluster) => void | Promise<void> = () => {},
  /** More balancer options (env, load, file, watch); the logger and access log are the rig's. */
  options: Omit<BalancerOptions, "logger" | "accessLogSink"> = {},
): Promise<TestRig> {
  const cluster: SimCluster = count > 0 ? await startCluster({ count, basePort: 0 }) : { backends: [], stop: async () => {} };
  const access: string[] = [];
  const logger = memoryLogger();
  try {
    await prepare(cluster);
    const balancer = await startBalancer(
      validateConfig({
        // SWITCHYARD_TEST_ENGINE=fetch runs every rig-based suite on the fetch engine
        // (`bun run test:fetch`); a test that names its engine keeps it.
        ...testEngine(),
        listen: { host: "127.0.0.1", port: 0 },
        admin: false,
        healthCheck: false,
        log: { access: true },
        backends: cluster.backends.map((b) => ({ name: b.name, url: b.url })),
        ...rigConfig(config, cluster),
      }),
      { env: {}, ...options, logger, accessLogSink: { write: (l) => void access.push(l), flush: () => {} } },
    );
    return {
      balancer, cluster, logLines: logger.lines, access,
      async stop() {
        await balancer.stop(false);
        await cluster.stop();
      },
    };
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

/**
 * `{ engine }` from SWITCHYARD_TEST_ENGINE, or nothing: `bun run test:fetch` runs the rig-based
 * suites again on the fetch engine. Tests that write config files put it in them too.
 */
export function testEngine(): { engine?: string } {
  const engine = process.env.SWITCHYARD_TEST_ENGINE;
  return engine ? { engine } : {};
}

export type { AccessEntry };
