/** JwtGuard with jose against a real JWKS endpoint: the checks, the claims, the key set's refetch bound. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT, UnsecuredJWT } from "jose";
import { claimValue, JwtGuard, type JwtOptions } from "../../src/guard/jwt.ts";
import { KeySets } from "../../src/guard/key-sets.ts";
import { JWT_ASYMMETRIC } from "../../src/route/schema.ts";
import type { GuardRequest, Refusal } from "../../src/guard/guard.ts";
import { startJwksServer, type JwksServer } from "./jwks-server.ts";

let jwks: JwksServer;
beforeAll(async () => {
  jwks = await startJwksServer();
  await jwks.addKey("k1", "RS256");
  await jwks.addKey("k2", "ES256");
});
afterAll(() => jwks.stop());

const req = (fields: Record<string, string> = {}): GuardRequest => ({ method: "GET", target: "/", headers: new Headers(fields), clientIp: "127.0.0.1" });
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
function guard(keySets: KeySets, over: Partial<JwtOptions> = {}, cooldownMs = 30_000): JwtGuard {
  return new JwtGuard({
    key: keySets.get(jwks.url, { timeoutMs: 2000, cooldownMs, maxAgeMs: 600_000 }),
    issuer: jwks.issuer, audience: "api", algorithms: [...JWT_ASYMMETRIC], leewayMs: 30_000,
    claimsToHeaders: { sub: "x-user", roles: "x-roles", note: "x-note" }, realm: "api", ...over,
  });
}
const verdict = async (g: JwtGuard, r: GuardRequest): Promise<Refusal | undefined> => g.check(r);

describe("JwtGuard", () => {
  test("a good token passes (RS256 and ES256) and its claims are copied; the client's own fields are removed", async () => {
    const g = guard(new KeySets());
    const r = req({ ...bearer(await jwks.sign("k1", { sub: "alice", roles: ["a", "b"] })), "x-user": "mallory", "x-note": "forged" });
    expect(await verdict(g, r)).toBeUndefined();
    expect(r.headers.get("x-user")).toBe("alice");
    expect(r.headers.get("x-roles")).toBe('["a","b"]');
    expect(r.headers.get("x-note")).toBeNull();
    expect(await verdict(g, req(bearer(await jwks.sign("k2", { sub: "bob" }))))).toBeUndefined();
  });

  test("no token: 401 with a bare Bearer challenge (RFC 6750 §3.1)", async () => {
    const r = await verdict(guard(new KeySets()), req());
    expect(r?.answer.status).toBe(401);
    expect(r?.answer.headers["www-authenticate"]).toBe('Bearer realm="api"');
  });

  test("wrong issuer, wrong audience, expired past the leeway, not yet valid, no exp, tampered: 401 invalid_token", async () => {
    const g = guard(new KeySets());
    const now = Math.floor(Date.now() / 1000);
    const good = await jwks.sign("k1", { sub: "a" });
    const [h, p, sig] = good.split(".");
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, "base64url").toString()), sub: "root" })).toString("base64url")}.${sig}`;
    const bad = [
      await jwks.sign("k1", { sub: "a" }, { issuer: "https://evil/" }),
      await jwks.sign("k1", { sub: "a" }, { audience: "other" }),
      await jwks.sign("k1", { sub: "a" }, { notBefore: now + 120 }),
      await jwks.sign("k1", { sub: "a" }, { noExp: true }),
      tampered,
      "not.a.token",
    ];
    for (const t of bad) {
      const r = await verdict(g, req(bearer(t)));
      expect(r?.code).toBe("SY_AUTH_REQUIRED");
      expect(r?.answer.headers["www-authenticate"]).toStartWith('Bearer realm="api", error="invalid_token"');
    }
    const expired = await verdict(g, req(bearer(await jwks.sign("k1", { sub: "a" }, { expiresIn: now - 60 }))));
    expect(expired?.answer.headers["www-authenticate"]).toContain('error_description="the token has expired"');
    // Within the leeway (30 s): still good.
    expect(await verdict(g, req(bearer(await jwks.sign("k1", { sub: "a" }, { expiresIn: now - 10 }))))).toBeUndefined();
  });

  test('"none" never passes, nor an algorithm outside the list, nor HS256 keyed with a public key', async () => {
    const g = guard(new KeySets());
    const none = new UnsecuredJWT({ sub: "root" }).setIssuer(jwks.issuer).setAudience("api").setExpirationTime("5m").encode();
    expect((await verdict(g, req(bearer(none))))?.code).toBe("SY_AUTH_REQUIRED");
    const onlyEs = guard(new KeySets(), { algorithms: ["ES256"] });
    expect((await verdict(onlyEs, req(bearer(await jwks.sign("k1", { sub: "a" })))))?.code).toBe("SY_AUTH_REQUIRED");
    const hs = await new SignJWT({ sub: "root" }).setProtectedHeader({ alg: "HS256", kid: "k1" }).setIssuer(jwks.issuer).setAudience("api").setExpirationTime("5m").sign(new TextEncoder().encode("x".repeat(32)));
    expect((await verdict(g, req(bearer(hs))))?.code).toBe("SY_AUTH_REQUIRED");
  });

  test("an HMAC secret instead of a key set", async () => {
    const secret = new TextEncoder().encode("s".repeat(32));
    const g = guard(new KeySets(), { key: secret, algorithms: ["HS256"] });
    const t = await new SignJWT({ sub: "svc" }).setProtectedHeader({ alg: "HS256" }).setIssuer(jwks.issuer).setAudience("api").setExpirationTime("5m").sign(secret);
    expect(await verdict(g, req(bearer(t)))).toBeUndefined();
    const other = await new SignJWT({ sub: "svc" }).setProtectedHeader({ alg: "HS256" }).setIssuer(jwks.issuer).setAudience("api").setExpirationTime("5m").sign(new TextEncoder().encode("t".repeat(32)));
    expect((await verdict(g, req(bearer(other))))?.code).toBe("SY_AUTH_REQUIRED");
  });

  test("unknown kids cost at most one refetch per cooldown; a rotated key is found after it", async () => {
    const sets = new KeySets();
    const g = guard(sets, {}, 30_000);
    expect(await verdict(g, req(bearer(await jwks.sign("k1", { sub: "a" }))))).toBeUndefined();
    const before = jwks.fetches();
    await jwks.addKey("rotated", "RS256", true);
    const t = await jwks.sign("rotated", { sub: "a" });
    // Within the cooldown after the first fetch: refused, and no fetch however many tokens come.
    for (let i = 0; i < 20; i++) expect((await verdict(g, req(bearer(t))))?.code).toBe("SY_AUTH_REQUIRED");
    expect(jwks.fetches()).toBe(before);
    // A set whose cooldown is short finds the rotated key with one fetch.
    const quick = guard(new KeySets(), {}, 0);
    expect(await verdict(quick, req(bearer(await jwks.sign("k1", { sub: "a" }))))).toBeUndefined();
    const mid = jwks.fetches();
    await jwks.addKey("rotated-again", "ES256", true);
    expect(await verdict(quick, req(bearer(await jwks.sign("rotated-again", { sub: "a" }))))).toBeUndefined();
    expect(jwks.fetches()).toBe(mid + 1);
  });

  test("the key set unreachable: 503 SY_AUTH_UNAVAILABLE, never a pass", async () => {
    jwks.failing(true);
    try {
      const r = await verdict(guard(new KeySets()), req(bearer(await jwks.sign("k1", { sub: "a" }))));
      expect(r?.code).toBe("SY_AUTH_UNAVAILABLE");
      expect(r?.answer.status).toBe(503);
    } finally {
      jwks.failing(false);
    }
  });

  test("the key set failing: the issuer is asked at most once per cooldown, whatever the tokens", async () => {
    jwks.failing(true);
    try {
      const g = guard(new KeySets());
      const before = jwks.fetches();
      const token = bearer(await jwks.sign("k1", { sub: "a" }));
      for (let i = 0; i < 10; i++) expect((await verdict(g, req(token)))?.code).toBe("SY_AUTH_UNAVAILABLE");
      expect(jwks.fetches() - before).toBe(1);
    } finally {
      jwks.failing(false);
    }
  });

  test("the same key set is kept for a URL (a reload keeps keys and the refetch bound)", () => {
    const sets = new KeySets();
    expect(sets.get(jwks.url)).toBe(sets.get(jwks.url));
    expect(sets.size).toBe(1);
  });
});

describe("claimValue", () => {
  test("no CR, LF or other controls; non-ASCII percent-encoded; non-strings as JSON", () => {
    expect(claimValue("alice\r\nx-admin: 1")).toBe("alicex-admin: 1");
    expect(claimValue("José")).toBe("Jos%C3%A9");
    expect(claimValue(42)).toBe("42");
    expect(claimValue({ a: "\n" })).toBe('{"a":"\\n"}');
  });
});
