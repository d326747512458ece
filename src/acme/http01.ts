/**
 * HTTP-01 answers (RFC 8555 §8.3): the CA asks http://NAME/.well-known/acme-challenge/TOKEN on
 * port 80 and expects the key authorization as the body. Answered before routing, on the
 * httpRedirect listeners and the plain-HTTP proxy listeners, from the store's files: the
 * process that ordered may be another worker or another replica than the one the CA reaches.
 * Any other request, and a token with nothing pending, goes on as before.
 */
import { readFileSync } from "node:fs";
import { http01File, TOKEN } from "./paths.ts";

export const HTTP01_PREFIX = "/.well-known/acme-challenge/";

/** The key authorization for a request path, when it asks for a pending token; undefined otherwise. */
export function http01Answer(storage: string | undefined, path: string): string | undefined {
  if (storage === undefined || !path.startsWith(HTTP01_PREFIX)) return undefined;
  const token = path.slice(HTTP01_PREFIX.length);
  if (!TOKEN.test(token)) return undefined;
  try {
    return readFileSync(http01File(storage, token), "utf8");
  } catch {
    return undefined;
  }
}

/** The answer as the CA expects it (§8.3: the key authorization, as application/octet-stream is allowed; text/plain is what CAs read). */
export function http01Response(keyAuthorization: string): Response {
  return new Response(keyAuthorization, { status: 200, headers: { "content-type": "text/plain" } });
}
