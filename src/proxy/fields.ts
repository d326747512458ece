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
}

/**
 * Field lines in wire order, names as received (RFC 9110 §5.1: case-insensitive names, and a
 * proxy keeps the order of lines with one name). The socket engine parses into this and
 * writes from it; `Set-Cookie` lines stay apart because nothing ever joins them.
 *
 * Names given to its methods must be lower-case (every caller passes a literal or a name
 * lower-cased once at start-up): a toLowerCase per call cost more than the lookup itself.
 * Kept flat for the hot path: [name, lowerName, value] triples in one array, so that a request
 * with eight fields is one allocation, and a lookup is a scan that compares lower-cased names.
 */
export class FieldList implements HeaderFields {
  /** name, lower-cased name, value; repeated. */
  private f: string[];

  /** Lines already in this layout (the socket engine's scanner builds them so). */
  static fromTriples(triples: string[]): FieldList {
    const l = new FieldList();
    l.f = triples;
    return l;
  }

  /** `raw` is [name, value, name, value, ...] as llhttp hands it over. */
  constructor(raw: readonly string[] = []) {
    // Pushed, not preallocated: a preallocated array starts with holes, which JSC keeps slow.
    const f: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      f.push(name, lowerName(name), raw[i + 1]!);
    }
    this.f = f;
  }

  get(name: string): string | null {
    const f = this.f;
    let out: string | null = null;
    for (let i = 1; i < f.length; i += 3) {
      if (f[i] === name) out = out === null ? f[i + 1]! : `${out}, ${f[i + 1]}`;
    }
    return out;
  }

  /** How many lines carry `name` (a request with two Host lines is refused, RFC 9112 §3.2). */
  count(name: string): number {
    const f = this.f;
    let n = 0;
    for (let i = 1; i < f.length; i += 3) if (f[i] === name) n++;
    return n;
  }

  has(name: string): boolean {
    const f = this.f;
    for (let i = 1; i < f.length; i += 3) if (f[i] === name) return true;
    return false;
  }

  set(name: string, value: string): void {
    const f = this.f;
    for (let i = 1; i < f.length; i += 3) {
      if (f[i] === name) {
        f[i + 1] = value;
        // A second line of the name is rare: look for one before compacting.
        for (let j = i + 3; j < f.length; j += 3) {
          if (f[j] === name) {
            this.deleteFrom(name, i + 2);
            break;
          }
        }
        return;
      }
    }
    f.push(name, name, value);
  }

  /** Add a line without touching others of the same name. */
  append(name: string, value: string): void {
    this.f.push(name, lowerName(name), value);
  }

  delete(name: string): void {
    if (this.has(name)) this.deleteFrom(name, 0);
  }

  private deleteFrom(name: string, from: number): void {
    const f = this.f;
    let w = from;
    for (let r = from; r < f.length; r += 3) {
      if (f[r + 1] === name) continue;
      if (w !== r) {
        f[w] = f[r]!;
        f[w + 1] = f[r + 1]!;
        f[w + 2] = f[r + 2]!;
      }
      w += 3;
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
    for (let i = 1; i < f.length; i += 3) {
      if (f[i] !== "connection") continue;
      for (const token of f[i + 1]!.split(",")) {
        const name = token.trim().toLowerCase();
        if (name !== "" && name !== "host") (named ??= []).push(name);
      }
    }
    let w = 0;
    for (let r = 0; r < f.length; r += 3) {
      const lower = f[r + 1]!;
      if (always.has(lower) || (named !== undefined && named.includes(lower))) continue;
      if (w !== r) {
        f[w] = f[r]!;
        f[w + 1] = lower;
        f[w + 2] = f[r + 2]!;
      }
      w += 3;
    }
    f.length = w;
  }

  /** The lines as [name, lowerName, value] triples, for a writer that encodes them itself. */
  get lines(): readonly string[] {
    return this.f;
  }

  /** Each line as "Name: value\r\n", in order: the head's field section (RFC 9112 §5). */
  serialize(): string {
    const f = this.f;
    let s = "";
    for (let i = 0; i < f.length; i += 3) s += `${f[i]}: ${f[i + 2]}\r\n`;
    return s;
  }

}

/**
 * A field name lower-cased, through a small cache: the same few dozen names come in every
 * request, and a cache hit is several times cheaper than toLowerCase. Bounded, so a client
 * sending random names cannot grow it.
 */
const LOWER = new Map<string, string>();
/**
 * Seeded with the common names, so that what a lookup returns is the very string the code's
 * literals are ("host" === "host" by identity), and comparisons with them stop at the pointer.
 */
for (const lower of [
  "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection", "content-length",
  "content-type", "transfer-encoding", "cookie", "set-cookie", "date", "server", "cache-control",
  "keep-alive", "te", "trailer", "upgrade", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
  "x-real-ip", "x-request-id", "forwarded", "expect", "authorization", "etag", "last-modified", "location",
  "vary", "content-encoding", "proxy-connection", "proxy-authorization", "proxy-authenticate", "referer", "origin",
]) {
  LOWER.set(lower, lower);
  LOWER.set(lower.replace(/(^|-)([a-z])/g, (m) => m.toUpperCase()), lower);
}
LOWER.set("TE", "te");
LOWER.set("ETag", "etag");
LOWER.set("X-Real-IP", "x-real-ip");
LOWER.set("X-Request-ID", "x-request-id");

export function lowerName(name: string): string {
  let lower = LOWER.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (LOWER.size < 1024) LOWER.set(name, lower);
  }
  return lower;
}
