/**
 * Node's llhttp, as Bun 1.4.5 ships it natively (`process.binding("http_parser")`): the parser
 * Node.js trusts at its front door, strict by default (Content-Length with Transfer-Encoding,
 * obs-fold, whitespace before a colon, control characters and bad chunk sizes are errors),
 * about 1 µs per request head here. It is an internal interface, so its behaviour is pinned by
 * test/engine/llhttp.test.ts: re-run that on every Bun upgrade.
 *
 * Chosen over a hand-written scanner after measuring both on the whole path (README,
 * "Performance"): see the note there.
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
  /** More than 32 field lines: llhttp hands them over early, before the head completes. */
  onRawHeaders(fields: string[], url: string): void;
  onHeadersComplete: OnHeadersComplete;
  onBody(chunk: Uint8Array): void;
  onMessageComplete(): void;
}

/** A parser of `type` (REQUEST or RESPONSE) bound to `host`, heads limited to `maxHeaderSize` bytes. */
export function createParser(type: number, maxHeaderSize: number, host: ParserHost): LlhttpParser {
  const p = new HTTPParser();
  p.initialize(type, {}, maxHeaderSize);
  p[HTTPParser.kOnHeaders] = (fields: string[], url: string) => host.onRawHeaders(fields, url);
  p[HTTPParser.kOnHeadersComplete] = ((maj, min, fields, method, url, status, text, upgrade, keepAlive) =>
    host.onHeadersComplete(maj, min, fields, method, url, status, text, upgrade, keepAlive)) satisfies OnHeadersComplete;
  p[HTTPParser.kOnBody] = (chunk: Uint8Array) => host.onBody(chunk);
  p[HTTPParser.kOnMessageComplete] = () => {
    host.atStart = true;
    host.onMessageComplete();
  };
  p[HTTPParser.kOnMessageBegin] = () => {
    host.atStart = false;
  };
  return p;
}
