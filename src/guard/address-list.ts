/**
 * A route's `allow` and `deny` lists (nginx's allow/deny, Traefik's IPAllowList): CIDRs matched
 * against the client's address as the request carries it (the peer's, or the one a PROXY
 * protocol header names when the listener takes it from a trusted proxy).
 *
 * Deny wins over allow: an address in both is refused. With `allow` given, an address in none
 * of its entries is refused; with only `deny`, every other address passes. Decided from the
 * head alone, so it is a HeadGuard: the socket engine refuses before reading the body.
 */
import { parseCidr, parseIp } from "../net/cidr.ts";
import { errorAnswer, messageFor } from "../errors.ts";
import type { GuardRequest, HeadGuard, Refusal } from "./guard.ts";

export interface AddressListConfig {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
}

/** The one answer, made once per config; the loop copies its headers per request. */
const FORBIDDEN: Refusal = { code: "SY_FORBIDDEN", answer: errorAnswer("SY_FORBIDDEN", messageFor("SY_FORBIDDEN")) };

type Range = { net: bigint; mask: bigint };

/** The ranges of a list (the schema has checked every entry; a bad one throws). */
function rangesOf(list: readonly string[]): Range[] {
  return list.map((entry) => {
    const r = parseCidr(entry);
    if (typeof r === "string") throw new Error(`bad CIDR "${entry}": expected ${r}`);
    return r;
  });
}

const inAny = (ip: bigint, ranges: readonly Range[]) => {
  for (let i = 0; i < ranges.length; i++) if ((ip & ranges[i]!.mask) === ranges[i]!.net) return true;
  return false;
};

export class AddressListGuard implements HeadGuard {
  private readonly allowed: Range[] | undefined;
  private readonly denied: Range[];

  constructor(c: AddressListConfig) {
    this.allowed = c.allow !== undefined ? rangesOf(c.allow) : undefined;
    this.denied = rangesOf(c.deny ?? []);
  }

  /** Whether the route has a list at all (no guard is built otherwise). */
  static wanted(c: AddressListConfig): boolean {
    return c.allow !== undefined || (c.deny !== undefined && c.deny.length > 0);
  }

  check(req: GuardRequest): Refusal | undefined {
    // Parsed once for both lists (the net/cidr.ts form: IPv4 as IPv4-mapped IPv6). An address
    // that does not parse cannot be shown to be outside `deny`: refused (fail closed).
    const ip = parseIp(req.clientIp);
    if (ip === undefined) return FORBIDDEN;
    if (inAny(ip, this.denied)) return FORBIDDEN;
    if (this.allowed !== undefined && !inAny(ip, this.allowed)) return FORBIDDEN;
    return undefined;
  }
}
