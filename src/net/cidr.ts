/**
 * CIDR matching for trustedProxies. Addresses are parsed to 128-bit integers once at start-up;
 * IPv4 is held as IPv4-mapped IPv6 (::ffff:a.b.c.d) so one comparison serves both families.
 */

export interface CidrMatcher {
  (address: string): boolean;
}

const V4_MAPPED = 0xffffn << 32n;

export function parseIp(address: string): bigint | undefined {
  if (address.includes(":")) return parseV6(address);
  const v4 = parseV4(address);
  return v4 === undefined ? undefined : V4_MAPPED | v4;
}

function parseV4(address: string): bigint | undefined {
  const parts = address.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0n;
  for (const p of parts) {
    // No leading zeros: "010" is 8 to inet_aton (octal) but 10 to a naive reader; Go's
    // net.ParseIP refuses it for that reason, and so do we.
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = (n << 8n) | BigInt(p);
  }
  return n;
}

function parseV6(address: string): bigint | undefined {
  let text = address.replace(/%.*$/, "");
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = parseV4(dotted[1]!);
    if (v4 === undefined) return undefined;
    text = text.slice(0, -dotted[1]!.length) + ((v4 >> 16n) & 0xffffn).toString(16) + ":" + (v4 & 0xffffn).toString(16);
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

interface CidrRange {
  net: bigint;
  mask: bigint;
}

/**
 * One entry of trustedProxies: "10.0.0.0/8", "::1/128", "::ffff:10.0.0.0/104" or a bare
 * address. Returns the range, or what is wrong with the entry (text that completes "expected
 * ..."). The config schema and cidrMatcher both use this, so `check` and `serve` agree.
 */
export function parseCidr(entry: string): CidrRange | string {
  const slash = entry.indexOf("/");
  const addr = slash === -1 ? entry : entry.slice(0, slash);
  const bitsText = slash === -1 ? undefined : entry.slice(slash + 1);
  const base = parseIp(addr);
  if (base === undefined) {
    return addr.includes(":")
      ? `an IPv6 address or CIDR like "::1" or "2001:db8::/32"`
      : `an IPv4 address (four numbers 0-255) or CIDR like "127.0.0.1" or "10.0.0.0/8"`;
  }
  const isV4 = !addr.includes(":");
  const max = isV4 ? 32 : 128;
  const family = isV4 ? "IPv4" : "IPv6";
  if (bitsText !== undefined && !/^(0|[1-9]\d{0,2})$/.test(bitsText)) return `a prefix length of 0-${max} after "/" for ${family}`;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (bits > max) return `a prefix length of 0-${max} for ${family}`;
  const prefix = (isV4 ? 96 : 0) + bits;
  const mask = prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
  return { net: base & mask, mask };
}

/** A matcher for a list of CIDRs ("10.0.0.0/8", "::1/128", "127.0.0.1"). Throws on a bad entry. */
export function cidrMatcher(list: readonly string[]): CidrMatcher {
  const ranges = list.map((entry) => {
    const range = parseCidr(entry);
    if (typeof range === "string") throw new Error(`bad CIDR "${entry}": expected ${range}`);
    return range;
  });
  if (ranges.length === 0) return () => false;
  return (address) => {
    const ip = parseIp(address);
    return ip !== undefined && ranges.some((r) => (ip & r.mask) === r.net);
  };
}

/** The address a socket reports, without the IPv4-mapped prefix of a dual-stack socket ("::ffff:127.0.0.1" → "127.0.0.1"). */
export function plainAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
