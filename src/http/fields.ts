/**
 * Header fields as the forwarding rules see them. `HeaderFields` is the part of the Fetch
 * API's `Headers` that the rules in headers.ts use, so the fetch engine passes its `Headers`
 * as they are and the socket engine passes a `FieldList`: the rules are written once.
 */
export interface HeaderFields {
  /** The field's value; several lines of one name joined with ", " (RFC 9110 §5.3). */
  get(name: string): string | null;
  has(name: string): boolean;
  /** Replace every line of `name` with one. */
  set(name: string, value: string): void;
  delete(name: string): void;
  /** Add a line without touching others of the same name (a Set-Cookie beside the backend's). */
  append(name: string, value: string): void;
  /** Every line, in order. */
  forEach(fn: (value: string, name: string) => void): void;
}

/**
 * Field lines in wire order, names as received (RFC 9110 §5.1: case-insensitive names, and a
 * proxy keeps the order of lines with one name). The socket engine parses into this and
 * writes from it; `Set-Cookie` lines stay apart because nothing ever joins them.
 *
 * Names given to its methods must be lower-case (every caller passes a literal or a name
 * lower-cased once at start-up): a toLowerCase per call cost more than the lookup itself.
 * Kept flat for the hot path: [name, lowerName, value, start, end] per line in one array, so
 * that a request with eight fields is one allocation, and a lookup is a scan that compares
 * lower-cased names.
 *
 * `start` and `end` say where the line ("Name: value", without its CRLF) lies in `source`, the
 * buffer it was read from, for as long as the line is as received; -1 once it is changed or
 * when it was never read (added, or parsed by llhttp). A writer copies such lines as bytes
 * (HeadWriter.fields): the name and value strings are then never read, and reading them is
 * what cost (a slice of the head's text is resolved into a string of its own when first read).
 */
export class FieldList implements HeaderFields {
  /** name, lower-cased name, value, start, end; repeated (STRIDE). */
  private f: (string | number)[];
  /** The bytes the lines' spans point into; undefined when none do. */
  private src: Uint8Array | undefined;

  /** Lines already in this layout, their spans in `source` (the socket engine's scanner builds them so). */
  static fromScan(lines: (string | number)[], source: Uint8Array): FieldList {
    const l = new FieldList();
    l.f = lines;
    l.src = source;
    return l;
  }

  /** `raw` is [name, value, name, value, ...] as llhttp hands it over. */
  constructor(raw: readonly string[] = []) {
    // Pushed, not preallocated: a preallocated array starts with holes, which JSC keeps slow.
    const f: (string | number)[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      f.push(name, lowerName(name), raw[i + 1]!, -1, -1);
    }
    this.f = f;
    this.src = undefined;
  }

  get(name: string): string | null {
    const f = this.f;
    let out: string | null = null;
    for (let i = 1; i < f.length; i += STRIDE) {
      if (f[i] === name) out = out === null ? (f[i + 1] as string) : `${out}, ${f[i + 1]}`;
    }
    return out;
  }

  /** How many lines carry `name` (a request with two Host lines is refused, RFC 9112 §3.2). */
  count(name: string): number {
    const f = this.f;
    let n = 0;
    for (let i = 1; i < f.length; i += STRIDE) if (f[i] === name) n++;
    return n;
  }

  has(name: string): boolean {
    const f = this.f;
    for (let i = 1; i < f.length; i += STRIDE) if (f[i] === name) return true;
    return false;
  }

  set(name: string, value: string): void {
    const f = this.f;
    for (let i = 1; i < f.length; i += STRIDE) {
      if (f[i] === name) {
        f[i + 1] = value;
        // Changed: no longer the bytes that were read.
        f[i + 2] = -1;
        f[i + 3] = -1;
        // A second line of the name is rare: look for one before compacting.
        for (let j = i + STRIDE; j < f.length; j += STRIDE) {
          if (f[j] === name) {
            this.deleteFrom(name, i - 1 + STRIDE);
            break;
          }
        }
        return;
      }
    }
    f.push(name, name, value, -1, -1);
  }

  /** Add a line without touching others of the same name. */
  append(name: string, value: string): void {
    this.f.push(name, lowerName(name), value, -1, -1);
  }

  delete(name: string): void {
    if (this.has(name)) this.deleteFrom(name, 0);
  }

  private deleteFrom(name: string, from: number): void {
    const f = this.f;
    let w = from;
    for (let r = from; r < f.length; r += STRIDE) {
      if (f[r + 1] === name) continue;
      if (w !== r) moveLine(f, r, w);
      w += STRIDE;
    }
    f.length = w;
  }

  /**
   * Remove the hop-by-hop lines in one pass: every name in `always`, and every name the
   * Connection lines list, except Host (see headers.ts stripHopByHop for why).
   */
  dropHopByHop(always: ReadonlySet<string>): void {
    const f = this.f;
    let named: string[] | undefined;
    for (let i = 1; i < f.length; i += STRIDE) {
      if (f[i] !== "connection") continue;
      for (const token of (f[i + 1] as string).split(",")) {
        const name = token.trim().toLowerCase();
        if (name !== "" && name !== "host") (named ??= []).push(name);
      }
    }
    let w = 0;
    for (let r = 0; r < f.length; r += STRIDE) {
      const lower = f[r + 1] as string;
      if (always.has(lower) || (named !== undefined && named.includes(lower))) continue;
      if (w !== r) moveLine(f, r, w);
      w += STRIDE;
    }
    f.length = w;
  }

  /** Each line's value and name as received, in order (as Headers.forEach): for a copy of the fields. */
  forEach(fn: (value: string, name: string) => void): void {
    const f = this.f;
    for (let i = 0; i < f.length; i += STRIDE) fn(f[i + 2] as string, f[i] as string);
  }

  /** The lines as [name, lowerName, value, start, end] (STRIDE), for a writer that encodes them itself. */
  get lines(): readonly (string | number)[] {
    return this.f;
  }

  /** What the lines' spans point into (see the class comment). */
  get source(): Uint8Array | undefined {
    return this.src;
  }

  /** Each line as "Name: value\r\n", in order: the head's field section (RFC 9112 §5). */
  serialize(): string {
    const f = this.f;
    let s = "";
    for (let i = 0; i < f.length; i += STRIDE) s += `${f[i]}: ${f[i + 2]}\r\n`;
    return s;
  }
}

/** Slots per line in FieldList's array: name, lowerName, value, start, end. */
export const STRIDE = 5;

function moveLine(f: (string | number)[], from: number, to: number): void {
  for (let k = 0; k < STRIDE; k++) f[to + k] = f[from + k]!;
}

/**
 * A field name lower-cased, through a small cache: the same few dozen names come in every
 * request, and a cache hit is several times cheaper than toLowerCase. Bounded, so a client
 * sending random names cannot grow it.
 */
const LOWER = new Map<string, string>();

/** The field names seen in most requests and responses, lower-cased (also the scanner's known names). */
export const COMMON_NAMES: readonly string[] = [
  "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection", "content-length",
  "content-type", "transfer-encoding", "cookie", "set-cookie", "date", "server", "cache-control",
  "keep-alive", "te", "trailer", "upgrade", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
  "x-real-ip", "x-request-id", "forwarded", "expect", "authorization", "etag", "last-modified", "location",
  "vary", "content-encoding", "proxy-connection", "proxy-authorization", "proxy-authenticate", "referer", "origin",
];

/** How a common name is usually spelt on the wire: "Content-Type", "TE", "ETag". */
const SPELLING: Record<string, string> = { te: "TE", etag: "ETag", "x-real-ip": "X-Real-IP", "x-request-id": "X-Request-ID" };
/** "content-type" → "Content-Type". */
const titleCase = (lower: string) => lower.replace(/(^|-)([a-z])/g, (m) => m.toUpperCase());
export function canonicalName(lower: string): string {
  return SPELLING[lower] ?? titleCase(lower);
}

/**
 * Seeded with the common names, so that what a lookup returns is the very string the code's
 * literals are ("host" === "host" by identity), and comparisons with them stop at the pointer.
 */
for (const lower of COMMON_NAMES) {
  LOWER.set(lower, lower);
  LOWER.set(titleCase(lower), lower);
  LOWER.set(canonicalName(lower), lower);
}

export function lowerName(name: string): string {
  let lower = LOWER.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (LOWER.size < 1024) LOWER.set(name, lower);
  }
  return lower;
}
