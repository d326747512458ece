/**
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt, versions 1 and 2): a header a layer-4
 * proxy writes before the first byte of a connection, naming the client's address and port and
 * the address it connected to, so that the next hop sees the client rather than the proxy.
 *
 * ProxyHeaderReader reads it incrementally and strictly: bytes may come one at a time; the
 * first bytes that cannot begin a valid header make it `invalid` at once; it holds at most what
 * a header may be (PROXY_V2_MAX_BYTES) plus the last chunk read. The time bound is the caller's (the listener's header deadline).
 * encodeProxyHeader writes one, for the sending side (pools.*.proxyProtocol).
 */
import { parseIp, plainAddress } from "./cidr.ts";

/** An address and port, as the header names them; IPv4 in dotted form, IPv6 as written. */
export interface ProxyEndpoint {
  readonly address: string;
  readonly port: number;
}

export type ProxyHeaderResult =
  | { readonly state: "need-more" }
  /** A PROXY header naming the connection's real endpoints; `consumed` bytes were the header. */
  | { readonly state: "done"; readonly version: 1 | 2; readonly source: ProxyEndpoint; readonly destination: ProxyEndpoint; readonly consumed: number }
  /**
   * A valid header that names no address to use (v2 LOCAL: the proxy's own health check; v1
   * UNKNOWN; v2 UNSPEC or AF_UNIX): the connection's own endpoints stand (spec §2.1, §2.2).
   */
  | { readonly state: "local"; readonly version: 1 | 2; readonly consumed: number }
  | { readonly state: "invalid"; readonly reason: string };

/** §2.1: "a receiver may reject an incomplete line which does not contain the CRLF sequence in the first 107 characters". */
export const PROXY_V1_MAX_BYTES = 107;
/**
 * Most bytes of a v2 header (16 fixed + addresses + TLVs) accepted. The spec bounds it only by
 * its 16-bit length; the TLVs cloud balancers add (AWS VPC endpoint id, GCP PSC id, Azure link
 * id, SSL details) are tens to a few hundred bytes, so 4 KiB leaves room and bounds memory.
 */
export const PROXY_V2_MAX_BYTES = 4096;

/** §2.2: the 12-byte v2 signature. */
const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a);
const V1_PREFIX = Uint8Array.from(Buffer.from("PROXY ", "latin1"));
const NEED_MORE: ProxyHeaderResult = { state: "need-more" };

export class ProxyHeaderReader {
  private buf = new Uint8Array(64);
  private len = 0;
  private result: ProxyHeaderResult = NEED_MORE;

  /** Bytes held so far (header and whatever came after it in the same chunks). */
  get held(): number {
    return this.len;
  }

  /**
   * Add bytes; the result once it is known (it does not change after that). With done/local,
   * `rest()` is what followed the header: the start of the connection's own data.
   */
  push(chunk: Uint8Array): ProxyHeaderResult {
    if (this.result.state !== "need-more") return this.result;
    // Held: the bytes so far (under a header's most) and this chunk, whose rest past the header
    // is the connection's own data (rest()).
    if (this.len + chunk.length > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + chunk.length));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
    this.result = parseProxyHeader(this.buf.subarray(0, this.len));
    return this.result;
  }

  /** The bytes after the header (empty unless the result is done or local). */
  rest(): Uint8Array {
    const r = this.result;
    if (r.state !== "done" && r.state !== "local") return new Uint8Array(0);
    return this.buf.subarray(r.consumed, this.len);
  }
}

/** Parse a header from the start of `b` (which may hold more after it, or not all of it yet). */
export function parseProxyHeader(b: Uint8Array): ProxyHeaderResult {
  if (b.length === 0) return NEED_MORE;
  if (b[0] === V1_PREFIX[0]) return parseV1(b);
  if (b[0] === V2_SIGNATURE[0]) return parseV2(b);
  return invalid(`the first byte is 0x${hex(b[0]!)}, not the start of a PROXY header ("PROXY " or the v2 signature)`);
}

function parseV1(b: Uint8Array): ProxyHeaderResult {
  const n = Math.min(b.length, V1_PREFIX.length);
  for (let i = 0; i < n; i++) if (b[i] !== V1_PREFIX[i]) return invalid(`not a PROXY v1 header (byte ${i} is 0x${hex(b[i]!)})`);
  // Find the CRLF within the bound; only US-ASCII printable characters and spaces before it.
  // The CRLF ends at byte 107 at the latest, so a CR is looked for up to byte 106.
  const limit = Math.min(b.length, PROXY_V1_MAX_BYTES - 1);
  let end = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const c = b[i]!;
    if (c === 0x0d) {
      if (i + 1 >= b.length) return NEED_MORE;
      if (b[i + 1] !== 0x0a) return invalid("PROXY v1: CR not followed by LF");
      end = i;
      break;
    }
    if (c < 0x20 || c > 0x7e) return invalid(`PROXY v1: byte 0x${hex(c)} at ${i} (expected printable ASCII up to CRLF)`);
  }
  if (end === -1) {
    if (b.length >= PROXY_V1_MAX_BYTES - 1) return invalid(`PROXY v1: no CRLF within ${PROXY_V1_MAX_BYTES} bytes`);
    return NEED_MORE;
  }
  const line = Buffer.from(b.buffer, b.byteOffset + V1_PREFIX.length, end - V1_PREFIX.length).toString("latin1");
  const consumed = end + 2;
  // §2.1: "UNKNOWN": the receiver must ignore anything presented before the CRLF.
  if (line === "UNKNOWN" || line.startsWith("UNKNOWN ")) return { state: "local", version: 1, consumed };
  const parts = line.split(" ");
  if (parts.length !== 5) return invalid(`PROXY v1: expected "TCP4|TCP6 <src> <dst> <sport> <dport>", got ${JSON.stringify(line)}`);
  const [proto, src, dst, sport, dport] = parts as [string, string, string, string, string];
  if (proto !== "TCP4" && proto !== "TCP6") return invalid(`PROXY v1: protocol ${JSON.stringify(proto)}, expected TCP4, TCP6 or UNKNOWN`);
  const v6 = proto === "TCP6";
  for (const a of [src, dst]) {
    if (v6 !== a.includes(":") || parseIp(a) === undefined) return invalid(`PROXY v1: ${JSON.stringify(a)} is not an ${v6 ? "IPv6" : "IPv4"} address (${proto})`);
  }
  const sp = v1Port(sport);
  const dp = v1Port(dport);
  if (sp === undefined || dp === undefined) return invalid(`PROXY v1: port ${JSON.stringify(sp === undefined ? sport : dport)}, expected 0-65535 without leading zeros`);
  return { state: "done", version: 1, source: { address: src, port: sp }, destination: { address: dst, port: dp }, consumed };
}

/** §2.1: ports are decimal 0..65535, "leading zeroes are not permitted". */
function v1Port(s: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parseV2(b: Uint8Array): ProxyHeaderResult {
  const n = Math.min(b.length, V2_SIGNATURE.length);
  for (let i = 0; i < n; i++) if (b[i] !== V2_SIGNATURE[i]) return invalid(`not a PROXY v2 signature (byte ${i} is 0x${hex(b[i]!)})`);
  if (b.length < 13) return NEED_MORE;
  // §2.2: the high nibble is the version (2), the low one the command: LOCAL 0, PROXY 1.
  const verCmd = b[12]!;
  if (verCmd >> 4 !== 2) return invalid(`PROXY v2: version ${verCmd >> 4}, expected 2`);
  const command = verCmd & 0x0f;
  if (command > 1) return invalid(`PROXY v2: command ${command}, expected 0 (LOCAL) or 1 (PROXY)`);
  if (b.length < 14) return NEED_MORE;
  // Family and transport: "Other values are unspecified and must not be emitted ... and must
  // be rejected as invalid by receivers."
  const fam = b[13]!;
  const family = fam >> 4;
  const transport = fam & 0x0f;
  if (family > 3 || transport > 2 || (fam !== 0 && (family === 0 || transport === 0))) return invalid(`PROXY v2: address family and protocol byte 0x${hex(fam)} is not one the spec defines`);
  if (b.length < 16) return NEED_MORE;
  const length = (b[14]! << 8) | b[15]!;
  const total = 16 + length;
  if (total > PROXY_V2_MAX_BYTES) return invalid(`PROXY v2: header of ${total} bytes, more than the ${PROXY_V2_MAX_BYTES} accepted`);
  const need = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0;
  if (length < need) return invalid(`PROXY v2: length ${length} is shorter than the ${need} bytes of its addresses`);
  if (b.length < total) return NEED_MORE;
  // LOCAL: the proxy speaks for itself (health checks); the addresses, if any, are ignored.
  // UNSPEC and AF_UNIX name nothing an IP client address can be: the real endpoints stand.
  // DGRAM over a stream listener likewise names no TCP peer of ours. TLVs are skipped.
  if (command === 0 || family === 0 || family === 3 || transport !== 1) return { state: "local", version: 2, consumed: total };
  const view = new DataView(b.buffer, b.byteOffset, total);
  if (family === 1) {
    return {
      state: "done", version: 2, consumed: total,
      source: { address: v4At(b, 16), port: view.getUint16(24) },
      destination: { address: v4At(b, 20), port: view.getUint16(26) },
    };
  }
  return {
    state: "done", version: 2, consumed: total,
    source: { address: v6At(view, 16), port: view.getUint16(48) },
    destination: { address: v6At(view, 32), port: view.getUint16(50) },
  };
}

function v4At(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** An IPv6 address from 16 bytes; an IPv4-mapped one in dotted form, as sockets report it. */
function v6At(view: DataView, at: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(view.getUint16(at + 2 * i));
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  }
  // RFC 5952 §4.2.3: the longest run of two or more zero groups becomes "::" (the first one on a tie).
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hexes = g.map((x) => x.toString(16));
  if (bestAt === -1) return hexes.join(":");
  return `${hexes.slice(0, bestAt).join(":")}::${hexes.slice(bestAt + bestLen).join(":")}`;
}

function invalid(reason: string): ProxyHeaderResult {
  return { state: "invalid", reason };
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0");
}

// ---- sending ----------------------------------------------------------------------------


/**
 * A header naming `source` (the client) and `destination` (the address it connected to) for a
 * backend. Both sides must be one family: when they are not (an IPv4 client on a listener that
 * reports an IPv6 address), the IPv4 one is written IPv4-mapped (§2.1 asks the same family of
 * both). An address that is not an IP gives a v1 UNKNOWN / v2 LOCAL header, which the receiver
 * takes as "use the connection's own endpoints".
 */
export function encodeProxyHeader(version: 1 | 2, source: ProxyEndpoint, destination: ProxyEndpoint): Uint8Array {
  let src = plainAddress(source.address);
  let dst = plainAddress(destination.address);
  const srcIp = parseIp(src);
  const dstIp = parseIp(dst);
  if (srcIp === undefined || dstIp === undefined) {
    return version === 1 ? Buffer.from("PROXY UNKNOWN\r\n", "latin1") : v2Header(0x20, 0x00, new Uint8Array(0));
  }
  let v6 = src.includes(":") || dst.includes(":");
  if (v6) {
    if (!src.includes(":")) src = `::ffff:${src}`;
    if (!dst.includes(":")) dst = `::ffff:${dst}`;
  }
  if (version === 1) return Buffer.from(`PROXY ${v6 ? "TCP6" : "TCP4"} ${src} ${dst} ${source.port} ${destination.port}\r\n`, "latin1");
  const body = new Uint8Array(v6 ? 36 : 12);
  const view = new DataView(body.buffer);
  const alen = v6 ? 16 : 4;
  writeIp(body, 0, srcIp, alen);
  writeIp(body, alen, dstIp, alen);
  view.setUint16(2 * alen, source.port);
  view.setUint16(2 * alen + 2, destination.port);
  return v2Header(0x21, v6 ? 0x21 : 0x11, body);
}

function writeIp(out: Uint8Array, at: number, ip: bigint, bytes: number): void {
  for (let i = bytes - 1; i >= 0; i--) {
    out[at + i] = Number(ip & 0xffn);
    ip >>= 8n;
  }
}

function v2Header(verCmd: number, fam: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + body.length);
  out.set(V2_SIGNATURE, 0);
  out[12] = verCmd;
  out[13] = fam;
  out[14] = body.length >> 8;
  out[15] = body.length & 0xff;
  out.set(body, 16);
  return out;
}

// ---- accepting --------------------------------------------------------------------------

/** Time a header has from accept when `timeouts.header` is 0 (no limit of its own): never unbounded. */
export const PROXY_HEADER_TIMEOUT_MS = 10_000;

/** A listener with `proxyProtocol: true`: whom to take the header from, and how long it has. */
export interface ProxyAccept {
  /** trustedProxies: a peer outside it is closed before a byte is read. */
  readonly trusted: (address: string) => boolean;
  /** ms from accept for the whole header. */
  readonly timeoutMs: number;
}

/** The ProxyAccept of a listener, or undefined when it takes no header. Made once per config. */
export function proxyAccept(enabled: boolean, trusted: (address: string) => boolean, headerTimeoutMs: number): ProxyAccept | undefined {
  return enabled ? { trusted, timeoutMs: headerTimeoutMs > 0 ? headerTimeoutMs : PROXY_HEADER_TIMEOUT_MS } : undefined;
}
