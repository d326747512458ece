/**
 * `switchyard ctl` against a running balancer with several pools and routes (the stack of
 * test/admin/helpers.ts startPoolsStack): the pools and routes tables, and backends named as
 * pool/backend for drain, enable, weight, add and remove. Run in this process (runCtl), its
 * output and exit code as the CLI prints them; the single-pool form's output is checked by
 * test/cli.test.ts. Runs on the engine SWITCHYARD_TEST_ENGINE names.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { runCtl } from "../../src/commands/ctl.ts";
import { POOLS_TOKEN, startPoolsStack, type PoolsStack } from "../admin/helpers.ts";

let stack: PoolsStack;
beforeAll(async () => {
  stack = await startPoolsStack();
});
afterAll(async () => {
  await stack?.stop();
});

/** `switchyard ctl` in this process, against the admin port: exit code and what it printed. */
async function ctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runCtl(["--admin", stack.adminUrl, "--token", POOLS_TOKEN, ...args], {}, { out: (s) => void (out += `${s}\n`), err: (s) => void (err += `${s}\n`) });
  return { code, out, err };
}

describe("many pools and routes: switchyard ctl", () => {
  test("pools, pools POOL and routes print tables; drain, enable, add and remove take pool/backend", async () => {
    let r = await ctl("pools");
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^POOL\s+MODE\s+STRATEGY\s+AVAILABLE\s+PANIC\s+OVER BUDGET\s+IN FLIGHT\s+REQUESTS\s+USED BY$/);
    expect(lines[1]).toMatch(/^api\s+http\s+round-robin\s+2\/2\s+no\s+0\s+0\s+\d+\s+route api$/);
    expect(lines[3]).toMatch(/^shadow\s+http\s+least-connections\s+0\/1\s+PANIC \(<50%\)\s+0\s+0\s+0\s+mirror of route site$/);

    r = await ctl("pools", "web");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^pool web: http, least-connections, 2\/2 available, panic no, 0 retries over budget; used by route site\nNAME\s+STATE/);
    expect(r.out).toMatch(/\nweb\/b1\s+up\s+1\s+0\s+\d+\s+http:/);
    expect(r.out).toMatch(/\nweb\/edge\/1\s+up\s+/);

    r = await ctl("routes");
    expect(r.code).toBe(0);
    const routes = r.out.trimEnd().split("\n");
    expect(routes[0]).toMatch(/^ROUTE\s+MATCH\s+ACTION\s+LISTENERS\s+REQUESTS\s+2XX\s+3XX\s+4XX\s+5XX\s+P50 MS\s+P99 MS$/);
    expect(routes[1]).toMatch(/^api\s+host api\.example\.com · path \/v1\s+pool api\s+main\s+\d+/);
    expect(routes[2]).toMatch(/^maint\s+pathExact \/maint\s+respond 503\s+main\s+/);
    expect(routes[3]).toMatch(/^site\s+every request\s+pool web \(mirror shadow 100%\)\s+main\s+/);

    r = await ctl("backends");
    expect(r.out).toMatch(/\napi\/b2\s+up\s+/);
    expect(r.out).toMatch(/\nshadow\/s1\s+down\s+/);

    r = await ctl("drain", "b1");
    expect(r.code).toBe(2);
    expect(r.err).toContain('"b1" is a backend of 2 pools (api, web)');
    r = await ctl("drain", "web/b1");
    expect(r).toMatchObject({ code: 0, out: "web/b1: draining, 0 in flight\n" });
    expect(stack.lb.pools.get("web")!.pool.get("b1")!.isEnabled).toBe(false);
    expect(stack.lb.pools.get("api")!.pool.get("b1")!.isEnabled).toBe(true);
    r = await ctl("enable", "web/b1");
    expect(r.out).toBe("web/b1: up, weight 1, 0 in flight\n");
    r = await ctl("weight", "web/edge/1", "3");
    expect(r.out).toBe("web/edge/1: up, weight 3, 0 in flight\n");
    await ctl("weight", "web/edge/1", "1");

    // add: POOL/NAME, or --pool with the whole name.
    r = await ctl("add", "web/b4", stack.web.backends[2]!.url);
    expect(r).toMatchObject({ code: 0, out: "added web/b4: up, weight 1, 0 in flight\n" });
    r = await ctl("add", "x/5", stack.web.backends[2]!.url, "--pool", "web");
    expect(r.out).toBe("added web/x/5: up, weight 1, 0 in flight\n");
    expect(stack.lb.pools.get("web")!.pool.get("x/5")).toBeDefined();
    r = await ctl("add", "b6", stack.web.backends[2]!.url);
    expect(r.code).toBe(2);
    expect(r.err).toContain("pool: missing");
    r = await ctl("remove", "web/b4");
    expect(r.out).toMatch(/^removed web\/b4 \(drained in \d+ms\)\n$/);
    r = await ctl("remove", "web/x/5");
    expect(r.code).toBe(0);
    expect(stack.lb.pools.get("web")!.pool.backends.map((b) => b.name)).toEqual(["b1", "edge/1"]);
    r = await ctl("pools", "nope");
    expect(r.code).toBe(2);
    expect(r.err).toContain('no pool named "nope"');
  });
});

