/**
 * A route's `jwt`: a bearer token (RFC 6750 §2.1) verified with jose: signature by a key of the
 * JWKS at `jwks` (or an HMAC `secret`), an algorithm from the allow-list (never "none": jose
 * refuses it with a key, and the schema never lists it), `iss`, `aud`, and `exp` (required) and
 * `nbf` with `leeway` for clock skew. Claims named in `claimsToHeaders` are copied into request
 * fields; each such field the client sent is removed first, so it cannot pass its own.
 *
 * A late Guard: jose verifies through WebCrypto, which is asynchronous, and a key set may have
 * to be fetched. No token or a bad one: 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3, with
 * error="invalid_token" when one was sent); key set unreachable: 503 SY_AUTH_UNAVAILABLE.
 */
import { jwtVerify, type JWTVerifyGetKey, type JWTPayload } from "jose";
import { errorAnswer, messageFor } from "../errors.ts";
import type { Guard, GuardRequest, Refusal } from "./guard.ts";

export interface JwtOptions {
  /** The key: a JWKS resolver (key-sets.ts) or an HMAC secret. */
  readonly key: JWTVerifyGetKey | Uint8Array;
  readonly issuer: string | string[];
  readonly audience: string | string[];
  readonly algorithms: string[];
  readonly leewayMs: number;
  /** Claim name → lower-case field name. */
  readonly claimsToHeaders: Readonly<Record<string, string>>;
  /** The realm named in the challenge. */
  readonly realm: string;
}

/** jose's codes for a token that is not good (401); any other failure is ours or the key set's (503). */
const TOKEN_FAULTS = new Set([
  "ERR_JWT_CLAIM_VALIDATION_FAILED",
  "ERR_JWT_EXPIRED",
  "ERR_JOSE_ALG_NOT_ALLOWED",
  "ERR_JOSE_NOT_SUPPORTED",
  "ERR_JWS_INVALID",
  "ERR_JWT_INVALID",
  "ERR_JWKS_NO_MATCHING_KEY",
  "ERR_JWKS_MULTIPLE_MATCHING_KEYS",
  "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
]);

function challenge(value: string): Refusal {
  const a = errorAnswer("SY_AUTH_REQUIRED", messageFor("SY_AUTH_REQUIRED"));
  return { code: "SY_AUTH_REQUIRED", answer: { ...a, headers: { ...a.headers, "www-authenticate": value } } };
}

/**
 * A claim as a field value: strings as they are, others as JSON; control characters (CR, LF,
 * NUL...) dropped so that a claim cannot add a field line (RFC 9110 §5.5), and characters
 * outside ASCII percent-encoded as UTF-8, since field values are octets and engines write them
 * as Latin-1.
 */
export function claimValue(v: unknown): string {
  const text = typeof v === "string" ? v : JSON.stringify(v);
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, "").replace(/[^\x20-\x7e]+/g, (s) => encodeURIComponent(s));
}

export class JwtGuard implements Guard {
  private readonly missing: Refusal;
  private readonly invalid: Refusal;
  private readonly expired: Refusal;
  private readonly unavailable: Refusal;
  private readonly claims: [string, string][];
  private readonly verify: { issuer: string | string[]; audience: string | string[]; algorithms: string[]; clockTolerance: number; requiredClaims: string[] };

  constructor(private readonly o: JwtOptions) {
    const realm = `realm="${o.realm}"`;
    // RFC 6750 §3.1: no error code when the request carried no token.
    this.missing = challenge(`Bearer ${realm}`);
    this.invalid = challenge(`Bearer ${realm}, error="invalid_token", error_description="the token is not valid"`);
    this.expired = challenge(`Bearer ${realm}, error="invalid_token", error_description="the token has expired"`);
    this.unavailable = { code: "SY_AUTH_UNAVAILABLE", answer: errorAnswer("SY_AUTH_UNAVAILABLE", messageFor("SY_AUTH_UNAVAILABLE", "the key set cannot be fetched")) };
    this.claims = Object.entries(o.claimsToHeaders);
    this.verify = { issuer: o.issuer, audience: o.audience, algorithms: o.algorithms, clockTolerance: o.leewayMs / 1000, requiredClaims: ["exp"] };
  }

  check(req: GuardRequest): Refusal | undefined | Promise<Refusal | undefined> {
    const value = req.headers.get("authorization");
    // RFC 6750 §2.1: "Bearer" (case-insensitive, RFC 9110 §11.1) then the token.
    if (value === null || value.length < 8 || value.slice(0, 7).toLowerCase() !== "bearer ") return this.missing;
    const token = value.slice(7).trim();
    const verifying =
      this.o.key instanceof Uint8Array
        ? jwtVerify(token, this.o.key, this.verify)
        : jwtVerify(token, this.o.key, this.verify);
    return verifying.then(
      ({ payload }) => {
        this.copyClaims(req, payload);
        return undefined;
      },
      (e: unknown) => {
        const code = (e as { code?: string }).code;
        if (code === "ERR_JWT_EXPIRED") return this.expired;
        return code !== undefined && TOKEN_FAULTS.has(code) ? this.invalid : this.unavailable;
      },
    );
  }

  private copyClaims(req: GuardRequest, payload: JWTPayload): void {
    const h = req.headers;
    for (const [claim, field] of this.claims) {
      h.delete(field);
      const v = payload[claim];
      if (v !== undefined && v !== null) h.set(field, claimValue(v));
    }
  }
}
