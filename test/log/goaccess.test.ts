/**
 * A real log tool reads the combined log the proxy wrote: GoAccess (Debian's package) parses a
 * file written by a running balancer with --log-format=COMBINED, and must count every request
 * and read its status, bytes, referer and user agent as the proxy answered them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBalancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { startCluster } from "../../sim/cluster.ts";
import { testEngine } from "../helpers/balancer.ts";
import { requirePrograms } from "../helpers/system.ts";

const programs = requirePrograms("the GoAccess access-log test", { goaccess: "goaccess" });
const engine = testEngine().engine ?? "socket";
const dir = mkdtempSync(join(tmpdir(), "switchyard-goaccess-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Panel {
  data: { data: string; hits: { count: number }; bytes: { count: number }; items?: { data: string; hits: { count: number } }[] }[];
}

describe.skipIf(programs.skip)(`GoAccess reads the combined log (${engine} engine)`, () => {
  test("every request counted; statuses, bytes, referers and user agents as answered", async () => {
    programs.assertPresent();
    const cluster = await startCluster({ count: 1, basePort: 0 });
    const path = join(dir, "access.log");
    const balancer = await startBalancer(
      validateConfig({
        engine, listen: { host: "127.0.0.1", port: 0 }, admin: false, healthCheck: false,
        backends: [{ name: "b1", url: cluster.backends[0]!.url }], log: { format: "combined", file: path },
      }),
      { logger: silentLogger },
    );
    const agents = ["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "curl/8.0.1", 'odd "agent"\twith tab'];
    const requests = Array.from({ length: 60 }, (_, i) => ({
      path: i % 5 === 4 ? `/status/404?i=${i}` : i % 7 === 6 ? "/status/500" : `/bytes/${100 + i}`,
      agent: agents[i % 3]!,
      referer: i % 2 === 0 ? `http://ref${i % 4}.example/page` : undefined,
    }));
    const statuses = new Map<number, number>();
    let bandwidth = 0;
    try {
      for (const r of requests) {
        const res = await fetch(balancer.url + r.path, { headers: { "user-agent": r.agent, ...(r.referer ? { referer: r.referer } : {}) } });
        bandwidth += (await res.arrayBuffer()).byteLength;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
    } finally {
      // Stopping writes out what is queued.
      await balancer.stop(false);
      await cluster.stop();
    }
    expect(readFileSync(path, "utf8").split("\n").length - 1).toBe(requests.length);

    const report = join(dir, "report.json");
    const p = Bun.spawn([programs.path("goaccess"), path, "--log-format=COMBINED", "--no-global-config", "-o", report], { stdout: "pipe", stderr: "pipe" });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
    const r = JSON.parse(readFileSync(report, "utf8")) as Record<string, Panel> & { general: Record<string, number> };
    expect(r.general).toMatchObject({ total_requests: 60, valid_requests: 60, failed_requests: 0, bandwidth });

    const byStatus = new Map<number, number>();
    for (const cls of r.status_codes!.data) for (const item of cls.items ?? []) byStatus.set(Number(item.data.slice(0, 3)), item.hits.count);
    expect(byStatus).toEqual(statuses);

    const referers = new Map(r.referrers!.data.map((d) => [d.data, d.hits.count]));
    for (let k = 0; k < 4; k += 2) expect(referers.get(`http://ref${k}.example/page`)).toBe(requests.filter((q) => q.referer === `http://ref${k}.example/page`).length);
    expect(referers.get("-")).toBe(30);

    const firefox = r.browsers!.data.find((d) => d.data === "Firefox");
    expect(firefox?.hits.count).toBe(20);
    expect(firefox?.items?.[0]?.data).toBe("Firefox/120.0");
    expect(r.browsers!.data.find((d) => d.data === "Others")!.items!.map((i) => [i.data, i.hits.count])).toEqual([["curl/8.0.1", 20]]);
    // The escaped agent (quotes and a tab) kept its line whole: GoAccess just knows no browser in it.
    expect(r.browsers!.data.find((d) => d.data === "Unknown")?.hits.count).toBe(20);
  }, 30_000);
});
