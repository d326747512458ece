/**
 * Node's llhttp, as Bun 1.4.5 ships it natively (`process.binding("http_parser")`): the parser
 * Node.js trusts at its front door, strict by default (Content-Length with Transfer-Encoding,
 * obs-fold, whitespace before a colon, control characters and bad chunk sizes are errors),
 * about 1 µs per request head here. It is an internal interface, so its behaviour is pinned by
 * test/engine/llhttp.test.ts: re-run that on every Bun upgrade.
 *
 * Chosen over a hand-written scanner after measuring both on the whole path (docs/performance.md): see the note there.
 */

/** The callback interface, as Node's _http_common uses it. */
export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  /** Bytes consumed, or an Error with `code` (HPE_*) and `bytesParsed`. */
  execute(data: Uint8Array): number | ParseError;
  /** End of input: completes a close-delimited body; an Error when a message was cut short. */
  finish(): undefined | ParseError;
  close(): void;
  free(): void;
  [key: number]: unknown;
}

export interface ParseError extends Error {
  code: string;
  reason?: string;
  bytesParsed?: number;
}

interface Binding {
  HTTPParser: {
    new (): LlhttpParser;
    REQUEST: number;
    RESPONSE: number;
    kOnMessageBegin: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
  };
  methods: string[];
}

const binding = (process as unknown as { binding(name: string): Binding }).binding("http_parser");

export const HTTPParser = binding.HTTPParser;
/** llhttp's method numbers to names. */
export const METHODS: readonly string[] = binding.methods;

/**
 * kOnHeadersComplete's arguments, in Node's order. `headers` and `url` are undefined when more
 * than 32 field lines came: llhttp flushed them earlier through kOnHeaders.
 */
export type OnHeadersComplete = (
  versionMajor: number,
  versionMinor: number,
  headers: string[] | undefined,
  method: number | undefined,
  url: string | undefined,
  statusCode: number | undefined,
  statusMessage: string | undefined,
  upgrade: boolean,
  shouldKeepAlive: boolean,
) => number | void;

/** Returned from kOnHeadersComplete: the message has no body whatever its fields say (HEAD). */
export const SKIP_BODY = 1;

export function isParseError(r: number | ParseError | undefined): r is ParseError {
  return typeof r === "object" && r !== null;
}

/** What owns a parser: its callbacks, as methods (no closures of its own per message). */
export interface ParserHost {
  /** llhttp holds no partial message: kept up to date by the parser's begin/complete callbacks. */
  atStart: boolean;
  /** A whole head: every field line and the target, however llhttp handed them over. */
  onHeadersComplete: OnHeadersComplete;
  onBody(chunk: Uint8Array): void;
  onMessageComplete(): void;
}

/**
 * Where llhttp is in the current message, as this wrapper tracks it from the callbacks. Only
 * the head's field lines belong to the head: kOnHeaders also carries a chunked body's trailer
 * section, after the head is complete, and with it the message's target once more.
 */
const enum Phase {
  /** Between messages. */
  Idle = 0,
  /** Inside a head: field lines handed over early (more than 32) are this head's. */
  Head = 1,
  /** Past the head: field lines now are a trailer section (RFC 9112 §7.1.2). */
  Body = 2,
}

/**
 * A parser of `type` (REQUEST or RESPONSE) bound to `host`, heads limited to `maxHeaderSize` bytes.
 *
 * No state here outlives its message. Node's binding hands field lines over through kOnHeaders
 * in two cases: a head of more than 32 lines (flushed early, the rest at kOnHeadersComplete,
 * which then gets undefined for fields and target) and a trailer section, flushed just before
 * kOnMessageComplete together with the target of the message it ends. Lines handed over outside
 * a head must never join the next head: that would put one message's fields (one client's, behind
 * a pooling front proxy) into the next request or response on the connection. So the early lines
 * are collected here, reset at every message's start, and taken only while a head is being read.
 *
 * A trailer section is dropped: an intermediary may discard trailer fields (RFC 9110 §6.5.1),
 * and forwarding them to a backend that misreads them (Bun.serve reads them as a next request)
 * would let a client smuggle one.
 */
export function createParser(type: number, maxHeaderSize: number, host: ParserHost): LlhttpParser {
  const p = new HTTPParser();
  p.initialize(type, {}, maxHeaderSize);
  let phase = Phase.Idle;
  let early: string[] | undefined;
  let earlyTarget = "";
  p[HTTPParser.kOnMessageBegin] = () => {
    phase = Phase.Head;
    early = undefined;
    earlyTarget = "";
    host.atStart = false;
  };
  p[HTTPParser.kOnHeaders] = (fields: string[], target: string) => {
    // Past the head these are trailer lines: dropped (see above).
    if (phase !== Phase.Head) return;
    if (early === undefined) early = fields.slice();
    else for (let i = 0; i < fields.length; i++) early.push(fields[i]!);
    earlyTarget += target;
  };
  p[HTTPParser.kOnHeadersComplete] = ((maj, min, fields, method, target, status, text, upgrade, keepAlive) => {
    phase = Phase.Body;
    if (early !== undefined) {
      fields = fields === undefined ? early : early.concat(fields);
      target = earlyTarget + (target ?? "");
      early = undefined;
      earlyTarget = "";
    }
    return host.onHeadersComplete(maj, min, fields, method, target, status, text, upgrade, keepAlive);
  }) satisfies OnHeadersComplete;
  p[HTTPParser.kOnBody] = (chunk: Uint8Array) => host.onBody(chunk);
  p[HTTPParser.kOnMessageComplete] = () => {
    phase = Phase.Idle;
    early = undefined;
    earlyTarget = "";
    host.atStart = true;
    host.onMessageComplete();
  };
  return p;
}
