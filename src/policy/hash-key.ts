/**
 * The request's affinity key for consistent hashing, as configured by `hash.key`:
 *   "header:NAME"  the value of request header NAME (X-User, Authorization ...)
 *   "cookie:NAME"  the value of cookie NAME
 *   "ip"           the client address (after trustedProxies: the peer, not X-Forwarded-For)
 *   "path"         the request path, without the query string
 * The extractor is built once from the config; per request it reads one value. An absent or
 * empty header or cookie gives no key, and the policy spreads such requests evenly instead.
 */
import { cookieValue } from "../http/cookie.ts";
import type { HeaderFields } from "../http/fields.ts";

/** Header and cookie names: an RFC 9110 §5.6.2 token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export const HASH_KEY_PATTERN = /^(header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+|ip|path)$/;
export const HASH_KEY_HINT = '"header:NAME", "cookie:NAME", "ip" or "path"';

/** headers, the request target as received (path and query), the client's address. */
export type KeyExtractor = (headers: Pick<HeaderFields, "get">, target: string, clientIp: string) => string | undefined;

export function hashKeyExtractor(spec: string): KeyExtractor {
  if (spec === "ip") return (_h, _t, ip) => ip || undefined;
  if (spec === "path") {
    return (_h, target) => {
      const q = target.indexOf("?");
      return q === -1 ? target : target.slice(0, q);
    };
  }
  const colon = spec.indexOf(":");
  const kind = spec.slice(0, colon);
  const name = spec.slice(colon + 1);
  if (colon > 0 && TOKEN.test(name)) {
    if (kind === "header") {
      const lower = name.toLowerCase();
      return (h) => h.get(lower) || undefined;
    }
    if (kind === "cookie") return (h) => cookieValue(h.get("cookie"), name) || undefined;
  }
  throw new Error(`invalid hash key ${JSON.stringify(spec)}: expected ${HASH_KEY_HINT}`);
}
