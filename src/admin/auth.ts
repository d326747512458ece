/**
 * Who may change the running balancer through the admin API: holders of a bearer token
 * (RFC 6750 §2.1, `Authorization: Bearer <token>`). Reads need no token; every mutation does.
 *
 * Tokens come from, all together:
 * - `admin.token` in the config (named "admin.token" in the change log);
 * - `admin.tokenFile`: one token per line, optionally preceded by a name and a space
 *   ("alice 3f9c..."), so that each operator's changes are recorded under their name; blank
 *   lines and lines starting with # are skipped;
 * - the `SWITCHYARD_ADMIN_TOKEN` environment variable (named "SWITCHYARD_ADMIN_TOKEN").
 *
 * Tokens are compared in constant time, over their SHA-256 digests (equal length whatever was
 * sent). Without any token, mutations are refused with a message saying how to enable them.
 */
import { timingSafeEqual } from "node:crypto";
import { ConfigError } from "../config/load.ts";

export const TOKEN_ENV = "SWITCHYARD_ADMIN_TOKEN";
/** Shorter tokens are refused: a guessable token on a listener that may be exposed is no lock. */
export const MIN_TOKEN_LENGTH = 16;

export interface NamedToken {
  name: string;
  digest: Buffer;
}

export interface TokenSources {
  token?: string;
  tokenFile?: string;
}

/** Read every configured token. A missing or bad token file is a config error naming the field. */
export async function resolveTokens(admin: TokenSources | false, env: Record<string, string | undefined> = process.env): Promise<NamedToken[]> {
  const out: NamedToken[] = [];
  const problems: string[] = [];
  const add = (name: string, token: string, where: string) => {
    if (token.length < MIN_TOKEN_LENGTH) problems.push(`${where}: got a token of ${token.length} characters, expected at least ${MIN_TOKEN_LENGTH}`);
    else out.push({ name, digest: digest(token) });
  };
  if (admin !== false && admin.token !== undefined) add("admin.token", admin.token, "admin.token");
  if (admin !== false && admin.tokenFile !== undefined) {
    const file = Bun.file(admin.tokenFile);
    let text: string | undefined;
    try {
      text = await file.text();
    } catch (e) {
      problems.push(`admin.tokenFile: cannot read ${JSON.stringify(admin.tokenFile)} (${(e as { code?: string }).code ?? (e as Error).message}), expected a readable file with one token per line`);
    }
    if (text !== undefined) {
      const before = out.length;
      text.split(/\r?\n/).forEach((raw, i) => {
        const line = raw.trim();
        if (line === "" || line.startsWith("#")) return;
        const parts = line.split(/\s+/);
        if (parts.length > 2) {
          problems.push(`admin.tokenFile: line ${i + 1} has ${parts.length} words, expected "TOKEN" or "NAME TOKEN"`);
          return;
        }
        const [name, token] = parts.length === 2 ? [parts[0]!, parts[1]!] : ["tokenFile", parts[0]!];
        add(name, token, `admin.tokenFile: line ${i + 1}`);
      });
      if (out.length === before && !problems.some((p) => p.startsWith("admin.tokenFile"))) {
        problems.push(`admin.tokenFile: ${JSON.stringify(admin.tokenFile)} holds no token, expected one token per line`);
      }
    }
  }
  const fromEnv = env[TOKEN_ENV];
  if (fromEnv !== undefined && fromEnv !== "") add(TOKEN_ENV, fromEnv, TOKEN_ENV);
  if (problems.length > 0) throw new ConfigError(problems, "admin token");
  return out;
}

export type AuthResult = { ok: true; name: string } | { ok: false; status: 401 | 403; message: string };

/** Checks bearer tokens against the configured set; the set is replaced on a reload. */
export class AdminAuth {
  constructor(private tokens: NamedToken[] = []) {}

  set(tokens: NamedToken[]): void {
    this.tokens = tokens;
  }

  get configured(): boolean {
    return this.tokens.length > 0;
  }

  verify(authorization: string | null | undefined): AuthResult {
    if (this.tokens.length === 0) {
      return {
        ok: false,
        status: 403,
        message: `changes through the admin API are off: no admin token is configured. Set admin.token or admin.tokenFile in the config, or the ${TOKEN_ENV} environment variable, then send "Authorization: Bearer <token>"`,
      };
    }
    // RFC 6750 §2.1: the scheme is case-insensitive, one space, then the token.
    const m = /^bearer +(\S+)\s*$/i.exec(authorization ?? "");
    if (!m) return { ok: false, status: 401, message: 'this change needs a token: send "Authorization: Bearer <token>" (switchyard ctl --token T, or SWITCHYARD_ADMIN_TOKEN)' };
    const d = digest(m[1]!);
    // Every configured token is compared, so the time taken does not say which one matched.
    let name: string | undefined;
    for (const t of this.tokens) if (timingSafeEqual(t.digest, d) && name === undefined) name = t.name;
    if (name === undefined) return { ok: false, status: 401, message: "the token is not valid" };
    return { ok: true, name };
  }
}

function digest(token: string): Buffer {
  return Buffer.from(new Bun.CryptoHasher("sha256").update(token).digest());
}
