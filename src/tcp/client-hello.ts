/**
 * Reads the server name out of a TLS ClientHello without terminating TLS (HAProxy's
 * `req.ssl_sni`), from bytes that arrive in pieces: TCP mode uses it to choose a pool by name
 * and then passes every byte on untouched.
 *
 * Strict: whatever does not parse as one ClientHello (TLS 1.0 to 1.3 framing) is "invalid",
 * with a reason; a first byte that cannot start a TLS handshake record is "not-tls". Bounded:
 * the record headers and fragments read until the ClientHello is complete may not pass
 * `maxBytes`; the one buffer allocated is the handshake message itself, sized from its declared
 * length once that is known to fit.
 */

/** Most bytes (record headers included) read to find a ClientHello's end, unless told otherwise. */
export const CLIENT_HELLO_MAX_BYTES = 16 * 1024;

/** Time a client has, from accept, to send its whole ClientHello, unless told otherwise (as `timeouts.header`). */
export const CLIENT_HELLO_TIMEOUT_MS = 10_000;

/** What the reader knows after the bytes pushed so far; every state but need-more is final. */
export type ClientHelloResult =
  | { readonly state: "need-more" }
  /**
   * A whole ClientHello: its host_name (lower-case, no trailing dot), or undefined when it sent
   * none; the protocols it offers by ALPN (RFC 7301), in its order, or undefined without the extension.
   */
  | { readonly state: "done"; readonly serverName: string | undefined; readonly alpn?: readonly string[] }
  | { readonly state: "invalid"; readonly reason: string }
  /** The first bytes cannot start a TLS handshake record (plain HTTP, SSLv2, ...). */
  | { readonly state: "not-tls" };

const NEED_MORE: ClientHelloResult = Object.freeze({ state: "need-more" });
const NOT_TLS: ClientHelloResult = Object.freeze({ state: "not-tls" });

/** RFC 8446 §5.1 ContentType handshake. */
const CONTENT_HANDSHAKE = 22;
/** RFC 8446 §4 HandshakeType client_hello. */
const HANDSHAKE_CLIENT_HELLO = 1;
const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
/** RFC 8446 §5.1: a record's length MUST NOT exceed 2^14 bytes. */
const MAX_RECORD_FRAGMENT = 1 << 14;
/**
 * RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2: version 2, random 32, session id length 1, cipher
 * suites length 2 with at least one suite 2, compression methods length 1 with at least one 1.
 */
const MIN_CLIENT_HELLO_BODY = 2 + 32 + 1 + 2 + 2 + 1 + 1;
/** RFC 6066 §3 extension type server_name. */
const EXT_SERVER_NAME = 0;
/** RFC 7301 §3.1 extension type application_layer_protocol_negotiation. */
const EXT_ALPN = 16;
/** RFC 6066 §3 NameType host_name. */
const NAME_TYPE_HOST = 0;

type Phase = "record-header" | "fragment" | "final";

export class ClientHelloReader {
  private phase: Phase = "record-header";
  private result: ClientHelloResult = NEED_MORE;
  /** Record header bytes seen so far, then the header itself. */
  private readonly header = new Uint8Array(RECORD_HEADER);
  private headerFill = 0;
  /** Fragment bytes of the current record not read yet. */
  private recordLeft = 0;
  /** The handshake message header (type, uint24 length), then the message body once sized. */
  private readonly hsHeader = new Uint8Array(HANDSHAKE_HEADER);
  private hsHeaderFill = 0;
  private body: Uint8Array | undefined;
  private bodyFill = 0;
  private records = 0;
  private total = 0;

  constructor(private readonly maxBytes: number = CLIENT_HELLO_MAX_BYTES) {}

  /** Bytes of the input taken so far (up to the ClientHello's end; what follows it is not read). */
  get consumed(): number {
    return this.total;
  }

  /** The state after the bytes pushed so far; once final, more bytes change nothing. */
  get state(): ClientHelloResult {
    return this.result;
  }

  /** Feed the next bytes the client sent. */
  push(chunk: Uint8Array): ClientHelloResult {
    let at = 0;
    while (this.phase !== "final" && at < chunk.length) {
      const room = Math.min(chunk.length - at, this.maxBytes - this.total);
      // A byte more is coming and the cap is reached: the ClientHello cannot end within it.
      if (room === 0) {
        this.total++;
        return this.fail(`no complete ClientHello within ${this.maxBytes} bytes`);
      }
      if (this.phase === "record-header") {
        const n = Math.min(RECORD_HEADER - this.headerFill, room);
        this.header.set(chunk.subarray(at, at + n), this.headerFill);
        this.headerFill += n;
        at += n;
        this.total += n;
        // Judged byte by byte so that a plain-text client is told apart from its first byte.
        if (this.records === 0 && !this.looksLikeTls()) return this.finish(NOT_TLS);
        if (this.headerFill < RECORD_HEADER) continue;
        const bad = this.checkRecordHeader();
        if (bad !== undefined) return this.fail(bad);
      } else {
        const n = Math.min(this.recordLeft, room);
        this.total += n;
        const r = this.takeHandshake(chunk.subarray(at, at + n));
        at += n;
        this.recordLeft -= n;
        if (r !== undefined) return this.finish(r);
        if (this.recordLeft === 0) this.phase = "record-header";
      }
    }
    return this.result;
  }

  /** RFC 8446 §5.1: ContentType handshake, then legacy_record_version 3.x. */
  private looksLikeTls(): boolean {
    if (this.header[0] !== CONTENT_HANDSHAKE) return false;
    return this.headerFill < 2 || this.header[1] === 3;
  }

  private checkRecordHeader(): string | undefined {
    const h = this.header;
    // RFC 8446 §5.1: handshake messages MUST NOT be interleaved with other record types.
    if (h[0] !== CONTENT_HANDSHAKE) return `record ${this.records + 1} has content type ${h[0]}, expected handshake (22) until the ClientHello ends`;
    if (h[1] !== 3) return `record ${this.records + 1} has version ${h[1]}.${h[2]}, expected 3.x`;
    const length = (h[3]! << 8) | h[4]!;
    // RFC 8446 §5.1: no zero-length handshake fragments, none over 2^14 bytes.
    if (length === 0) return `record ${this.records + 1} is empty`;
    if (length > MAX_RECORD_FRAGMENT) return `record ${this.records + 1} is ${length} bytes, more than 2^14`;
    this.records++;
    this.recordLeft = length;
    this.headerFill = 0;
    this.phase = "fragment";
    return undefined;
  }

  /** Fragment bytes of the handshake stream; a final result once the ClientHello is whole or wrong. */
  private takeHandshake(bytes: Uint8Array): ClientHelloResult | undefined {
    let at = 0;
    if (this.body === undefined) {
      const n = Math.min(HANDSHAKE_HEADER - this.hsHeaderFill, bytes.length);
      this.hsHeader.set(bytes.subarray(0, n), this.hsHeaderFill);
      this.hsHeaderFill += n;
      at = n;
      if (this.hsHeaderFill < HANDSHAKE_HEADER) return undefined;
      const h = this.hsHeader;
      if (h[0] !== HANDSHAKE_CLIENT_HELLO) return invalid(`first handshake message has type ${h[0]}, expected ClientHello (1)`);
      const length = (h[1]! << 16) | (h[2]! << 8) | h[3]!;
      if (length < MIN_CLIENT_HELLO_BODY) return invalid(`ClientHello of ${length} bytes is shorter than its fixed fields`);
      // One record header at least came before it: refuse now what can never fit the cap.
      if (RECORD_HEADER + HANDSHAKE_HEADER + length > this.maxBytes) return invalid(`ClientHello of ${length} bytes exceeds the ${this.maxBytes}-byte limit`);
      this.body = new Uint8Array(length);
    }
    const body = this.body;
    const n = Math.min(body.length - this.bodyFill, bytes.length - at);
    body.set(bytes.subarray(at, at + n), this.bodyFill);
    this.bodyFill += n;
    if (this.bodyFill < body.length) return undefined;
    return parseClientHello(body);
  }

  private fail(reason: string): ClientHelloResult {
    return this.finish(invalid(reason));
  }

  private finish(r: ClientHelloResult): ClientHelloResult {
    this.phase = "final";
    this.result = r;
    this.body = undefined;
    return r;
  }
}

function invalid(reason: string): ClientHelloResult {
  return { state: "invalid", reason };
}

/** Parse a whole ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for TLS 1.2 and older). */
export function parseClientHello(b: Uint8Array): ClientHelloResult {
  const end = b.length;
  // legacy_version: 0x0303 from TLS 1.2 and 1.3 clients; 3.1 / 3.2 from older ones.
  if (b[0] !== 3) return invalid(`ClientHello version ${b[0]}.${b[1]}, expected 3.x`);
  let at = 2 + 32;
  const sessionId = b[at]!;
  at += 1;
  // opaque legacy_session_id<0..32>
  if (sessionId > 32) return invalid(`session id of ${sessionId} bytes, at most 32 allowed`);
  at += sessionId;
  if (at + 2 > end) return invalid("ClientHello ends inside its session id");
  // CipherSuite cipher_suites<2..2^16-2>: two bytes each.
  const suites = u16(b, at);
  at += 2;
  if (suites < 2 || suites % 2 !== 0) return invalid(`cipher suites length ${suites}, expected an even number of at least 2`);
  at += suites;
  if (at + 1 > end) return invalid("ClientHello ends inside its cipher suites");
  // opaque legacy_compression_methods<1..2^8-1>
  const compression = b[at]!;
  at += 1;
  if (compression < 1) return invalid("no compression methods (at least null is required)");
  at += compression;
  if (at > end) return invalid("ClientHello ends inside its compression methods");
  // RFC 5246 §7.4.1.2: a TLS 1.2 (or older) client may send no extensions at all.
  if (at === end) return { state: "done", serverName: undefined };
  if (at + 2 > end) return invalid("ClientHello ends inside its extensions length");
  const extensionsLength = u16(b, at);
  at += 2;
  if (at + extensionsLength !== end) return invalid(`extensions length ${extensionsLength} does not match the ${end - at} bytes left in the ClientHello`);
  const seen = new Set<number>();
  let serverName: string | undefined;
  let alpn: string[] | undefined;
  while (at < end) {
    if (at + 4 > end) return invalid("an extension header is cut short");
    const type = u16(b, at);
    const length = u16(b, at + 2);
    at += 4;
    if (at + length > end) return invalid(`extension ${type} of ${length} bytes runs past the extensions`);
    // RFC 8446 §4.2: no more than one extension of the same type in an extension block.
    if (seen.has(type)) return invalid(`extension ${type} appears twice`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      const r = parseServerName(b.subarray(at, at + length));
      if (typeof r !== "string") return r;
      serverName = r;
    } else if (type === EXT_ALPN) {
      const r = parseAlpn(b.subarray(at, at + length));
      if (!Array.isArray(r)) return r as ClientHelloResult;
      alpn = r;
    }
    at += length;
  }
  return alpn === undefined ? { state: "done", serverName } : { state: "done", serverName, alpn };
}

/** RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, one host_name. */
function parseServerName(d: Uint8Array): string | ClientHelloResult {
  if (d.length < 2) return invalid("server_name extension too short");
  const listLength = u16(d, 0);
  if (listLength + 2 !== d.length) return invalid(`server_name list length ${listLength} does not match its extension (${d.length - 2} bytes)`);
  if (listLength === 0) return invalid("server_name list is empty");
  let at = 2;
  let name: string | undefined;
  while (at < d.length) {
    if (at + 3 > d.length) return invalid("server_name entry cut short");
    const type = d[at]!;
    const length = u16(d, at + 1);
    at += 3;
    // Only host_name is defined, and the encoding of any other type is unknown: an entry we cannot measure.
    if (type !== NAME_TYPE_HOST) return invalid(`server_name entry of type ${type}, only host_name (0) is defined`);
    // RFC 6066 §3: the list MUST NOT hold more than one name of the same type.
    if (name !== undefined) return invalid("server_name holds more than one host_name");
    // opaque HostName<1..2^16-1>
    if (length === 0) return invalid("empty host_name");
    if (at + length > d.length) return invalid(`host_name of ${length} bytes runs past its list`);
    const r = hostName(d.subarray(at, at + length));
    if (r.reason !== undefined) return invalid(r.reason);
    name = r.name;
    at += length;
  }
  return name!;
}

/**
 * RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, each ProtocolName
 * opaque<1..2^8-1> ("Empty strings MUST NOT be included"). Names are read as Latin-1: they are
 * compared with the server's own, byte for byte.
 */
function parseAlpn(d: Uint8Array): string[] | ClientHelloResult {
  if (d.length < 2) return invalid("ALPN extension too short");
  const listLength = u16(d, 0);
  if (listLength + 2 !== d.length) return invalid(`ALPN list length ${listLength} does not match its extension (${d.length - 2} bytes)`);
  if (listLength < 2) return invalid("ALPN list is empty");
  const names: string[] = [];
  let at = 2;
  while (at < d.length) {
    const length = d[at]!;
    at += 1;
    if (length === 0) return invalid("ALPN list holds an empty protocol name");
    if (at + length > d.length) return invalid(`ALPN protocol name of ${length} bytes runs past its list`);
    let name = "";
    for (let i = at; i < at + length; i++) name += String.fromCharCode(d[i]!);
    names.push(name);
    at += length;
  }
  return names;
}

/**
 * A host_name as a DNS name (RFC 6066 §3: ASCII, no trailing dot, no IP literal; RFC 1035
 * §2.3.4 / RFC 1123 §2.1 lengths and characters): lower-cased, a trailing dot tolerated and
 * removed. Underscores are let through, as many internal names carry them.
 */
function hostName(raw: Uint8Array): { name: string; reason?: undefined } | { name?: undefined; reason: string } {
  let n = raw.length;
  if (raw[n - 1] === 0x2e) n--;
  if (n === 0) return { reason: "host_name is only a dot" };
  if (n > 253) return { reason: `host_name of ${n} characters, at most 253 allowed` };
  let out = "";
  let labelStart = 0;
  let allDigits = true;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? raw[i]! : 0x2e;
    if (c === 0x2e) {
      const len = i - labelStart;
      if (len === 0) return { reason: "host_name has an empty label" };
      if (len > 63) return { reason: `host_name has a label of ${len} characters, at most 63 allowed` };
      if (raw[labelStart] === 0x2d || raw[i - 1] === 0x2d) return { reason: "host_name has a label that starts or ends with a hyphen" };
      if (i < n) {
        labelStart = i + 1;
        allDigits = true;
        out += ".";
      }
      continue;
    }
    if (c >= 0x41 && c <= 0x5a) {
      out += String.fromCharCode(c + 0x20);
      allDigits = false;
    } else if ((c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f) {
      out += String.fromCharCode(c);
      allDigits = false;
    } else if (c >= 0x30 && c <= 0x39) {
      out += String.fromCharCode(c);
    } else {
      return { reason: `host_name has a byte 0x${c.toString(16).padStart(2, "0")} not allowed in a DNS name` };
    }
  }
  // An all-numeric last label is an IPv4 literal (or no host name at all: RFC 3696 §2).
  if (allDigits) return { reason: "host_name is an IP address literal (RFC 6066 §3 forbids them)" };
  return { name: out };
}

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}
