/**
 * `switchyard route` and `switchyard check` on a routing config: the route that takes a request
 * and why earlier ones did not, what the backend would get, and check's refusals and warnings.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRouteCommand } from "../../src/commands/route.ts";
import { validateConfig } from "../../src/config/load.ts";
import { configWarnings } from "../../src/config/expand.ts";

const dir = mkdtempSync(join(tmpdir(), "sy-route-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = {
  listeners: [{ name: "web", port: 8080 }],
  pools: {
    api: { backends: [{ url: "http://10.0.0.1:9000" }] },
    web: { backends: [{ url: "http://10.0.0.3:8000" }] },
    unused: { backends: [{ url: "http://10.0.0.9:8000" }] },
  },
  routes: [
    { name: "api", match: { host: "api.example.com", path: "/v1" }, pool: "api", rewrite: { stripPrefix: "/v1" }, requestHeaders: { set: { "x-route": "{route}" } } },
    { name: "old", match: { path: "/old" }, redirect: { to: "https://example.com{path}", status: 308 } },
    { name: "all", pool: "web" },
    { name: "never", match: { path: "/x" }, pool: "web" },
  ],
};
const file = join(dir, "routes.json");
writeFileSync(file, JSON.stringify(CONFIG));

async function route(...args: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await runRouteCommand(["--config", file, ...args], (l) => lines.push(...l.split("\n")), (l) => lines.push(...l.split("\n")));
  return { code, lines };
}

describe("switchyard route", () => {
  test("the route, the pool, the rewritten target and the header rules as the backend gets them", async () => {
    const r = await route("GET", "http://API.example.com:8080/v1/users?id=3", "-H", "x-a: b");
    expect(r.code).toBe(0);
    expect(r.lines).toContain("route  api (routes[0])");
    expect(r.lines).toContain("pool   api");
    expect(r.lines).toContain("sent   GET /users?id=3");
    expect(r.lines).toContain("       x-route: api");
    expect(r.lines).toContain("       x-a: b");
  });

  test("each earlier route says why it did not match", async () => {
    const r = await route("POST", "/old/page", "-H", "host: www.example.com");
    expect(r.lines[0]).toBe("  skip   api: host www.example.com is not api.example.com");
    expect(r.lines).toContain("route  old (routes[1])");
    expect(r.lines).toContain("answer 308 redirect to https://example.com/old/page");
  });

  test("no route, a refused path, bad usage", async () => {
    const only = join(dir, "only.json");
    writeFileSync(only, JSON.stringify({ ...CONFIG, routes: [CONFIG.routes[0]] }));
    const lines: string[] = [];
    expect(await runRouteCommand(["--config", only, "GET", "http://other/"], (l) => lines.push(l), (l) => lines.push(l))).toBe(1);
    expect(lines.at(-1)).toBe("no route takes GET /: 404 SY_NO_ROUTE");
    const bad = await route("GET", "http://api.example.com/v1/a%2Fb");
    expect(bad.code).toBe(1);
    expect(bad.lines.at(-1)).toStartWith("refused: 400 SY_BAD_PATH");
    expect((await route("GET")).code).toBe(2);
  });
});

describe("switchyard check on routes", () => {
  test("warns about a route an earlier one hides and a pool nothing uses", () => {
    expect(configWarnings(validateConfig(CONFIG))).toEqual([
      "routes[3] (never) never matches: routes[2] (all) comes first and takes every request it would",
      "pools.unused: no route, mirror or listener uses this pool",
    ]);
  });

  test("refuses a route to a pool that does not exist, naming it", () => {
    expect(() => validateConfig({ ...CONFIG, routes: [{ name: "x", pool: "nope" }] })).toThrow(/routes\[0\]\.pool: got "nope"/);
  });

  test("several pools need routes; the two forms are not mixed", () => {
    expect(() => validateConfig({ pools: CONFIG.pools })).toThrow(/routes: missing; with 3 pools/);
    expect(() => validateConfig({ ...CONFIG, listen: { port: 1 } })).toThrow(/listen: set beside listeners/);
  });
});
