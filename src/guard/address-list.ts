/**
 * A route's `allow` and `deny` lists (nginx's allow/deny, Traefik's IPAllowList): CIDRs matched
 * against the client's address as the request carries it (the peer's, or the one a PROXY
 * protocol header names when the listener takes it from a trusted proxy).
 *
 * Deny wins over allow: an address in both is refused. With `allow` given, an address in none
 * of its entries is refused; with only `deny`, every other address passes. Decided from the
 * head alone, so it is a HeadGuard: the socket engine refuses before reading the body.
 */
import { cidrMatcher, type CidrMatcher } from "../net/cidr.ts";
import { errorAnswer, messageFor } from "../errors.ts";
import type { GuardRequest, HeadGuard, Refusal } from "./guard.ts";

export interface AddressListConfig {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
}

/** The one answer, made once per config; the loop copies its headers per request. */
const FORBIDDEN: Refusal = { code: "SY_FORBIDDEN", answer: errorAnswer("SY_FORBIDDEN", messageFor("SY_FORBIDDEN")) };

export class AddressListGuard implements HeadGuard {
  private readonly allowed: CidrMatcher | undefined;
  private readonly denied: CidrMatcher | undefined;

  constructor(c: AddressListConfig) {
    this.allowed = c.allow !== undefined ? cidrMatcher(c.allow) : undefined;
    this.denied = c.deny !== undefined && c.deny.length > 0 ? cidrMatcher(c.deny) : undefined;
  }

  /** Whether the route has a list at all (no guard is built otherwise). */
  static wanted(c: AddressListConfig): boolean {
    return c.allow !== undefined || (c.deny !== undefined && c.deny.length > 0);
  }

  check(req: GuardRequest): Refusal | undefined {
    const ip = req.clientIp;
    if (this.denied !== undefined && this.denied(ip)) return FORBIDDEN;
    if (this.allowed !== undefined && !this.allowed(ip)) return FORBIDDEN;
    return undefined;
  }
}
