import { describe, expect, test } from "bun:test";
import { FieldList } from "../../src/http/fields.ts";
import { HeaderRules } from "../../src/route/header-rules.ts";
import type { RouteInput } from "../../src/route/schema.ts";
import { headerVars, type RouteMatch } from "../../src/route/table.ts";
import { req, seeded, table, type Req } from "./helpers.ts";

function matched(t: ReturnType<typeof table>, r: Req): RouteMatch<string> {
  const m = t.match(req(r));
  if (m === undefined || "refused" in m) throw new Error(`no match for ${JSON.stringify(r)}: ${JSON.stringify(m)}`);
  return m;
}

const split = (extra: Partial<RouteInput> = {}): RouteInput => ({ name: "s", split: [{ pool: "web", weight: 90 }, { pool: "canary", weight: 10 }], ...extra });

describe("forward", () => {
  test("a pool route forwards to the resolved pool; the target is the very same string when nothing changed", () => {
    const t = table([{ name: "a", pool: "api" }]);
    const r = req({ target: "/x/y?q=1" });
    const m = t.match(r) as RouteMatch<string>;
    expect(m.action).toEqual({ kind: "forward", pool: "pool:api" });
    expect(m.target).toBe(r.target);
    expect(m.setCookie).toBeUndefined();
  });

  test("a normalized path is what goes upstream, with the query as sent", () => {
    const t = table([{ name: "a", match: { path: "/" }, pool: "api" }]);
    expect(matched(t, { target: "/a/../%62?x=%2F" }).target).toBe("/b?x=%2F");
  });

  test("a table that reads neither path nor host leaves both as sent (the single-pool form)", () => {
    const t = table([{ name: "a", pool: "api" }]);
    const m = matched(t, { target: "/a/../%62/%2F?x=%2F", host: "not a host" });
    expect(m.target).toBe("/a/../%62/%2F?x=%2F");
  });

  test("the compiled route carries modifiers and overrides", () => {
    const t = table([{ name: "a", pool: "api", mirror: { pool: "shadow", percent: 25 }, retry: { attempts: 2, perTryTimeout: "2s" }, timeouts: { send: "1s" }, limits: { maxBodySize: "1MB" } }]);
    const route = t.routes[0]!;
    expect(route.mirror).toEqual({ pool: "pool:shadow", percent: 25 });
    expect(route.retry).toEqual({ attempts: 2, perTryTimeout: 2000 });
    expect(route.timeouts).toEqual({ send: 1000 });
    expect(route.limits).toEqual({ maxBodySize: 1024 * 1024 });
    expect(route.pools).toEqual(["pool:api"]);
  });
});

describe("mirror", () => {
  test("the percent is drawn per request; 100 always, 0 never", () => {
    const t = (percent: number) => table([{ name: "m", pool: "p", mirror: { pool: "shadow", percent } }], { random: seeded(9) });
    const all = t(100);
    const none = t(0);
    const some = t(25);
    let copied = 0;
    for (let i = 0; i < 2000; i++) {
      expect(matched(all, { target: "/" }).mirror).toBe("pool:shadow");
      expect(matched(none, { target: "/" }).mirror).toBeUndefined();
      if (matched(some, { target: "/" }).mirror === "pool:shadow") copied++;
    }
    expect(Math.abs(copied / 2000 - 0.25)).toBeLessThanOrEqual(0.03);
    expect(matched(table([{ name: "a", pool: "p" }]), { target: "/" }).mirror).toBeUndefined();
  });
});

describe("split", () => {
  test("90/10 by weight: within ±3 points over 2,000 requests (seeded)", () => {
    for (const seed of [1, 2, 3]) {
      const t = table([split()], { random: seeded(seed) });
      let canary = 0;
      for (let i = 0; i < 2000; i++) if ((matched(t, { target: "/" }).action as { pool: string }).pool === "pool:canary") canary++;
      expect(Math.abs(canary / 2000 - 0.1)).toBeLessThanOrEqual(0.03);
    }
  });

  test("a side of weight 0 gets nothing", () => {
    const t = table([{ name: "s", split: [{ pool: "blue", weight: 0 }, { pool: "green", weight: 5 }] }], { random: seeded(4) });
    for (let i = 0; i < 500; i++) expect((matched(t, { target: "/" }).action as { pool: string }).pool).toBe("pool:green");
  });

  test("splitBy.cookie: a cookie naming a side is honoured; without one a side is chosen and the cookie set", () => {
    const t = table([split({ splitBy: { cookie: "sy-split" } })], { random: seeded(5) });
    const pinned = matched(t, { target: "/", headers: { cookie: "a=1; sy-split=canary" } });
    expect(pinned.action).toEqual({ kind: "forward", pool: "pool:canary" });
    expect(pinned.setCookie).toBeUndefined();
    const fresh = matched(t, { target: "/" });
    const side = (fresh.action as { pool: string }).pool.slice("pool:".length);
    expect(fresh.setCookie).toBe(`sy-split=${side}; Path=/; HttpOnly; SameSite=Lax`);
    // The cookie it set brings the client back to the same side.
    const again = matched(t, { target: "/", headers: { cookie: fresh.setCookie!.split(";")[0]! } });
    expect(again.action).toEqual(fresh.action);
    expect(again.setCookie).toBeUndefined();
    // A cookie naming no side of this split (or a side now at weight 0) is chosen anew.
    expect(matched(t, { target: "/", headers: { cookie: "sy-split=elsewhere" } }).setCookie).toBeDefined();
    const drained = table([{ name: "s", split: [{ pool: "web", weight: 1 }, { pool: "canary", weight: 0 }], splitBy: { cookie: "sy-split" } }]);
    expect(matched(drained, { target: "/", headers: { cookie: "sy-split=canary" } }).action).toEqual({ kind: "forward", pool: "pool:web" });
  });

  test("splitBy.key: one key always lands on one side, and keys spread by weight", () => {
    const t = table([split({ splitBy: { key: "header:x-user" } })], { random: () => 0.999 });
    const sideOf = (user: string) => (matched(t, { target: "/", headers: { "x-user": user } }).action as { pool: string }).pool;
    let canary = 0;
    for (let i = 0; i < 2000; i++) {
      const s = sideOf(`user-${i}`);
      expect(sideOf(`user-${i}`)).toBe(s);
      if (s === "pool:canary") canary++;
    }
    expect(Math.abs(canary / 2000 - 0.1)).toBeLessThanOrEqual(0.03);
    // Without the key: by weight (random 0.999 lands on the last side).
    expect((matched(t, { target: "/" }).action as { pool: string }).pool).toBe("pool:canary");
    // "ip" uses the client address.
    const byIp = table([split({ splitBy: { key: "ip" } })]);
    const a = matched(byIp, { target: "/", clientIp: "10.0.0.7" }).action;
    for (let i = 0; i < 20; i++) expect(matched(byIp, { target: "/", clientIp: "10.0.0.7" }).action).toEqual(a);
  });
});

describe("redirect and respond", () => {
  test("placeholders {host} (no port), {path} (normalized) and {query}", () => {
    const t = table([{ name: "r", redirect: { to: "https://{host}{path}{query}", status: 308 } }]);
    expect(matched(t, { target: "/a/./b?x=1&y", host: "Example.com:8080" }).action).toEqual({ kind: "redirect", status: 308, location: "https://example.com/a/b?x=1&y" });
    expect(matched(t, { target: "/a", host: "example.com" }).action).toEqual({ kind: "redirect", status: 308, location: "https://example.com/a" });
  });

  test("the default status is 302, a constant Location is the one object", () => {
    const t = table([{ name: "r", redirect: { to: "https://example.com/new" } }]);
    const a = matched(t, { target: "/x" }).action;
    expect(a).toEqual({ kind: "redirect", status: 302, location: "https://example.com/new" });
    expect(matched(t, { target: "/y" }).action).toBe(a);
  });

  test("a Location that starts with {path} never becomes scheme-relative", () => {
    const t = table([{ name: "r", redirect: { to: "{path}/" } }]);
    expect((matched(t, { target: "//evil.example/x" }).action as { location: string }).location).toBe("/evil.example/x/");
  });

  test("respond: status, body, headers; a body without content-type gets text/plain", () => {
    const t = table([
      { name: "m", match: { pathExact: "/maint" }, respond: { status: 503, body: "down", headers: { "Retry-After": "60" } } },
      { name: "e", respond: { status: 204 } },
    ]);
    expect(matched(t, { target: "/maint" }).action).toEqual({ kind: "respond", status: 503, body: "down", headers: { "retry-after": "60", "content-type": "text/plain; charset=utf-8" } });
    expect(matched(t, { target: "/x" }).action).toEqual({ kind: "respond", status: 204, body: "", headers: {} });
  });
});

describe("rewrite", () => {
  const cases: [RouteInput["rewrite"], string, string][] = [
    [{ stripPrefix: "/v1" }, "/v1/users?id=1", "/users?id=1"],
    [{ stripPrefix: "/v1" }, "/v1", "/"],
    [{ stripPrefix: "/v1" }, "/v1?x", "/?x"],
    [{ stripPrefix: "/v1" }, "/v1/", "/"],
    [{ stripPrefix: "/v1" }, "/v10/x", "/v10/x"],
    [{ stripPrefix: "/v1/" }, "/v1/x", "/x"],
    [{ addPrefix: "/api" }, "/x?q", "/api/x?q"],
    [{ addPrefix: "/api/" }, "/x", "/api/x"],
    [{ stripPrefix: "/v1", addPrefix: "/v2" }, "/v1/x", "/v2/x"],
    [{ regex: "^/old/(.*)$", replace: "/new/$1" }, "/old/a/b?z", "/new/a/b?z"],
    [{ regex: "^/old/(.*)$", replace: "/new/$1" }, "/other", "/other"],
    [{ regex: "^/u/([0-9]+)$", replace: "/users/$1/../$1" }, "/u/7", "/users/7"],
  ];
  for (const [rewrite, target, want] of cases) {
    test(`${JSON.stringify(rewrite)}: ${target} → ${want}`, () => {
      const t = table([{ name: "r", pool: "p", rewrite }]);
      expect(matched(t, { target }).target).toBe(want);
    });
  }

  test("the route matches on the normalized path and the rewrite starts from it", () => {
    const t = table([{ name: "r", match: { path: "/v1" }, pool: "p", rewrite: { stripPrefix: "/v1" } }]);
    expect(matched(t, { target: "/x/../v1/%61" }).target).toBe("/a");
  });

  test("a regex rewrite whose result would be refused refuses the request", () => {
    const t = table([{ name: "r", pool: "p", rewrite: { regex: "^/a/(.*)$", replace: "/$1/../../x" } }]);
    expect(t.match(req({ target: "/a/b" }))).toEqual({ refused: expect.stringContaining("rewrite") });
  });
});

describe("header rules", () => {
  test("remove, then set, then add, with placeholders filled per request", () => {
    const t = table([
      { name: "api", pool: "p", requestHeaders: { remove: ["X-Drop"], set: { "X-Route": "{route}", "X-Who": "{client_ip} via {host} ({request_id})" }, add: { "X-Tag": "a" } }, responseHeaders: { set: { "X-Served-By": "{route}" }, remove: ["server"] } },
    ]);
    const m = matched(t, { target: "/", host: "API.example.com:8443", clientIp: "10.1.1.1" });
    const h = new FieldList(["Host", "api.example.com", "X-Drop", "1", "X-Tag", "0", "X-Route", "client-said"]);
    m.route.requestHeaders!.apply(h, headerVars(m, "10.1.1.1", "rid-1"));
    expect(h.serialize()).toBe("Host: api.example.com\r\nX-Tag: 0\r\nX-Route: api\r\nx-who: 10.1.1.1 via api.example.com (rid-1)\r\nx-tag: a\r\n");
    const resp = new Headers({ server: "backend", "x-served-by": "x" });
    m.route.responseHeaders!.apply(resp, headerVars(m, "10.1.1.1", "rid-1"));
    expect([...resp.entries()]).toEqual([["x-served-by", "api"]]);
  });

  test("unknown placeholders are refused when compiled", () => {
    expect(() => HeaderRules.compile({ set: { "x-a": "{nope}" } })).toThrow(/\{nope\} is not one/);
    // Braces that are not a placeholder are text.
    const r = HeaderRules.compile({ set: { "x-json": '{"a":1}' } });
    const h = new Headers();
    r.apply(h, { client_ip: "", host: "", request_id: "", route: "" });
    expect(h.get("x-json")).toBe('{"a":1}');
    expect(r.usesVars).toBe(false);
  });
});

describe("SNI routes", () => {
  const t = table([
    { name: "a", match: { sni: "a.example.com" }, pool: "tls-a" },
    { name: "wild", match: { sni: ["*.example.com", "B.example.org"] }, pool: "tls-w" },
    { name: "web", pool: "web" },
  ]);
  test("exact, wildcard, case and order", () => {
    expect(t.hasSniRoutes).toBe(true);
    expect(t.matchSni("a.example.com")).toEqual({ route: t.routes[0]!, pool: "pool:tls-a" });
    expect(t.matchSni("A.Example.com.")?.route.name).toBe("a");
    expect(t.matchSni("x.a.example.com")?.route.name).toBe("wild");
    expect(t.matchSni("b.example.org")?.route.name).toBe("wild");
    expect(t.matchSni("example.com")).toBeUndefined();
    expect(t.matchSni(undefined)).toBeUndefined();
  });
});

describe("explain", () => {
  test("each earlier route with why it did not match, then the one that did", () => {
    const t = table([
      { name: "tls", match: { sni: "a.example.com" }, pool: "p" },
      { name: "host", match: { host: "api.example.com" }, pool: "p" },
      { name: "path", match: { path: "/v1" }, pool: "p" },
      { name: "exact", match: { pathExact: "/x" }, pool: "p" },
      { name: "method", match: { method: "POST" }, pool: "p" },
      { name: "re", match: { pathRegex: "^/z" }, pool: "p" },
      { name: "hdr", match: { headers: { "x-a": "1", "x-b": { regex: "^b" }, "x-c": true, "x-d": false } }, pool: "p" },
      { name: "query", match: { query: { q: "1" } }, pool: "p" },
      { name: "ip", match: { clientIp: "10.0.0.0/8" }, pool: "p" },
      { name: "last", pool: "p" },
      { name: "after", pool: "p" },
    ]);
    const ex = t.explain(req({ target: "/a?q=2", host: "web.example.com", headers: { "x-a": "1", "x-b": "b", "x-c": "", "x-d": "" }, clientIp: "192.0.2.9" }));
    expect(ex.steps).toEqual([
      { route: "tls", matched: false, why: "matches TLS server names (sni): serves TCP listeners only" },
      { route: "host", matched: false, why: "host web.example.com is not api.example.com" },
      { route: "path", matched: false, why: "path /a is not under /v1" },
      { route: "exact", matched: false, why: "path /a is not exactly /x" },
      { route: "method", matched: false, why: "method GET is not POST" },
      { route: "re", matched: false, why: "path /a does not match ^/z" },
      { route: "hdr", matched: false, why: "header x-d is present" },
      { route: "query", matched: false, why: 'query parameter q is not "1"' },
      { route: "ip", matched: false, why: "client 192.0.2.9 is not in 10.0.0.0/8" },
      { route: "last", matched: true },
    ]);
    expect((ex.result as RouteMatch<string>).route.name).toBe("last");
    expect(t.explain(req({ target: "/a%2Fb" })).result).toEqual({ refused: expect.stringContaining("%2F") });
  });
});
