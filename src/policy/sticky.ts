/**
 * Sticky sessions by cookie, beside any policy: the first response sets a cookie naming the
 * backend that answered; later requests carrying it go to that backend while it is available
 * (Pool.pick's `preferred`), and to a fresh choice by the policy, with a new cookie, when not.
 *
 * The cookie names the backend opaquely: HMAC-SHA256(secret, backend name), 128 bits in
 * base64url. It reveals neither the address nor the name, and a client cannot name a backend
 * it was never sent to unless it knows the secret. The value depends only on the secret and
 * the name, so:
 * - replicas of Switchyard with the same config honour each other's cookies, and a restart
 *   keeps every session where it was;
 * - without `sticky.secret`, a fixed built-in secret is used: still opaque, but someone who
 *   knows (or guesses) the backend names could compute the cookies. Set a secret to rule that
 *   out; changing it (or renaming a backend) starts sessions afresh, once.
 * A per-process random secret would have been simpler and unguessable, but behind a layer-4
 * balancer every replica would reject the others' cookies and re-pin the session on each hop.
 */
import type { Backend } from "../pool/backend.ts";
import type { Pool } from "../pool/pool.ts";
import { cookieValue } from "../http/cookie.ts";
import type { HeaderFields } from "../http/fields.ts";

/** Used when the config gives no secret; see above for what that means. */
const BUILT_IN_SECRET = "switchyard sticky sessions";

export interface StickyOptions {
  cookie: string;
  secret?: string;
}

export class StickySessions {
  readonly cookie: string;
  private readonly secret: string;
  /** The membership the tables below were built for (the pool replaces its array on change). */
  private members: readonly Backend[] | undefined;
  private byToken = new Map<string, Backend>();
  /** Set-Cookie values per backend: [over plain HTTP, over HTTPS (with Secure)]. */
  private setCookies = new Map<Backend, [string, string]>();

  constructor(
    private readonly pool: Pool,
    opts: StickyOptions,
  ) {
    this.cookie = opts.cookie;
    this.secret = opts.secret ?? BUILT_IN_SECRET;
  }

  /** The backend the request's cookie names, if it names a current member. */
  pinned(headers: Pick<HeaderFields, "get">): Backend | undefined {
    const token = cookieValue(headers.get("cookie"), this.cookie);
    if (token === undefined) return undefined;
    this.sync();
    return this.byToken.get(token);
  }

  /**
   * The Set-Cookie value naming `backend` (built once per backend, not per response); with
   * Secure when the client came over HTTPS, so that the browser never sends it in the clear.
   */
  setCookie(backend: Backend, https = false): string {
    this.sync();
    const pair = this.setCookies.get(backend) ?? this.build(backend);
    return pair[https ? 1 : 0];
  }

  /** The cookie value for `backend`. */
  token(backend: Backend): string {
    const h = new Bun.CryptoHasher("sha256", this.secret);
    h.update(backend.name);
    return h.digest("base64url").slice(0, 22);
  }

  /** Rebuild the tables when the pool's membership changed: hashing happens there, not per request. */
  private sync(): void {
    const members = this.pool.backends;
    if (members === this.members) return;
    this.members = members;
    this.byToken = new Map();
    this.setCookies = new Map();
    for (const b of members) {
      this.byToken.set(this.token(b), b);
      this.setCookies.set(b, this.build(b));
    }
  }

  private build(backend: Backend): [string, string] {
    // A session cookie (no Max-Age): affinity lasts as long as the browser session. HttpOnly:
    // scripts have no use for it. SameSite=Lax: sent on top-level navigation, as a session
    // cookie should be.
    const plain = `${this.cookie}=${this.token(backend)}; Path=/; HttpOnly; SameSite=Lax`;
    return [plain, `${plain}; Secure`];
  }
}
