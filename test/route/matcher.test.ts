/**
 * The matcher conformance table (in the style of Hono's common.case.test.ts): each case is a
 * route list, requests, and the route each request must get (null: none; "400": refused).
 * Every case also checks that explain() agrees with match(): the index and the route-by-route
 * walk must choose the same route.
 */
import { describe, expect, test } from "bun:test";
import type { RouteInput } from "../../src/route/schema.ts";
import { req, table, type Req } from "./helpers.ts";

type Case = { name: string; routes: RouteInput[]; expect: [Req, string | null][] };

const p = (name: string, match: RouteInput["match"] = {}): RouteInput => ({ name, match, pool: "p" });

const cases: Case[] = [
  {
    name: "hosts: exact, case, port, trailing dot",
    routes: [p("a", { host: "api.example.com" }), p("b", { host: ["B.example.com", "c.example.com"] })],
    expect: [
      [{ target: "/", host: "api.example.com" }, "a"],
      [{ target: "/", host: "API.Example.COM" }, "a"],
      [{ target: "/", host: "api.example.com:8443" }, "a"],
      [{ target: "/", host: "api.example.com." }, "a"],
      [{ target: "/", host: "api.example.com.:80" }, "a"],
      [{ target: "/", host: "b.example.com" }, "b"],
      [{ target: "/", host: "c.example.com" }, "b"],
      [{ target: "/", host: "x.api.example.com" }, null],
      [{ target: "/", host: "example.com" }, null],
      [{ target: "/" }, null],
    ],
  },
  {
    // A table that reads the host (here: a host route) refuses one it cannot read; one that
    // never reads it leaves it alone (see "a table that reads neither path nor host" below).
    name: "hosts: an invalid Host is refused (RFC 9112 §3.2), so {host} never carries a path",
    routes: [p("named", { host: "named.example.com" }), p("any")],
    expect: [
      [{ target: "/", host: "a.example.com/x" }, "400"],
      [{ target: "/", host: "user@a.example.com" }, "400"],
      [{ target: "/", host: "a b" }, "400"],
      [{ target: "/", host: "a.example.com:80x" }, "400"],
      [{ target: "/", host: "a.example.com:80:81" }, "400"],
      [{ target: "/", host: "[::1" }, "400"],
      [{ target: "/", host: "[::g]" }, "400"],
      [{ target: "/", host: "[::1]x" }, "400"],
      [{ target: "/", host: ":80" }, "400"],
      [{ target: "/", host: "é.example" }, "400"],
      [{ target: "/", host: "a.example.com:" }, "any"],
      [{ target: "/", host: "xn--e1afmkfd.example" }, "any"],
      [{ target: "/", host: "[2001:DB8::1]:443" }, "any"],
      [{ target: "/", host: "" }, "any"],
    ],
  },
  {
    name: "hosts: wildcards match any depth below, never the name itself",
    routes: [p("deep", { host: "*.apps.example.com" }), p("wide", { host: "*.example.com" })],
    expect: [
      [{ target: "/", host: "a.apps.example.com" }, "deep"],
      [{ target: "/", host: "a.b.apps.example.com" }, "deep"],
      [{ target: "/", host: "apps.example.com" }, "wide"],
      [{ target: "/", host: "x.example.com:81" }, "wide"],
      [{ target: "/", host: "example.com" }, null],
      [{ target: "/", host: "notexample.com" }, null],
    ],
  },
  {
    name: "hosts: an earlier wildcard beats a later exact name (config order, not specificity)",
    routes: [p("wild", { host: "*.example.com" }), p("exact", { host: "a.example.com" })],
    expect: [[{ target: "/", host: "a.example.com" }, "wild"]],
  },
  {
    name: "hosts: IPv6 and IPv4 literals",
    routes: [p("v6", { host: "[::1]" }), p("v4", { host: "127.0.0.1" })],
    expect: [
      [{ target: "/", host: "[::1]:8080" }, "v6"],
      [{ target: "/", host: "[::1]" }, "v6"],
      [{ target: "/", host: "127.0.0.1:8000" }, "v4"],
      [{ target: "/", host: "[::2]" }, null],
    ],
  },
  {
    name: "paths: prefixes on segment boundaries",
    routes: [p("api", { path: "/api" }), p("slash", { path: "/static/" }), p("deep", { path: "/a/b/c" })],
    expect: [
      [{ target: "/api" }, "api"],
      [{ target: "/api/" }, "api"],
      [{ target: "/api/x" }, "api"],
      [{ target: "/api/x/y?z=1" }, "api"],
      [{ target: "/api?x" }, "api"],
      [{ target: "/apix" }, null],
      [{ target: "/ap" }, null],
      [{ target: "/static" }, null],
      [{ target: "/static/" }, "slash"],
      [{ target: "/static/x.css" }, "slash"],
      [{ target: "/a/b" }, null],
      [{ target: "/a/b/c" }, "deep"],
      [{ target: "/a/b/cd" }, null],
      [{ target: "/a/b/c/d" }, "deep"],
      [{ target: "/API" }, null],
    ],
  },
  {
    name: "paths: exact, root prefix, regex",
    routes: [p("exact", { pathExact: "/maint" }), p("exact-slash", { pathExact: "/dir/" }), p("re", { pathRegex: "^/u/[0-9]+$" }), p("root-exact", { pathExact: "/" }), p("all", { path: "/" })],
    expect: [
      [{ target: "/maint" }, "exact"],
      [{ target: "/maint?x=1" }, "exact"],
      [{ target: "/maint/" }, "all"],
      [{ target: "/maint/x" }, "all"],
      [{ target: "/dir/" }, "exact-slash"],
      [{ target: "/dir" }, "all"],
      [{ target: "/u/123" }, "re"],
      [{ target: "/u/12a" }, "all"],
      [{ target: "/" }, "root-exact"],
      [{ target: "/?q" }, "root-exact"],
      [{ target: "/anything" }, "all"],
    ],
  },
  {
    name: "paths: matched after normalization; unsafe spellings refused",
    routes: [p("admin", { path: "/admin" }), p("rest", { path: "/" })],
    expect: [
      [{ target: "/%61dmin" }, "admin"],
      [{ target: "/%61%64min/x" }, "admin"],
      [{ target: "/public/../admin" }, "admin"],
      [{ target: "/./admin" }, "admin"],
      [{ target: "/public/%2e%2e/admin" }, "admin"],
      [{ target: "/admin/%2e%2e" }, "rest"],
      [{ target: "/admin%2Fx" }, "400"],
      [{ target: "/admin%2fx" }, "400"],
      [{ target: "/admin%5Cx" }, "400"],
      [{ target: "/admin\\x" }, "400"],
      [{ target: "/admin%00" }, "400"],
      [{ target: "/admin%zz" }, "400"],
      [{ target: "/admin%4" }, "400"],
      [{ target: "/../admin" }, "400"],
      [{ target: "/a/../../admin" }, "400"],
      [{ target: "//admin" }, "rest"],
      [{ target: "/admin//x" }, "admin"],
      [{ target: "/ADMIN" }, "rest"],
    ],
  },
  {
    name: "methods",
    routes: [p("read", { method: ["GET", "HEAD"] }), p("post", { method: "POST", path: "/form" })],
    expect: [
      [{ target: "/", method: "GET" }, "read"],
      [{ target: "/", method: "HEAD" }, "read"],
      [{ target: "/form", method: "POST" }, "post"],
      [{ target: "/", method: "POST" }, null],
      [{ target: "/form", method: "PUT" }, null],
      [{ target: "/", method: "get" }, null],
    ],
  },
  {
    name: "headers: exact, regex, present, absent",
    routes: [
      p("exact", { headers: { "X-Canary": "1" } }),
      p("regex", { headers: { "user-agent": { regex: "^curl/" } } }),
      p("both", { headers: { "x-a": true, "x-b": false } }),
    ],
    expect: [
      [{ target: "/", headers: { "x-canary": "1" } }, "exact"],
      [{ target: "/", headers: { "x-canary": "10" } }, null],
      [{ target: "/", headers: { "user-agent": "curl/8.0" } }, "regex"],
      [{ target: "/", headers: { "user-agent": "Mozilla curl/8.0" } }, null],
      [{ target: "/", headers: { "x-a": "" } }, "both"],
      [{ target: "/", headers: { "x-a": "1", "x-b": "1" } }, null],
      [{ target: "/" }, null],
    ],
  },
  {
    name: "query: exact value and present",
    routes: [p("debug", { query: { debug: "1" } }), p("trace", { query: { trace: true } })],
    expect: [
      [{ target: "/?debug=1" }, "debug"],
      [{ target: "/?a=2&debug=0&debug=1" }, "debug"],
      [{ target: "/?debug=0" }, null],
      [{ target: "/?trace" }, "trace"],
      [{ target: "/?trace=&x" }, "trace"],
      [{ target: "/x?tracex=1" }, null],
      [{ target: "/" }, null],
    ],
  },
  {
    name: "clientIp",
    routes: [p("inside", { clientIp: ["10.0.0.0/8", "::1"] }), p("rest")],
    expect: [
      [{ target: "/", clientIp: "10.1.2.3" }, "inside"],
      [{ target: "/", clientIp: "::1" }, "inside"],
      [{ target: "/", clientIp: "11.0.0.1" }, "rest"],
    ],
  },
  {
    name: "first match wins across index structures",
    routes: [
      p("catch-api", { path: "/api" }),
      p("host-api", { host: "a.example.com", path: "/api" }),
      p("host", { host: "a.example.com" }),
      p("wild", { host: "*.example.com", path: "/w" }),
      p("header", { headers: { "x-x": "1" } }),
      p("exact", { pathExact: "/w" }),
    ],
    expect: [
      [{ target: "/api/x", host: "a.example.com" }, "catch-api"],
      [{ target: "/other", host: "a.example.com" }, "host"],
      [{ target: "/w", host: "a.example.com" }, "host"],
      [{ target: "/w", host: "b.example.com" }, "wild"],
      [{ target: "/w", host: "b.example.com", headers: { "x-x": "1" } }, "wild"],
      [{ target: "/v", host: "b.example.com", headers: { "x-x": "1" } }, "header"],
      [{ target: "/w", host: "other.org" }, "exact"],
      [{ target: "/w" }, "exact"],
    ],
  },
  {
    name: "all conditions must hold",
    routes: [p("all", { host: "a.example.com", path: "/v1", method: "GET", headers: { "x-k": "1" }, query: { q: true }, clientIp: "10.0.0.0/8" }), p("fallback")],
    expect: [
      [{ target: "/v1/x?q", host: "a.example.com", headers: { "x-k": "1" }, clientIp: "10.0.0.1" }, "all"],
      [{ target: "/v1/x", host: "a.example.com", headers: { "x-k": "1" }, clientIp: "10.0.0.1" }, "fallback"],
      [{ target: "/v1/x?q", host: "a.example.com", headers: { "x-k": "1" }, clientIp: "11.0.0.1" }, "fallback"],
      [{ target: "/v1/x?q", host: "a.example.com", method: "POST", headers: { "x-k": "1" }, clientIp: "10.0.0.1" }, "fallback"],
    ],
  },
  {
    name: "a route with both path and pathExact needs both",
    routes: [p("both", { path: "/a", pathExact: "/a/b" }), p("never", { path: "/x", pathExact: "/a/c" })],
    expect: [
      [{ target: "/a/b" }, "both"],
      [{ target: "/a" }, null],
      [{ target: "/a/c" }, null],
    ],
  },
  {
    name: "OPTIONS * reaches only routes without a path condition",
    routes: [p("api", { path: "/" }), p("any", { method: "OPTIONS" })],
    expect: [[{ target: "*", method: "OPTIONS" }, "any"]],
  },
  {
    name: "sni routes never take HTTP requests",
    routes: [{ name: "tls", match: { sni: "a.example.com" }, pool: "p" }, p("web")],
    expect: [[{ target: "/", host: "a.example.com" }, "web"]],
  },
];

describe("route matcher conformance", () => {
  for (const c of cases) {
    test(c.name, () => {
      const t = table(c.routes);
      for (const [r, want] of c.expect) {
        const got = t.match(req(r));
        const name = got === undefined ? null : "refused" in got ? "400" : got.route.name;
        expect({ req: r, route: name }).toEqual({ req: r, route: want });
        // explain() walks route by route, without the index: it must agree.
        const ex = t.explain(req(r));
        const exName = ex.result === undefined ? null : "refused" in ex.result ? "400" : ex.result.route.name;
        expect({ req: r, explained: exName }).toEqual({ req: r, explained: want });
      }
    });
  }
});

describe("scaling: the index chooses candidates, not a scan", () => {
  const routes: RouteInput[] = [];
  for (let i = 0; i < 500; i++) routes.push(p(`host-${i}`, { host: `h${i}.example.com` }));
  for (let i = 0; i < 500; i++) routes.push(p(`prefix-${i}`, { path: `/svc${i}` }));
  routes.push(p("wild", { host: "*.w.example.com" }));
  routes.push(p("fallback"));
  const t = table(routes);

  test("with 1,002 routes a request visits only the routes that could take it", () => {
    const visits = (r: Req) => {
      const before = t.candidatesChecked;
      const m = t.match(req(r));
      return { route: m && "route" in m ? m.route.name : null, visited: t.candidatesChecked - before };
    };
    expect(visits({ target: "/x", host: "h250.example.com" })).toEqual({ route: "host-250", visited: 1 });
    expect(visits({ target: "/svc377/a/b", host: "nope.example.com" })).toEqual({ route: "prefix-377", visited: 1 });
    expect(visits({ target: "/svc377", host: "h9.example.com" })).toEqual({ route: "host-9", visited: 1 });
    expect(visits({ target: "/x", host: "a.w.example.com" })).toEqual({ route: "wild", visited: 1 });
    expect(visits({ target: "/nothing", host: "nobody.org" })).toEqual({ route: "fallback", visited: 1 });
  });

  test("a route reached through two host buckets is checked once", () => {
    const t2 = table([p("both", { host: ["a.example.com", "*.example.com"], headers: { "x-y": "1" } }), p("next", { host: "*.example.com" })]);
    const before = t2.candidatesChecked;
    const m = t2.match(req({ target: "/", host: "a.example.com" }));
    expect(m && "route" in m ? m.route.name : m).toBe("next");
    expect(t2.candidatesChecked - before).toBe(2);
  });

  test("a miss with methods and headers checks only the candidates of its host and path", () => {
    const t2 = table([...routes.slice(0, 1000).map((r) => ({ ...r, match: { ...r.match, method: "POST" } })), p("last", { headers: { "x-n": "1" } })]);
    const before = t2.candidatesChecked;
    expect(t2.match(req({ target: "/svc5/x", host: "h5.example.com" }))).toBeUndefined();
    // host-5, prefix-5 and "last": three candidates, not 1,001.
    expect(t2.candidatesChecked - before).toBe(3);
  });
});
