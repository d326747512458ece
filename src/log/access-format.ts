/**
 * The access log's line formats: `text` and `json` as they have always been (the default, no
 * `log.fields`), the same two with the fields `log.fields` chooses, and the Apache/nginx
 * `common` and `combined` formats byte for byte, so that log tools (GoAccess, awstats, any
 * combined-log parser) read them as they read nginx's.
 */
import type { AccessEntry } from "./access.ts";
import { FIELD_READERS, type AccessField } from "./access-fields.ts";

export type AccessFormat = "text" | "json" | "common" | "combined";
export type Formatter = (e: AccessEntry) => string;

export function formatText(e: AccessEntry): string {
  const backends = e.backends.length > 0 ? e.backends.join(",") : "-";
  const error = e.error ? ` error=${e.error}` : "";
  const route = e.route !== undefined ? ` route=${e.route}` : "";
  const pool = e.pool !== undefined ? ` pool=${e.pool}` : "";
  return `${new Date(e.time).toISOString()} ${e.client} "${e.method} ${e.path}" ${e.status} ${e.bytes} ${e.durationMs.toFixed(1)}ms backend=${backends} attempts=${e.attempts} id=${e.requestId}${route}${pool}${error}\n`;
}

/**
 * The default JSON line: these keys in this order, whatever else the entry carries; `traceId`
 * only when tracing gave the request one (docs/observability.md).
 */
export function formatJson(e: AccessEntry): string {
  return JSON.stringify({
    time: new Date(e.time).toISOString(), client: e.client, method: e.method, path: e.path, status: e.status, bytes: e.bytes,
    durationMs: Math.round(e.durationMs * 10) / 10, backends: e.backends, attempts: e.attempts, requestId: e.requestId,
    error: e.error, route: e.route, pool: e.pool, traceId: e.traceId,
  }) + "\n";
}

/** A text value is written bare when it has no space, quote, backslash or control byte; else as a JSON string. */
const BARE = /^[^\s"\\\x00-\x1f\x7f]+$/;
function textValue(v: string | number | undefined): string {
  if (v === undefined) return "-";
  if (typeof v === "number") return String(v);
  return BARE.test(v) ? v : JSON.stringify(v);
}

/** `text` with chosen fields: the ISO time, then `name=value` for each field in the order listed. */
export function textWith(fields: readonly AccessField[]): Formatter {
  const readers = fields.map((f) => [` ${f}=`, FIELD_READERS[f]] as const);
  return (e) => {
    let line = new Date(e.time).toISOString();
    for (const [prefix, read] of readers) line += prefix + textValue(read(e));
    return line + "\n";
  };
}

/** `json` with chosen fields: `time`, then each field under its own name (null when absent). */
export function jsonWith(fields: readonly AccessField[]): Formatter {
  return (e) => {
    const o: Record<string, unknown> = { time: new Date(e.time).toISOString() };
    for (const f of fields) o[f] = FIELD_READERS[f](e) ?? null;
    return JSON.stringify(o) + "\n";
  };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number) => (n < 10 ? "0" : "") + n;
let clfSecond = -1;
let clfText = "";

/** `[07/Dec/2026:03:15:00 +0000]`: Apache's %t (nginx's $time_local) in UTC, made once a second. */
export function clfTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== clfSecond) {
    const d = new Date(second * 1000);
    clfText = `[${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000]`;
    clfSecond = second;
  }
  return clfText;
}

/** Bytes nginx writes as \xHH in a logged string (ngx_http_log_escape): controls, `"`, `\`, DEL and above. */
const NEEDS_ESCAPE = /["\\\x00-\x1f\x7f-\uffff]/;
const hex = (b: number) => "\\x" + b.toString(16).toUpperCase().padStart(2, "0");
const encoder = new TextEncoder();

/**
 * A value as nginx logs it: every byte that is a control, `"`, `\`, or 0x7F and above becomes
 * `\xHH` (upper-case hex, as nginx writes it), so a line stays one line and a quoted field
 * cannot be closed from inside. Characters above U+00FF are escaped byte by byte of their UTF-8.
 */
export function clfEscape(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) {
      const cp = s.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const b of encoder.encode(String.fromCodePoint(cp))) out += hex(b);
    } else if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x7f) out += hex(c);
    else out += s[i];
  }
  return out;
}

const dash = (s: string | undefined) => (s === undefined || s === "" ? "-" : clfEscape(s));

/** `%h %l %u %t "%r" %>s %b`: %b is `-` for no body bytes, as Apache writes it. */
export function formatCommon(e: AccessEntry): string {
  return commonPart(e) + "\n";
}

/** `common` + ` "%{Referer}i" "%{User-agent}i"`. */
export function formatCombined(e: AccessEntry): string {
  return `${commonPart(e)} "${dash(e.referer)}" "${dash(e.userAgent)}"\n`;
}

function commonPart(e: AccessEntry): string {
  const request = clfEscape(`${e.method} ${e.path} ${e.protocol ?? "HTTP/1.1"}`);
  return `${e.client} - - ${clfTime(e.time)} "${request}" ${e.status} ${e.bytes > 0 ? e.bytes : "-"}`;
}

/** The formatter for a format and, for text and json, the chosen fields (none: today's line). */
export function formatterFor(format: AccessFormat, fields: readonly AccessField[] | undefined): Formatter {
  switch (format) {
    case "common":
      return formatCommon;
    case "combined":
      return formatCombined;
    case "json":
      return fields === undefined ? formatJson : jsonWith(fields);
    case "text":
      return fields === undefined ? formatText : textWith(fields);
  }
}
