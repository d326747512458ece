/**
 * A fast path in front of llhttp for the plain messages that make up nearly all traffic: a
 * head that arrived whole in one read, no Transfer-Encoding, no Upgrade, at most one
 * Content-Length whose body is in the same read. Anything else, or anything the scanner is
 * not sure of, returns undefined and the same bytes go to llhttp, which decides.
 *
 * So the scanner only ever accepts a strict subset of what llhttp accepts (RFC 9112 §2.2,
 * §3, §5: single SP in the start line, tchar names with the colon right after them, no
 * whitespace before the colon, no obs-fold, no bare CR or LF, no control characters in
 * values), and it can never be the more lenient of the two. test/engine/scan.test.ts runs
 * every case through both and checks they agree.
 *
 * Why: llhttp costs about 1 µs per head plus the marshalling of its callbacks, twice per
 * request (request and response); the scan builds the field list directly. Measured on the
 * whole path in docs/performance.md.
 */

import { COMMON_NAMES, canonicalName, lowerName } from "../../http/fields.ts";

/** tchar (RFC 9110 §5.6.2): the bytes a field name or method may hold. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** field-vchar, SP and HTAB (RFC 9110 §5.5), obs-text included as llhttp accepts it. */
const VALUE = new Uint8Array(256);
VALUE[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE[c] = 1;

/**
 * Methods the fast path knows, recognised by their bytes; any other goes to llhttp. The method
 * returned is the literal itself, so the comparisons downstream (HEAD, idempotency, the stats
 * label) stop at the pointer, and no string is made for it.
 */
const METHODS: readonly (readonly [string, Uint8Array])[] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"].map(
  (m) => [m, Buffer.from(m, "latin1")] as const,
);

function knownMethod(b: Uint8Array, from: number, end: number): string | undefined {
  const n = end - from;
  next: for (const [method, bytes] of METHODS) {
    if (bytes.length !== n) continue;
    for (let k = 0; k < n; k++) if (b[from + k] !== bytes[k]) continue next;
    return method;
  }
  return undefined;
}

const CR = 13;
const LF = 10;
const SP = 32;
const COLON = 58;

interface Latin1 {
  latin1Slice(start: number, end: number): string;
}

export interface ScannedHead {
  /** Offset just past the blank line that ends the head. */
  headEnd: number;
  /** Offset just past the body (headEnd + Content-Length). */
  end: number;
  /** name, lower-cased name, value, start, end; repeated (FieldList's layout, spans in the scanned buffer). */
  fields: (string | number)[];
  contentLength: number;
  /** Connection's tokens say close (or, for HTTP/1.0, do not say keep-alive). */
  keepAlive: boolean;
  http10: boolean;
}

export interface ScannedRequest extends ScannedHead {
  method: string;
  target: string;
}

export interface ScannedResponse extends ScannedHead {
  status: number;
  statusText: string;
}

/**
 * Field names common enough to know by their bytes. The scanner hashes a name's bytes,
 * case-folded, as it checks them; a hit whose bytes match (whatever their case) gives the
 * lower-cased name as the very string the code's literals are, without a string made for the
 * name or a cache lookup (lowerName), which resolving and hashing a fresh slice made the
 * costliest step of a scan. Other names take the general way.
 */
interface KnownName {
  lower: string;
  canonical: string;
  lowerBytes: Uint8Array;
  canonicalBytes: Uint8Array;
}
const KNOWN_MASK = 1023;
const KNOWN: (KnownName | undefined)[] = new Array<KnownName | undefined>(KNOWN_MASK + 1).fill(undefined);
for (const lower of COMMON_NAMES) {
  let h = 0;
  for (let k = 0; k < lower.length; k++) h = (h * 31 + (lower.charCodeAt(k) | 0x20)) & KNOWN_MASK;
  // A clash leaves the later name to the general way: correct, only slower.
  if (KNOWN[h] !== undefined) continue;
  const canonical = canonicalName(lower);
  KNOWN[h] = { lower, canonical, lowerBytes: Buffer.from(lower, "latin1"), canonicalBytes: Buffer.from(canonical, "latin1") };
}

const enum Spelt {
  /** Not this name. */
  No,
  /** This name, spelt as `canonical` ("Content-Type"). */
  Canonical,
  /** This name, all lower case. */
  Lower,
  /** This name in some other mix of cases. */
  Other,
}

/** Whether b[start, end) is `k`'s name, and how it is spelt. */
function spelling(b: Uint8Array, start: number, end: number, k: KnownName): Spelt {
  const lower = k.lowerBytes;
  if (end - start !== lower.length) return Spelt.No;
  const canonical = k.canonicalBytes;
  let asCanonical = true;
  let asLower = true;
  for (let j = 0; j < lower.length; j++) {
    const c = b[start + j]!;
    const l = lower[j]!;
    if (c !== l) {
      asLower = false;
      // tchar only: folding A-Z is all there is to compare case-insensitively.
      if (c + 32 !== l || c < 65 || c > 90) return Spelt.No;
    }
    if (c !== canonical[j]) asCanonical = false;
  }
  return asCanonical ? Spelt.Canonical : asLower ? Spelt.Lower : Spelt.Other;
}

/**
 * Field lines from `i` up to and including the blank line. Returns false to defer to llhttp.
 * Fills `out` and returns true on success.
 */
function scanFields(b: Uint8Array, i: number, limit: number, out: ScannedHead, text: string, base: number): boolean {
  const fields = out.fields;
  let connection: string | undefined;
  for (;;) {
    if (i + 1 >= limit) return false;
    if (b[i] === CR) {
      if (b[i + 1] !== LF) return false;
      out.headEnd = i + 2;
      break;
    }
    // Name: one or more tchar, then the colon at once (no whitespace before it, §5.1).
    const nameStart = i;
    let h = 0;
    while (i < limit) {
      const c = b[i]!;
      if (TCHAR[c] !== 1) break;
      h = (h * 31 + (c | 0x20)) & KNOWN_MASK;
      i++;
    }
    if (i === nameStart || i >= limit || b[i] !== COLON) return false;
    const nameEnd = i;
    // A common name is known by its bytes: no string to look up, and often none to make.
    const known = KNOWN[h];
    let name: string;
    let lower: string;
    const spelt = known === undefined ? Spelt.No : spelling(b, nameStart, nameEnd, known);
    if (spelt === Spelt.No) {
      name = text.slice(nameStart - base, nameEnd - base);
      lower = lowerName(name);
    } else {
      lower = known!.lower;
      name = spelt === Spelt.Canonical ? known!.canonical : spelt === Spelt.Lower ? lower : text.slice(nameStart - base, nameEnd - base);
    }
    i++;
    // OWS, value, OWS, CRLF.
    while (i < limit && (b[i] === SP || b[i] === 9)) i++;
    const valueStart = i;
    let valueEnd = i;
    while (i < limit) {
      const c = b[i]!;
      if (VALUE[c] !== 1) break;
      i++;
      if (c !== SP && c !== 9) valueEnd = i;
    }
    if (i + 1 >= limit || b[i] !== CR || b[i + 1] !== LF) return false;
    i += 2;
    const value = text.slice(valueStart - base, valueEnd - base);
    switch (lower) {
      case "content-length": {
        if (out.contentLength !== -1 || value.length === 0 || value.length > 15) return false;
        for (let k = 0; k < value.length; k++) {
          const d = value.charCodeAt(k);
          if (d < 48 || d > 57) return false;
        }
        out.contentLength = Number(value);
        break;
      }
      case "transfer-encoding":
      case "upgrade":
        return false;
      case "connection":
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
    }
    fields.push(name, lower, value, nameStart, valueEnd);
  }
  if (connection !== undefined) {
    const tokens = connection.toLowerCase();
    if (tokens.includes("close")) {
      // Exact token match, not a substring of another token.
      if (tokens.split(",").some((t) => t.trim() === "close")) out.keepAlive = false;
    }
    if (out.http10 && tokens.split(",").some((t) => t.trim() === "keep-alive")) out.keepAlive = true;
  }
  return true;
}

const HEAD_END = Buffer.from("\r\n\r\n");

/**
 * Where the head starting at `from` ends (just past its blank line), or -1 when it does not
 * end within this read and `maxHead` bytes: llhttp's case (a partial head, or a 431).
 */
function headLimit(b: Uint8Array, from: number, maxHead: number): number {
  const at = (b as Buffer).indexOf(HEAD_END, from);
  if (at === -1 || at + 4 - from > maxHead) return -1;
  return at + 4;
}

/** "HTTP/1.1" or "HTTP/1.0" at i: the minor version, or -1. */
function version(b: Uint8Array, i: number): number {
  if (b[i] !== 72 || b[i + 1] !== 84 || b[i + 2] !== 84 || b[i + 3] !== 80 || b[i + 4] !== 47 || b[i + 5] !== 49 || b[i + 6] !== 46) return -1;
  const minor = b[i + 7]!;
  return minor === 49 ? 1 : minor === 48 ? 0 : -1;
}

/**
 * A whole request at `from` in `b`: head, and its Content-Length body in the same buffer.
 * Undefined: let llhttp read these bytes.
 */
export function scanRequest(b: Uint8Array, from: number, maxHead: number): ScannedRequest | undefined {
  const limit = headLimit(b, from, maxHead);
  if (limit === -1) return undefined;
  // One string for the whole head, sliced below: one crossing into native code, not one per field.
  const text = (b as unknown as Latin1).latin1Slice(from, limit);
  let i = from;
  while (i < limit && TCHAR[b[i]!] === 1) i++;
  if (i === from || i >= limit || b[i] !== SP) return undefined;
  const method = knownMethod(b, from, i);
  if (method === undefined) return undefined;
  const targetStart = ++i;
  // origin-form only: other forms (absolute, asterisk) go the careful way.
  if (b[i] !== 47) return undefined;
  while (i < limit) {
    const c = b[i]!;
    if (c <= SP || c >= 0x7f) break;
    i++;
  }
  if (i >= limit || b[i] !== SP) return undefined;
  const target = text.slice(targetStart - from, i - from);
  const minor = version(b, i + 1);
  if (minor === -1 || b[i + 9] !== CR || b[i + 10] !== LF) return undefined;
  const out: ScannedRequest = {
    method, target, headEnd: 0, end: 0, fields: [], contentLength: -1, keepAlive: minor === 1, http10: minor === 0,
  };
  if (!scanFields(b, i + 11, limit, out, text, from)) return undefined;
  out.end = out.headEnd + (out.contentLength > 0 ? out.contentLength : 0);
  return out.end <= b.length ? out : undefined;
}

/**
 * A whole response at `from` in `b`, for a request whose method was `method`: a final status
 * (not 1xx), and a body framed by Content-Length (or none: HEAD, 204, 304) in the same buffer.
 */
export function scanResponse(b: Uint8Array, from: number, maxHead: number, head: boolean): ScannedResponse | undefined {
  const limit = headLimit(b, from, maxHead);
  if (limit === -1) return undefined;
  const text = (b as unknown as Latin1).latin1Slice(from, limit);
  const minor = version(b, from);
  if (minor === -1 || b[from + 8] !== SP) return undefined;
  const d0 = b[from + 9]! - 48;
  const d1 = b[from + 10]! - 48;
  const d2 = b[from + 11]! - 48;
  if (d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || b[from + 12] !== SP) return undefined;
  const status = d0 * 100 + d1 * 10 + d2;
  let i = from + 13;
  const reasonStart = i;
  while (i < limit && VALUE[b[i]!] === 1) i++;
  if (i + 1 >= limit || b[i] !== CR || b[i + 1] !== LF) return undefined;
  const out: ScannedResponse = {
    status, statusText: text.slice(reasonStart - from, i - from), headEnd: 0, end: 0, fields: [], contentLength: -1,
    keepAlive: minor === 1, http10: minor === 0,
  };
  if (!scanFields(b, i + 2, limit, out, text, from)) return undefined;
  const bodiless = head || status === 204 || status === 304;
  // Without a length the body runs to the close (RFC 9112 §6.3): llhttp's case.
  if (!bodiless && out.contentLength === -1) return undefined;
  out.end = out.headEnd + (bodiless ? 0 : out.contentLength);
  return out.end <= b.length ? out : undefined;
}
