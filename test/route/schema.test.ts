import { describe, expect, test } from "bun:test";
import { compileRegex } from "../../src/route/regex.ts";
import { routeProblems, routeWarnings, type RouteInput } from "../../src/route/schema.ts";
import { issuesOf, parseRoutes, req, table } from "./helpers.ts";

describe("RouteSchema errors name the field, the value and what was expected", () => {
  const cases: [string, unknown, string[]][] = [
    ["no action", { name: "a" }, ['(route): expected route "a" to have exactly one of pool, split, redirect, respond; it has none']],
    ["two actions", { name: "a", pool: "p", redirect: { to: "/x" } }, ['(route): expected route "a" to have exactly one of pool, split, redirect, respond; it has pool and redirect']],
    ["a modifier on respond", { name: "m", respond: { status: 503 }, rewrite: { stripPrefix: "/v1" } }, ['rewrite: expected rewrite only on a route that forwards (pool or split); route "m" has respond']],
    ["a mirror on redirect", { name: "m", redirect: { to: "/x" }, mirror: { pool: "s" } }, ['mirror: expected mirror only on a route that forwards (pool or split); route "m" has redirect']],
    ["splitBy without split", { name: "a", pool: "p", splitBy: { cookie: "c" } }, ['splitBy: expected splitBy only with split; route "a" has pool']],
    ["sni with a path", { name: "t", match: { sni: "a.example.com", path: "/x" }, pool: "p" }, ['match.sni: expected route "t", which matches on sni and so serves TCP listeners only, to have only match.sni and pool; it also has match.path']],
    ["sni with split", { name: "t", match: { sni: "a.example.com" }, split: [{ pool: "a", weight: 1 }] }, ['match.sni: expected route "t", which matches on sni and so serves TCP listeners only, to have only match.sni and pool; it also has split']],
    ["bad name", { name: "a b", pool: "p" }, ["name: expected a route name: a name of letters, digits, '-', '_' and '.' (starting with a letter or digit)"]],
    ["path not normal", { name: "a", match: { path: "/a/%7e" }, pool: "p" }, ['match.path: expected a path in normal form, as requests are matched after normalization (RFC 3986 §6.2.2): write "/a/~"']],
    ["path refused", { name: "a", match: { pathExact: "/a%2Fb" }, pool: "p" }, ['match.pathExact: expected a path that a request could carry; this one would be refused: an encoded "/" (%2F) in the path: routing and the backend could read different segments']],
    ["lower-case method", { name: "a", match: { method: ["GET", "post"] }, pool: "p" }, ['match.method.1: expected "POST": methods are case-sensitive (RFC 9110 §9.1)']],
    ["unknown placeholder", { name: "a", pool: "p", requestHeaders: { set: { "x-a": "{hots}" } } }, ["requestHeaders.set.x-a: expected placeholders among {client_ip}, {host}, {request_id}, {route}; {hots} is not one"]],
    ["managed header", { name: "a", pool: "p", responseHeaders: { remove: ["Transfer-Encoding"] } }, ["responseHeaders.remove.0: expected a header other than connection, keep-alive, proxy-connection, proxy-authenticate, proxy-authorization, te, trailer, transfer-encoding, upgrade, content-length: the proxy manages framing and hop-by-hop fields itself"]],
    ["redirect status", { name: "a", redirect: { to: "/x", status: 303 } }, ["redirect.status: expected 301, 302, 307 or 308"]],
    ["split weights all 0", { name: "a", split: [{ pool: "a", weight: 0 }] }, ["split: expected at least one weight above 0"]],
    ["split pool twice", { name: "a", split: [{ pool: "a", weight: 1 }, { pool: "a", weight: 2 }] }, ["split: expected each pool once in a split"]],
    ["rewrite group", { name: "a", pool: "p", rewrite: { regex: "^/(a)$", replace: "/$2" } }, ["rewrite: expected rewrite.replace to refer only to groups rewrite.regex has"]],
    ["bad CIDR", { name: "a", match: { clientIp: ["10.0.0.0/33"] }, pool: "p" }, ["match.clientIp.0: expected a prefix length of 0-32 for IPv4"]],
    ["host with port", { name: "a", match: { host: "a.example.com:80" }, pool: "p" }, ["match.host: expected a host name without a port: the port is ignored when matching", 'match.host: expected a host name like "api.example.com", a wildcard like "*.example.com", an IPv4 address or an IPv6 address in brackets']],
    ["unknown key", { name: "a", pool: "p", mtach: {} }, ['mtach: Invalid key: Expected never but received "mtach"']],
  ];
  for (const [what, input, want] of cases) {
    test(what, () => {
      expect(issuesOf(input)).toEqual(want);
    });
  }

  test("a legacy default route and a full example parse", () => {
    expect(issuesOf({ name: "default", match: {}, pool: "default" })).toEqual([]);
    const [r] = parseRoutes([{ name: "x", match: { host: "A.example.com", method: "GET", clientIp: "10.0.0.0/8" }, split: [{ pool: "a", weight: 9 }, { pool: "b", weight: 1 }], splitBy: { key: "cookie:uid" }, requestHeaders: { set: { "x-route": "{route}" } }, retry: { timeout: "3s", bufferBody: "1MB" } }]);
    expect(r!.match.host).toEqual(["A.example.com"]);
    expect(r!.match.method).toEqual(["GET"]);
    expect(r!.retry).toEqual({ timeout: 3000, bufferBody: 1024 * 1024 });
  });
});

describe("regular expressions: RE2, refused only where backtracking is needed", () => {
  test("lookaround and backreferences are refused, saying why", () => {
    expect(issuesOf({ name: "a", match: { pathRegex: "^/(?!admin)" }, pool: "p" })[0]).toMatch(/^match\.pathRegex: expected a pattern without lookaround .*exponential time.*ReDoS.*linear-time engine/);
    expect(issuesOf({ name: "a", match: { headers: { "x-a": { regex: "^(a+)\\1$" } } }, pool: "p" })[0]).toMatch(/^match\.headers\.x-a\.regex: expected a pattern without a backreference/);
    expect(issuesOf({ name: "a", pool: "p", rewrite: { regex: "(?<=a)b", replace: "/x" } })[0]).toMatch(/^rewrite\.regex: expected a pattern without lookaround/);
    expect(issuesOf({ name: "a", match: { pathRegex: "([a-" }, pool: "p" })[0]).toMatch(/^match\.pathRegex: expected a valid RE2 regular expression/);
  });

  test("patterns that backtrack catastrophically in RegExp run in linear time here", () => {
    // With JavaScriptCore's RegExp, each of these on its attack string does not finish in any
    // useful time (exponential or high-degree polynomial); RE2 answers.
    const attacks: [string, string][] = [
      ["^(a+)+$", "a".repeat(5000) + "!"],
      ["^(a|a)*$", "a".repeat(5000) + "!"],
      ["^/(.*)/(.*)/(.*)/(.*)$", "/" + "/".repeat(8000)],
      ["(\\w+\\s?)*$", "w".repeat(5000) + "!"],
    ];
    for (const [pattern, input] of attacks) {
      const re = compileRegex(pattern);
      expect(typeof re).toBe("object");
      expect((re as { test(s: string): boolean }).test(input)).toBe(pattern.startsWith("^/") || pattern.startsWith("(\\w"));
    }
    const t = table([{ name: "evil", match: { pathRegex: "^/(a+)+$" }, pool: "p" }, { name: "rest", pool: "p" }]);
    const m = t.match(req({ target: "/" + "a".repeat(5000) + "b" }));
    expect(m && "route" in m ? m.route.name : m).toBe("rest");
  });
});

describe("routeProblems", () => {
  test("pools that do not exist and duplicate names, each naming the field", () => {
    const routes = parseRoutes([
      { name: "a", pool: "api" },
      { name: "b", split: [{ pool: "web", weight: 1 }, { pool: "nope", weight: 1 }], mirror: { pool: "gone" } },
      { name: "a", pool: "missing" },
      { name: "m", pool: "api", mirror: { pool: "api" } },
    ]);
    expect(routeProblems(routes, ["api", "web"])).toEqual([
      'routes[1].split[1].pool: got "nope", expected one of the pools (api, web)',
      'routes[1].mirror.pool: got "gone", expected one of the pools (api, web)',
      'routes[2].name: got "a", expected a name no other route has (routes[0] has it)',
      'routes[2].pool: got "missing", expected one of the pools (api, web)',
      'routes[3].mirror.pool: got "api", expected a pool other than the one the route forwards to',
    ]);
    expect(routeProblems(parseRoutes([{ name: "a", pool: "api" }]), new Set(["api"]))).toEqual([]);
  });
});

describe("routeWarnings: only provable shadowing, and unused pools", () => {
  const warn = (routes: RouteInput[], pools = ["p"], also: string[] = []) => routeWarnings(parseRoutes(routes), pools, also);
  const p = (name: string, match: RouteInput["match"] = {}): RouteInput => ({ name, match, pool: "p" });

  test("shadowed", () => {
    const shadow = (a: RouteInput["match"], b: RouteInput["match"]) => warn([p("first", a), p("second", b)]);
    const msg = ["routes[1] (second) never matches: routes[0] (first) comes first and takes every request it would"];
    expect(shadow({}, { host: "a.example.com", path: "/x" })).toEqual(msg);
    expect(shadow({ path: "/" }, { pathExact: "/x" })).toEqual(msg);
    expect(shadow({ host: "*.example.com" }, { host: ["a.example.com", "*.b.example.com"], headers: { x: "1" } })).toEqual(msg);
    expect(shadow({ host: ["a.example.com", "b.example.com"] }, { host: "B.example.com" })).toEqual(msg);
    expect(shadow({ path: "/api" }, { path: "/api/v1" })).toEqual(msg);
    expect(shadow({ path: "/api" }, { path: "/api/" })).toEqual(msg);
    expect(shadow({ path: "/api" }, { pathExact: "/api" })).toEqual(msg);
    expect(shadow({ path: "/api/" }, { path: "/api/x" })).toEqual(msg);
    expect(shadow({ method: ["GET", "HEAD"] }, { method: "GET", path: "/x" })).toEqual(msg);
    expect(shadow({ host: "a.example.com", path: "/v1" }, { host: "a.example.com", path: "/v1/x", method: "GET" })).toEqual(msg);
    expect(warn([{ name: "first", match: { sni: "*.example.com" }, pool: "p" }, { name: "second", match: { sni: "a.example.com" }, pool: "p" }])).toEqual(msg);
  });

  test("not shadowed", () => {
    const shadow = (a: RouteInput["match"], b: RouteInput["match"]) => warn([p("first", a), p("second", b)]);
    expect(shadow({ host: "a.example.com" }, {})).toEqual([]);
    expect(shadow({ path: "/api" }, { path: "/apix" })).toEqual([]);
    expect(shadow({ path: "/api/" }, { path: "/api" })).toEqual([]);
    expect(shadow({ path: "/api/" }, { pathExact: "/api" })).toEqual([]);
    expect(shadow({ path: "/api/v1" }, { path: "/api" })).toEqual([]);
    expect(shadow({ host: "*.example.com" }, { host: "example.com" })).toEqual([]);
    expect(shadow({ headers: { x: "1" } }, { path: "/x" })).toEqual([]);
    expect(shadow({ pathRegex: "." }, { path: "/x" })).toEqual([]);
    expect(shadow({ method: "GET" }, { path: "/x" })).toEqual([]);
    expect(shadow({ clientIp: "0.0.0.0/0" }, { path: "/x" })).toEqual([]);
    // An sni route and an HTTP route serve different listeners.
    expect(warn([{ name: "first", match: { sni: "a.example.com" }, pool: "p" }, p("second")])).toEqual([]);
    expect(warn([p("first"), { name: "second", match: { sni: "a.example.com" }, pool: "p" }])).toEqual([]);
  });

  test("pools no route, mirror or listener uses", () => {
    expect(warn([{ name: "a", pool: "api", mirror: { pool: "shadow" } }], ["api", "shadow", "tcp", "idle"], ["tcp"])).toEqual(["pools.idle: no route, mirror or listener uses this pool"]);
  });
});

describe("the regex engine is loaded only for a config that has a pattern", () => {
  test("no pattern: re2js is never loaded; a pattern: it is", () => {
    const script = (withRegex: boolean) => `
      import { table } from ${JSON.stringify(`${import.meta.dir}/helpers.ts`)};
      table([{ name: "a", match: { host: "a.example.com", path: "/x", headers: { "x-a": "1" } }, pool: "p" }]);
      ${withRegex ? 'table([{ name: "b", match: { pathRegex: "^/x" }, pool: "p" }]);' : ""}
      console.log(JSON.stringify(Object.keys(require.cache).some((k) => k.includes("re2js"))));`;
    for (const withRegex of [false, true]) {
      const run = Bun.spawnSync([process.execPath, "-e", script(withRegex)], { stdout: "pipe", stderr: "pipe" });
      expect({ withRegex, out: run.stdout.toString().trim(), err: run.stderr.toString() }).toEqual({ withRegex, out: String(withRegex), err: "" });
    }
  });
});
