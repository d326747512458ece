/**
 * A route's `forwardAuth` (nginx auth_request, Traefik ForwardAuth): each request first asks an
 * auth service, and goes on only if it answers 2xx.
 *
 * The ask is a GET to `url` carrying the request's chosen fields (`headers`: Authorization and
 * Cookie by default) and what it was, as Traefik sends it: X-Forwarded-Method, -Uri, -Host,
 * -Proto and -For (the last three as the proxy forwards them, trustedProxies applied), and
 * X-Request-Id. A GET because the original body is not sent (nginx's subrequest neither).
 *
 * - 2xx: the request goes on, with the fields `copyHeaders` names set from the answer; a named
 *   field the answer lacks is removed from the request, so that a client cannot send its own
 *   "X-User" past a service that did not set one.
 * - Any other answer goes to the client as it is: status, fields (hop-by-hop and framing ones
 *   aside) and body, the body bounded (MAX_BODY) so a service cannot make us hold much.
 * - No answer within `timeout`, a failure to connect, or a body over the bound: 503
 *   SY_AUTH_UNAVAILABLE. A failure never lets a request through.
 *
 * A late Guard: it waits for the service, off the router.
 */
import { errorAnswer, messageFor, type ErrorAnswer, type GuardCode } from "../errors.ts";
import { HOP_BY_HOP } from "../http/headers.ts";
import { readBounded } from "../http/bounded-body.ts";
import type { Guard, GuardRequest, Refusal } from "./guard.ts";

export interface ForwardAuthOptions {
  readonly url: string;
  /** Fields of the service's 2xx answer set on the request (lower-case). */
  readonly copyHeaders: readonly string[];
  /** Fields of the request sent to the service (lower-case). */
  readonly headers: readonly string[];
  readonly timeoutMs: number;
}

/** The most of a refusal's body relayed to the client; a longer one is the service failing. */
export const MAX_BODY = 64 * 1024;

/** Not relayed from the service's answer: hop-by-hop (RFC 9110 §7.6.1), and framing and coding, which the proxy sets for the body it sends (fetch has decoded it). */
const NOT_RELAYED = new Set<string>([...HOP_BY_HOP, "content-length", "content-encoding"]);

/** The code a relayed answer is counted by. */
function codeOf(status: number): GuardCode {
  if (status === 403) return "SY_FORBIDDEN";
  if (status === 429) return "SY_RATE_LIMITED";
  if (status >= 500) return "SY_AUTH_UNAVAILABLE";
  return "SY_AUTH_REQUIRED";
}

function unavailable(detail: string): Refusal {
  return { code: "SY_AUTH_UNAVAILABLE", answer: errorAnswer("SY_AUTH_UNAVAILABLE", messageFor("SY_AUTH_UNAVAILABLE", detail)) };
}

export class ForwardAuthGuard implements Guard {
  private readonly timedOut: Refusal;
  private readonly unreachable: Refusal;
  private readonly tooLarge: Refusal;

  constructor(private readonly o: ForwardAuthOptions) {
    this.timedOut = unavailable(`the auth service did not answer within ${o.timeoutMs} ms`);
    this.unreachable = unavailable("the auth service cannot be reached");
    this.tooLarge = unavailable(`the auth service's answer is over ${MAX_BODY} bytes`);
  }

  check(req: GuardRequest): Promise<Refusal | undefined> {
    return this.ask(req).catch((e: unknown) => ((e as Error)?.name === "TimeoutError" ? this.timedOut : this.unreachable));
  }

  private async ask(req: GuardRequest): Promise<Refusal | undefined> {
    const h = req.headers;
    const out = new Headers();
    for (const name of this.o.headers) {
      const v = h.get(name);
      if (v !== null) out.set(name, v);
    }
    out.set("x-forwarded-method", req.method);
    out.set("x-forwarded-uri", req.target);
    // Set by the proxy before the guards run (http/headers.ts toUpstreamHeaders), trustedProxies applied.
    out.set("x-forwarded-for", h.get("x-forwarded-for") ?? req.clientIp);
    const host = h.get("x-forwarded-host") ?? h.get("host");
    if (host !== null) out.set("x-forwarded-host", host);
    const proto = h.get("x-forwarded-proto");
    if (proto !== null) out.set("x-forwarded-proto", proto);
    const id = h.get("x-request-id");
    if (id !== null) out.set("x-request-id", id);
    const signal = AbortSignal.timeout(this.o.timeoutMs);
    const res = await fetch(this.o.url, { method: "GET", headers: out, redirect: "manual", signal });
    if (res.status >= 200 && res.status < 300) {
      void res.body?.cancel().catch(() => {});
      for (const name of this.o.copyHeaders) {
        const v = res.headers.get(name);
        if (v !== null) h.set(name, v);
        else h.delete(name);
      }
      return undefined;
    }
    const body = await readBounded(res, MAX_BODY);
    if (body === undefined) return this.tooLarge;
    const headers: Record<string, string> = {};
    res.headers.forEach((value, name) => {
      if (!NOT_RELAYED.has(name)) headers[name] = value;
    });
    // Headers joins Set-Cookie lines with ", ", which is not one cookie; the answer carries one field per name, so the first cookie goes.
    const cookies = res.headers.getSetCookie();
    if (cookies.length > 0) headers["set-cookie"] = cookies[0]!;
    const answer: ErrorAnswer = { status: res.status, headers, body };
    return { code: codeOf(res.status), answer };
  }
}
