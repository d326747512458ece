/**
 * Access control end to end, on both engines: allow and deny lists, basic auth, forward auth
 * and JWT on routes, in front of a recording backend.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAuthService, type AuthService } from "./auth-service.ts";
import { SignJWT } from "jose";
import { startJwksServer, type JwksServer } from "./jwks-server.ts";

/** A port nothing listens on: taken and released. */
function closedPort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

const dir = mkdtempSync(join(tmpdir(), "switchyard-access-"));
const usersFile = join(dir, "users");
const secretFile = join(dir, "jwt-secret");
const SECRET = "a-secret-of-more-than-thirty-two-bytes";
writeFileSync(secretFile, `${SECRET}\n`);
const hash = (pw: string) => Bun.password.hash(pw, { algorithm: "bcrypt", cost: 4 });
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;

for (const engine of ["socket", "fetch"] as const) {
  describe(`${engine} engine`, () => {
    let api: RecordingBackend;
    let auth: AuthService;
    let jwks: JwksServer;
    const deadAuth = `http://127.0.0.1:${closedPort()}/check`;
    let lb: Balancer;
    let base: string;

    const config = () =>
      validateConfig({
        engine, admin: false, healthCheck: false, log: { access: false },
        listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
        pools: { api: { backends: [{ url: api.url }] } },
        routes: [
          { name: "allowed", match: { path: "/allowed" }, pool: "api", allow: ["127.0.0.0/8", "::1"] },
          { name: "elsewhere", match: { path: "/elsewhere" }, pool: "api", allow: ["10.0.0.0/8"] },
          { name: "both", match: { path: "/both" }, pool: "api", allow: ["127.0.0.0/8"], deny: ["127.0.0.1"] },
          { name: "private", match: { path: "/private" }, pool: "api", deny: ["0.0.0.0/0", "::/0"] },
          { name: "admin", match: { path: "/admin" }, pool: "api", basicAuth: { usersFile, realm: "staff area" } },
          { name: "app", match: { path: "/app" }, pool: "api", forwardAuth: { url: auth.url, copyHeaders: ["X-User"], timeout: "300ms" } },
          { name: "app-down", match: { path: "/app-down" }, pool: "api", forwardAuth: { url: deadAuth } },
          { name: "jwt", match: { path: "/jwt" }, pool: "api", jwt: { jwks: jwks.url, issuer: jwks.issuer, audience: "api", claimsToHeaders: { sub: "x-user" } } },
          { name: "jwt-hs", match: { path: "/jwt-hs" }, pool: "api", jwt: { secretFile, issuer: "me", audience: "api", claimsToHeaders: { sub: "x-user" } } },
          { name: "jwt-down", match: { path: "/jwt-down" }, pool: "api", jwt: { jwks: deadAuth, issuer: jwks.issuer, audience: "api" } },
        ],
        });

    beforeAll(async () => {
      writeFileSync(usersFile, `# test users\nalice:${(await hash("wonderland")).replace(/^\$2b\$/, "$2y$")}\n`);
      api = startRecordingBackend();
      auth = startAuthService();
      jwks = await startJwksServer();
      await jwks.addKey("k1");
      lb = await startBalancer(config(), { env: {}, logger: memoryLogger() });
      base = lb.url;
    });

    afterAll(async () => {
      await lb?.stop(false);
      api?.stop();
      auth?.stop();
      jwks?.stop();
    });

    test("allow and deny: deny wins, allow refuses the rest, with 403 SY_FORBIDDEN", async () => {
      const before = api.requests.length;
      const ok = await fetch(`${base}/allowed`);
      expect(ok.status).toBe(200);
      await ok.text();
      expect(api.requests.length).toBe(before + 1);
      for (const path of ["/elsewhere", "/both", "/private"]) {
        const r = await fetch(base + path);
        expect(r.status).toBe(403);
        expect(await r.json()).toMatchObject({ error: "SY_FORBIDDEN" });
      }
      expect(api.requests.length).toBe(before + 1);
    });

    test("basic auth: 401 with the challenge until the right password; a reload reads the users file again", async () => {
      const before = api.requests.length;
      const none = await fetch(`${base}/admin`);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toBe('Basic realm="staff area", charset="UTF-8"');
      expect(await none.json()).toMatchObject({ error: "SY_AUTH_REQUIRED" });
      const wrong = await fetch(`${base}/admin`, { headers: { authorization: basic("alice", "nope") } });
      expect(wrong.status).toBe(401);
      await wrong.text();
      expect(api.requests.length).toBe(before);
      for (let i = 0; i < 2; i++) {
        const ok = await fetch(`${base}/admin`, { headers: { authorization: basic("alice", "wonderland") } });
        expect(ok.status).toBe(200);
        await ok.text();
      }
      expect(api.requests.length).toBe(before + 2);

      // A new password in the file: the reload forgets the old one (and its remembered success).
      writeFileSync(usersFile, `alice:${await hash("looking-glass")}\n`);
      await lb.apply(config());
      const old = await fetch(`${base}/admin`, { headers: { authorization: basic("alice", "wonderland") } });
      expect(old.status).toBe(401);
      await old.text();
      const renewed = await fetch(`${base}/admin`, { headers: { authorization: basic("alice", "looking-glass") } });
      expect(renewed.status).toBe(200);
      await renewed.text();
    });

    test("forward auth: a 2xx passes with the named field copied; any other answer is relayed; no service is 503", async () => {
      const before = api.requests.length;
      const ok = await fetch(`${base}/app/page?q=1`, { method: "POST", body: "payload", headers: { authorization: "Bearer alice", "x-user": "mallory" } });
      expect(ok.status).toBe(200);
      await ok.text();
      const seen = api.requests[before]!;
      expect(seen.headers.filter(([k]) => k.toLowerCase() === "x-user")).toEqual([[expect.any(String), "alice"]]);
      expect(seen.body).toBe("payload");
      const asked = auth.seen.at(-1)!;
      expect([asked.get("x-forwarded-method"), asked.get("x-forwarded-uri"), asked.get("x-forwarded-for")]).toEqual(["POST", "/app/page?q=1", "127.0.0.1"]);

      const login = await fetch(`${base}/app`, { headers: { authorization: "Bearer login" }, redirect: "manual" });
      expect(login.status).toBe(302);
      expect(login.headers.get("location")).toBe("/login");
      expect(login.headers.get("x-request-id")).not.toBeNull();
      expect(await login.text()).toBe("<a href=/login>log in</a>");
      const who = await fetch(`${base}/app`);
      expect(who.status).toBe(401);
      expect(who.headers.get("www-authenticate")).toBe('Custom realm="svc"');
      expect(await who.text()).toBe("who are you?");

      for (const [path, authorization, why] of [["/app", "Bearer slow", "did not answer within 300 ms"], ["/app-down", "Bearer alice", "cannot be reached"]] as const) {
        const r = await fetch(base + path, { headers: { authorization } });
        expect(r.status).toBe(503);
        const body = (await r.json()) as { error: string; message: string };
        expect(body.error).toBe("SY_AUTH_UNAVAILABLE");
        expect(body.message).toContain(why);
      }
      expect(api.requests.length).toBe(before + 1);
    });

    test("jwt: a good token passes with its claim as a field; none or a bad one is 401; no key set is 503; a reload keeps the keys", async () => {
      const before = api.requests.length;
      const token = await jwks.sign("k1", { sub: "alice" });
      const ok = await fetch(`${base}/jwt`, { headers: { authorization: `Bearer ${token}`, "x-user": "mallory" } });
      expect(ok.status).toBe(200);
      await ok.text();
      expect(api.requests[before]!.headers.filter(([k]) => k.toLowerCase() === "x-user").map(([, v]) => v)).toEqual(["alice"]);
      const none = await fetch(`${base}/jwt`);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toBe('Bearer realm="jwt"');
      await none.text();
      const bad = await fetch(`${base}/jwt`, { headers: { authorization: `Bearer ${await jwks.sign("k1", { sub: "a" }, { audience: "other" })}` } });
      expect(bad.status).toBe(401);
      expect(bad.headers.get("www-authenticate")).toContain('error="invalid_token"');
      expect(await bad.json()).toMatchObject({ error: "SY_AUTH_REQUIRED" });
      const down = await fetch(`${base}/jwt-down`, { headers: { authorization: `Bearer ${token}` } });
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ error: "SY_AUTH_UNAVAILABLE" });
      expect(api.requests.length).toBe(before + 1);

      const hs = await new SignJWT({ sub: "svc" }).setProtectedHeader({ alg: "HS256" }).setIssuer("me").setAudience("api").setExpirationTime("5m").sign(new TextEncoder().encode(SECRET));
      const withSecret = await fetch(`${base}/jwt-hs`, { headers: { authorization: `Bearer ${hs}` } });
      expect(withSecret.status).toBe(200);
      await withSecret.text();
      expect(api.requests.at(-1)!.headers.find(([k]) => k.toLowerCase() === "x-user")?.[1]).toBe("svc");
      // A token signed with the secret's key but sent to the JWKS route: refused (no HS* with jwks).
      const confused = await fetch(`${base}/jwt`, { headers: { authorization: `Bearer ${hs}` } });
      expect(confused.status).toBe(401);
      await confused.text();

      const fetched = jwks.fetches();
      await lb.apply(config());
      const again = await fetch(`${base}/jwt`, { headers: { authorization: `Bearer ${token}` } });
      expect(again.status).toBe(200);
      await again.text();
      expect(jwks.fetches()).toBe(fetched);
    });

    test("jwt config: one of jwks and secret, a long enough secret, never none", () => {
      const pools = { api: { backends: [{ url: api.url }] } };
      const route = (jwt: object) => ({ pools, routes: [{ name: "j", pool: "api", jwt: { issuer: "i", audience: "a", ...jwt } }] });
      expect(() => validateConfig(route({ jwks: jwks.url, secret: "s".repeat(32) }))).toThrow("expected exactly one of jwks, secret and secretFile");
      expect(() => validateConfig(route({}))).toThrow("expected exactly one of jwks, secret and secretFile");
      const short = join(dir, `short-${engine}`);
      writeFileSync(short, "tooshort\n");
      expect(() => validateConfig(route({ secretFile: short }))).toThrow(`routes[0].jwt.secretFile: ${JSON.stringify(short)}: expected a secret of at least 32 bytes`);
      expect(() => validateConfig(route({ secret: "short" }))).toThrow("at least 32 bytes");
      expect(() => validateConfig(route({ jwks: jwks.url, algorithms: ["none"] }))).toThrow('"none" never passes');
      expect(() => validateConfig(route({ jwks: jwks.url, algorithms: ["HS256"] }))).toThrow("HS* algorithms with secret or secretFile only");
      expect(validateConfig(route({ secret: "s".repeat(32), algorithms: ["HS256"], leeway: "5s" })).routes[0]!.jwt!.leeway).toBe(5000);
    });

    test("a users file with a line it cannot read is a config problem naming the file and line", () => {
      const bad = join(dir, `bad-${engine}`);
      writeFileSync(bad, "alice:$apr1$x$y\n");
      const route = { name: "admin", pool: "api", basicAuth: { usersFile: bad } };
      expect(() => validateConfig({ pools: { api: { backends: [{ url: api.url }] } }, routes: [route] })).toThrow(
        `routes[0].basicAuth.usersFile: ${JSON.stringify(bad)} line 1: user "alice": expected a bcrypt`,
      );
      expect(() => validateConfig({ pools: { api: { backends: [{ url: api.url }] } }, routes: [{ ...route, basicAuth: { usersFile: join(dir, "missing") } }] })).toThrow("file not found");
      // Guards only make sense where a request goes on to a pool.
      expect(() => validateConfig({ pools: { api: { backends: [{ url: api.url }] } }, routes: [{ name: "r", redirect: { to: "/x" }, allow: ["10.0.0.0/8"] }] })).toThrow("expected allow only on a route that forwards");
    });
  });
}
