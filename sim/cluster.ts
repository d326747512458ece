/**
 * A cluster of simulated backends named backend-1..N on consecutive ports.
 */

import { DEFAULT_HOST, startSimBackend, type SimBackend } from "./backend.ts";
import type { Latency } from "./latency.ts";

export interface ClusterOptions {
  /** Number of backends, default 3. */
  count?: number;
  /** Port of the first backend, the rest follow; default 5001. 0: every backend gets an ephemeral port. */
  basePort?: number;
  /** Default "127.0.0.1". */
  host?: string;
  /** Default "backend-": names are prefix + 1..count. */
  namePrefix?: string;
  /** The exact name of a one-backend cluster (count must be 1); overrides namePrefix. */
  name?: string;
  latency?: Latency;
  failRate?: number;
}

export interface SimCluster {
  backends: SimBackend[];
  /** Stops every backend (abruptly, see SimBackend.stop). */
  stop(): Promise<void>;
}

export const CLUSTER_DEFAULTS = {
  count: 3,
  basePort: 5001,
  host: DEFAULT_HOST,
  namePrefix: "backend-",
} as const;

/**
 * Starts `count` backends and resolves once all listen. If one cannot start (a port in use),
 * the ones already started are stopped and the error, naming the backend, is thrown.
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<SimCluster> {
  const count = opts.count ?? CLUSTER_DEFAULTS.count;
  const basePort = opts.basePort ?? CLUSTER_DEFAULTS.basePort;
  const prefix = opts.namePrefix ?? CLUSTER_DEFAULTS.namePrefix;
  if (opts.name !== undefined && count !== 1) throw new Error(`a cluster with an exact name has one backend, not ${count}`);
  if (!Number.isInteger(count) || count < 1) throw new Error(`invalid cluster count ${count}: expected a whole number, at least 1`);
  if (!Number.isInteger(basePort) || basePort < 0 || (basePort > 0 && basePort + count - 1 > 65535)) {
    throw new Error(`invalid base port ${basePort}: expected 0 or a port such that ${count} consecutive ports end at or below 65535`);
  }

  const backends: SimBackend[] = [];
  const stopAll = async () => {
    await Promise.all(backends.map((b) => b.stop()));
  };
  for (let i = 1; i <= count; i++) {
    const name = opts.name ?? `${prefix}${i}`;
    try {
      backends.push(
        await startSimBackend({
          name,
          port: basePort === 0 ? 0 : basePort + i - 1,
          host: opts.host ?? CLUSTER_DEFAULTS.host,
          latency: opts.latency,
          failRate: opts.failRate,
        }),
      );
    } catch (err) {
      await stopAll();
      throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  return { backends, stop: stopAll };
}
