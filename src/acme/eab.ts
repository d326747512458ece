/**
 * External Account Binding (RFC 8555 §7.3.4): the key ID and HMAC key a CA gives to tie an
 * ACME account to an account of its own. The key is given in the config (`hmacKey`) or kept in
 * a file (`hmacKeyFile`), so that it is not in the config, which `switchyard check` and the
 * admin `/config` show.
 */
import { EAB_HMAC_KEY, EAB_HMAC_KEY_EXPECTED } from "../config/schema.ts";
import { readText } from "../guard/users-file.ts";

export interface EabConfig {
  readonly kid: string;
  readonly hmacKey?: string;
  readonly hmacKeyFile?: string;
}

/** The binding as acme-client takes it, or the problem with its file (the schema checked `hmacKey`). */
export function resolveEab(eab: EabConfig): { binding?: { kid: string; hmacKey: string }; problem?: string } {
  if (eab.hmacKey !== undefined) return { binding: { kid: eab.kid, hmacKey: eab.hmacKey } };
  const { text, problem } = readText(eab.hmacKeyFile!);
  if (text === undefined) return { problem };
  const key = text.split("\n")[0]!.trim();
  // The key itself is never said: a near miss is still a secret.
  if (!EAB_HMAC_KEY.test(key)) return { problem: `${JSON.stringify(eab.hmacKeyFile)}: ${EAB_HMAC_KEY_EXPECTED} on its first line, got ${key.length} characters that are not one` };
  return { binding: { kid: eab.kid, hmacKey: key } };
}
