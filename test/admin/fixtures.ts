/** An in-memory balancer state for unit tests of the admin figures: no servers, no timers. */
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";
import { TrafficStats, methodLabel } from "../../src/stats/traffic.ts";
import type { BackendOptions } from "../../src/pool/backend.ts";
import type { TcpStats } from "../../src/tcp/stats.ts";

export interface FakeSource {
  config: { mode: "http" | "tcp"; strategy: string };
  pool: LocalPool;
  traffic: TrafficStats;
  startedAt: number;
  tcpStats?: TcpStats;
}

export function fakeSource(backends: BackendOptions[], mode: "http" | "tcp" = "http"): FakeSource {
  return {
    config: { mode, strategy: "round-robin" },
    pool: new LocalPool(createPolicy("round-robin"), backends),
    traffic: new TrafficStats(),
    startedAt: Date.now() - 5000,
  };
}

/** What the proxy handler records for one request answered by `backend` (one try). */
export function serve(src: FakeSource, backendName: string, status: number, latencyMs: number, method = "GET"): void {
  const b = src.pool.get(backendName)!;
  b.stats.countRequest();
  b.stats.countResponse(methodLabel(method), status, latencyMs);
  src.traffic.record(method, status, latencyMs);
}

/** A fake clock for the sampler. */
export function clock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}
