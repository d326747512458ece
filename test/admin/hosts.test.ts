/**
 * The admin listener's Host check (against DNS rebinding: a page on another site whose name
 * resolves to 127.0.0.1 must not reach the admin API), unit by unit and through a
 * real admin listener in front of real sim backends.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { hostname, networkInterfaces } from "node:os";
import { adminHostChecker } from "../../src/admin/hosts.ts";
import { parseHostPort } from "../../src/config/address.ts";
import { rawRequest } from "../helpers/raw.ts";
import { startStack, type Stack } from "./helpers.ts";

describe("adminHostChecker", () => {
  test("a loopback listener: its own names with its port, nothing else", () => {
    const ok = adminHostChecker("127.0.0.1", 8081);
    for (const h of ["127.0.0.1:8081", "localhost:8081", "LocalHost:8081", "localhost.:8081", "[::1]:8081", "[0:0:0:0:0:0:0:1]:8081", "[::ffff:127.0.0.1]:8081"]) {
      expect(ok(h)).toBe(true);
    }
    for (const h of ["evil.example:8081", "evil.example", "127.0.0.1:8082", "localhost", "127.0.0.1.nip.io:8081", "localhost:8081, evil.example:8081", "", "[::1:8081", "localhost:99999", "localhost:80x"]) {
      expect(ok(h)).toBe(false);
    }
    // No Host at all (HTTP/1.0): no browser sends such a request, so nothing to rebind.
    expect(ok(null)).toBe(true);
  });

  test("a Host without a port means port 80 (RFC 9110 §4.2.1)", () => {
    const ok = adminHostChecker("127.0.0.1", 80);
    expect(ok("localhost")).toBe(true);
    expect(ok("localhost:80")).toBe(true);
  });

  test("a named or specific listener host is accepted; a wildcard one adds the machine's name and addresses", () => {
    expect(adminHostChecker("admin.internal", 9000)("Admin.Internal:9000")).toBe(true);
    expect(adminHostChecker("10.1.2.3", 9000)("10.1.2.3:9000")).toBe(true);
    expect(adminHostChecker("10.1.2.3", 9000)(`${hostname()}:9000`)).toBe(hostname().toLowerCase() === "localhost");
    for (const wildcard of ["0.0.0.0", "::"]) {
      const ok = adminHostChecker(wildcard, 9000);
      expect(ok(`${hostname()}:9000`)).toBe(true);
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) expect(ok(a.family === "IPv6" ? `[${a.address}]:9000` : `${a.address}:9000`)).toBe(true);
      }
      expect(ok("0.0.0.0:9000")).toBe(false);
      expect(ok("evil.example:9000")).toBe(false);
    }
  });

  test("allowedHosts: a name takes the admin port; name:port is exact", () => {
    const ok = adminHostChecker("127.0.0.1", 8081, ["dash.example", "front.example:443", "[2001:db8::1]"]);
    expect(ok("dash.example:8081")).toBe(true);
    expect(ok("dash.example:443")).toBe(false);
    expect(ok("front.example:443")).toBe(true);
    expect(ok("front.example")).toBe(false);
    expect(ok("[2001:db8:0::1]:8081")).toBe(true);
  });

  test("parseHostPort: uri-host [\":\" port] (RFC 9110 §7.2)", () => {
    expect(parseHostPort("Example.COM:443")).toEqual({ host: "example.com", port: 443 });
    expect(parseHostPort("[::1]")).toEqual({ host: "::1", port: undefined });
    for (const bad of ["::1", "[x]:1", "a b", "a:", "[::1]x", "ex_ample.com", "*.example.com"]) expect(parseHostPort(bad)).toBeUndefined();
  });
});

describe("through a real admin listener", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  const portOf = (url: string) => Number(new URL(url).port);

  test("a foreign Host gets 403 with a stable code; the listener's own names are served", async () => {
    stack = await startStack(1, { admin: { host: "127.0.0.1", port: 0, allowedHosts: ["dash.example"] } });
    const port = portOf(stack.adminUrl);
    const evil = await rawRequest(port, `GET /stats HTTP/1.1\r\nHost: evil.example:${port}`);
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body)).toEqual({
      error: "SY_ADMIN_HOST_FORBIDDEN",
      status: 403,
      message: `Host "evil.example:${port}" is not a name of this admin listener; add it to admin.allowedHosts to allow it`,
    });
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `dash.example:${port}`]) {
      const res = await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: ${host}`);
      expect(res.status).toBe(200);
    }
    // Every endpoint is behind the check, the dashboard and the event stream too.
    for (const path of ["/", "/events", "/metrics", "/readyz", "/nope"]) {
      expect((await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: rebound.example:${port}`)).status).toBe(403);
    }
    // fetch() sends the URL's host: the usual client is unaffected.
    expect((await fetch(`${stack.adminUrl}/stats`)).status).toBe(200);
  });

  test("a wildcard listener answers the machine's host name", async () => {
    stack = await startStack(1, { admin: { host: "0.0.0.0", port: 0 } });
    const port = portOf(stack.adminUrl);
    expect((await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: ${hostname()}:${port}`)).status).toBe(200);
    expect((await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: evil.example:${port}`)).status).toBe(403);
  });
});
