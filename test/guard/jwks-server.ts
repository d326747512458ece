/**
 * A real JWKS endpoint for jwt tests (Bun.serve on an ephemeral port) serving public keys made
 * with jose, and a signer for tokens with the private halves. Keys can be added (rotation) and
 * the endpoint made to fail; it counts the fetches.
 */
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";
import type { Server } from "bun";

export interface JwksServer {
  url: string;
  issuer: string;
  fetches: () => number;
  /** A new key (kid), published when `publish` is true. */
  addKey(kid: string, alg?: "RS256" | "ES256", publish?: boolean): Promise<void>;
  publish(kid: string): void;
  /** Answer 500 from now on (true) or serve the keys again (false). */
  failing(on: boolean): void;
  sign(kid: string, claims: JWTPayload, o?: { expiresIn?: string | number; notBefore?: string | number; issuer?: string; audience?: string; noExp?: boolean }): Promise<string>;
  stop(): void;
}

export async function startJwksServer(): Promise<JwksServer> {
  const keys = new Map<string, { alg: string; privateKey: CryptoKey; jwk: JWK; published: boolean }>();
  let fetches = 0;
  let fail = false;
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch() {
      fetches++;
      if (fail) return new Response("down", { status: 500 });
      return Response.json({ keys: [...keys.values()].filter((k) => k.published).map((k) => k.jwk) });
    },
  });
  const url = `http://127.0.0.1:${server.port}/.well-known/jwks.json`;
  const issuer = `http://127.0.0.1:${server.port}/`;
  const s: JwksServer = {
    url,
    issuer,
    fetches: () => fetches,
    async addKey(kid, alg = "RS256", publish = true) {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
      const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
      keys.set(kid, { alg, privateKey, jwk, published: publish });
    },
    publish(kid) {
      keys.get(kid)!.published = true;
    },
    failing(on) {
      fail = on;
    },
    async sign(kid, claims, o = {}) {
      const k = keys.get(kid)!;
      let j = new SignJWT(claims).setProtectedHeader({ alg: k.alg, kid }).setIssuer(o.issuer ?? issuer).setAudience(o.audience ?? "api").setIssuedAt();
      if (!o.noExp) j = j.setExpirationTime(o.expiresIn ?? "5m");
      if (o.notBefore !== undefined) j = j.setNotBefore(o.notBefore);
      return j.sign(k.privateKey);
    },
    stop: () => server.stop(true),
  };
  return s;
}
