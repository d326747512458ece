/** Tracing with `workers`: every worker process exports its own spans (docs/observability.md). */
import { afterEach, expect, test } from "bun:test";
import { hostname } from "node:os";
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { load } from "../workers/helpers.ts";
import { startCollector, type Collector } from "./collector.ts";

let rig: TestRig | undefined;
let collector: Collector | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
  await collector?.stop();
  collector = undefined;
});

test("with workers: 2, spans arrive from both worker processes, and their counts are summed in /stats", async () => {
  collector = startCollector();
  const c = collector;
  rig = await startRig(2, { ...testEngine(), workers: 2, log: { access: false }, admin: { host: "127.0.0.1", port: 0 }, tracing: { otlp: { endpoint: c.url }, batchDelay: 20 } });
  const url = rig.balancer.url;
  // New connections, so that the kernel spreads them over both workers' listeners (SO_REUSEPORT).
  await waitFor(
    async () => {
      await load(url, 20, 4, { fresh: true });
      return new Set(c.spans.map((s) => s.instance)).size >= 2;
    },
    "spans from two worker processes", 30_000,
  );
  const instances = new Set(c.spans.map((s) => s.instance));
  expect(instances.size).toBe(2);
  expect(instances.has(`${hostname()}:${process.pid}`)).toBe(false);
  const exported = c.spans.length;
  await waitFor(async () => {
    const stats = (await (await fetch(`${rig!.balancer.adminUrl}/stats`)).json()) as { totals: { tracing?: { exported: number } } };
    return (stats.totals.tracing?.exported ?? 0) >= exported;
  }, "the workers' exported counts summed in /stats", 10_000);
});
