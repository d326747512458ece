/** The guard options of a route: errors name the field, the value and what was expected; a deny-all that misses IPv6 is warned about. */
import { describe, expect, test } from "bun:test";
import { routeWarnings } from "../../src/route/schema.ts";
import { issuesOf, parseRoutes } from "../route/helpers.ts";

describe("guard options", () => {
  const cases: [string, unknown, string[]][] = [
    ["a bad CIDR in allow", { name: "a", pool: "p", allow: ["10.0.0.0/40"] }, ["allow.0: expected a prefix length of 0-32 for IPv4"]],
    ["deny not a list", { name: "a", pool: "p", deny: "10.0.0.0/8" }, ["deny: expected a list of CIDRs or addresses"]],
    ["allow on respond", { name: "a", respond: { status: 200 }, allow: ["10.0.0.0/8"] }, ['allow: expected allow only on a route that forwards (pool or split); route "a" has respond']],
    ["a realm with a quote", { name: "a", pool: "p", basicAuth: { usersFile: "/u", realm: 'a"b' } }, ['basicAuth.realm: expected a realm without " or \\']],
    ["no users file", { name: "a", pool: "p", basicAuth: {} }, ['basicAuth.usersFile: Invalid key: Expected "usersFile" but received undefined']],
    ["forwardAuth to ftp", { name: "a", pool: "p", forwardAuth: { url: "ftp://x/" } }, ["forwardAuth.url: expected an http:// or https:// URL"]],
    ["forwardAuth copying a managed field", { name: "a", pool: "p", forwardAuth: { url: "http://x/", copyHeaders: ["content-length"] } }, [expect.stringContaining("forwardAuth.copyHeaders.0: expected a header other than") as unknown as string]],
    ["a zero timeout", { name: "a", pool: "p", forwardAuth: { url: "http://x/", timeout: 0 } }, ["forwardAuth.timeout: expected a duration of more than 0"]],
    ["jwt alg none", { name: "a", pool: "p", jwt: { jwks: "https://i/k", issuer: "i", audience: "a", algorithms: ["none"] } }, [expect.stringContaining('jwt.algorithms.0: expected one of RS256') as unknown as string]],
    ["jwt without audience", { name: "a", pool: "p", jwt: { jwks: "https://i/k", issuer: "i" } }, ['jwt.audience: Invalid key: Expected "audience" but received undefined']],
  ];
  for (const [what, input, want] of cases) test(what, () => expect(issuesOf(input)).toEqual(want));

  test("forwardAuth and jwt defaults", () => {
    const [r] = parseRoutes([{ name: "a", pool: "p", forwardAuth: { url: "http://auth/check", copyHeaders: ["X-User"] } }]);
    expect(r!.forwardAuth).toEqual({ url: "http://auth/check", copyHeaders: ["x-user"], headers: ["authorization", "cookie"], timeout: 5000 });
    const [j] = parseRoutes([{ name: "j", pool: "p", jwt: { jwks: "https://i/k", issuer: "i", audience: "api" } }]);
    expect(j!.jwt).toEqual({ jwks: "https://i/k", issuer: ["i"], audience: ["api"], leeway: 30_000, claimsToHeaders: {} });
  });

  test('deny "0.0.0.0/0" without "::/0" is warned about: IPv6 clients would pass', () => {
    expect(routeWarnings(parseRoutes([{ name: "a", pool: "p", deny: ["0.0.0.0/0"] }]), ["p"])).toEqual([
      'routes[0].deny: "0.0.0.0/0" denies every IPv4 client but no IPv6 one; add "::/0" to deny every client',
    ]);
    expect(routeWarnings(parseRoutes([{ name: "a", pool: "p", deny: ["0.0.0.0/0", "::/0"] }]), ["p"])).toEqual([]);
  });
});
