/**
 * The access log's formats byte for byte, with a fixed clock (the entry's own time): common and
 * combined as Apache and nginx write them, nginx's \xHH escaping, and text and json lines with
 * the fields log.fields chooses.
 */
import { describe, expect, test } from "bun:test";
import type { AccessEntry } from "../../src/log/access.ts";
import { clfEscape, clfTime, formatCombined, formatCommon, formatJson, formatText, formatterFor, jsonWith, textWith } from "../../src/log/access-format.ts";
import { ACCESS_FIELDS } from "../../src/log/access-fields.ts";

const entry: AccessEntry = {
  time: Date.UTC(2026, 11, 7, 3, 15, 0, 250),
  client: "203.0.113.7",
  method: "GET",
  path: "/search?q=a%20b",
  status: 200,
  bytes: 5120,
  durationMs: 12.34,
  backends: ["b1", "b2"],
  attempts: 2,
  requestId: "c3d104e3",
  route: "api",
  pool: "default",
  host: "example.com",
  userAgent: "curl/8.0.1",
  referer: "https://example.com/start",
  protocol: "HTTP/1.1",
  bytesIn: 42,
  upstreamConnectMs: 0,
  upstreamFirstByteMs: 3.26,
  upstreamMs: 4.01,
};

describe("common and combined", () => {
  test("common: %h %l %u %t \"%r\" %>s %b", () => {
    expect(formatCommon(entry)).toBe('203.0.113.7 - - [07/Dec/2026:03:15:00 +0000] "GET /search?q=a%20b HTTP/1.1" 200 5120\n');
  });

  test("combined: common + \"%{Referer}i\" \"%{User-agent}i\"", () => {
    expect(formatCombined(entry)).toBe('203.0.113.7 - - [07/Dec/2026:03:15:00 +0000] "GET /search?q=a%20b HTTP/1.1" 200 5120 "https://example.com/start" "curl/8.0.1"\n');
  });

  test("no body bytes is %b's -, no Referer or User-Agent is -, an empty one too", () => {
    expect(formatCombined({ ...entry, bytes: 0, referer: undefined, userAgent: "" })).toBe('203.0.113.7 - - [07/Dec/2026:03:15:00 +0000] "GET /search?q=a%20b HTTP/1.1" 200 - "-" "-"\n');
  });

  test("the request line's version is the client's; HTTP/1.1 when the engine cannot tell", () => {
    expect(formatCommon({ ...entry, protocol: "HTTP/1.0" })).toContain('"GET /search?q=a%20b HTTP/1.0"');
    expect(formatCommon({ ...entry, protocol: undefined })).toContain('"GET /search?q=a%20b HTTP/1.1"');
  });

  test('quotes, backslashes, controls and bytes from 0x7F are \\xHH, as nginx writes them; the line stays one line', () => {
    const line = formatCombined({ ...entry, path: '/a"b\\c', userAgent: 'x"y\tz\x7f\xe9', referer: "line\r\nbreak" });
    expect(line).toBe('203.0.113.7 - - [07/Dec/2026:03:15:00 +0000] "GET /a\\x22b\\x5Cc HTTP/1.1" 200 5120 "line\\x0D\\x0Abreak" "x\\x22y\\x09z\\x7F\\xE9"\n');
    expect(line.indexOf("\n")).toBe(line.length - 1);
  });

  test("characters past U+00FF are escaped byte by byte of their UTF-8", () => {
    expect(clfEscape("é€😀")).toBe("\\xE9\\xE2\\x82\\xAC\\xF0\\x9F\\x98\\x80");
    expect(clfEscape("plain/path?x=1")).toBe("plain/path?x=1");
  });

  test("the time is UTC with +0000, day and hour zero-padded, the same string within a second", () => {
    expect(clfTime(Date.UTC(2027, 0, 2, 4, 5, 6, 999))).toBe("[02/Jan/2027:04:05:06 +0000]");
    expect(clfTime(Date.UTC(2027, 0, 2, 4, 5, 6, 1))).toBe("[02/Jan/2027:04:05:06 +0000]");
    expect(clfTime(Date.UTC(2027, 0, 2, 4, 5, 7, 0))).toBe("[02/Jan/2027:04:05:07 +0000]");
  });
});

describe("text and json with log.fields", () => {
  test("text: the time, then name=value in the order listed; absent is -, a value with spaces or quotes is a JSON string", () => {
    const fmt = textWith(["client_ip", "method", "host", "target", "status", "user_agent", "upstream_time", "trace_id", "tls_version"]);
    expect(fmt({ ...entry, userAgent: 'Mozilla/5.0 (X11) "q"' })).toBe(
      '2026-12-07T03:15:00.250Z client_ip=203.0.113.7 method=GET host=example.com target=/search?q=a%20b status=200 user_agent="Mozilla/5.0 (X11) \\"q\\"" upstream_time=4 trace_id=- tls_version=-\n',
    );
    expect(fmt({ ...entry, traceId: "4bf92f3577b34da6a3ce929d0e0e4736" })).toContain(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 ");
  });

  test("json: time, then each field under its own name; absent is null; times to 0.1 ms", () => {
    const fmt = jsonWith(["status", "bytes_in", "bytes_out", "backend", "tries", "upstream_connect_time", "upstream_first_byte_time", "duration", "error", "trace_id"]);
    expect(JSON.parse(fmt(entry))).toEqual({
      time: "2026-12-07T03:15:00.250Z", status: 200, bytes_in: 42, bytes_out: 5120, backend: "b2", tries: 2,
      upstream_connect_time: 0, upstream_first_byte_time: 3.3, duration: 12.3, error: null, trace_id: null,
    });
  });

  test("every documented field has a value or - for this entry, and no field is left out", () => {
    const line = textWith(ACCESS_FIELDS)(entry);
    for (const f of ACCESS_FIELDS) expect(line).toContain(` ${f}=`);
    expect(line).toContain(" referer=https://example.com/start ");
    expect(line).toContain(" request_id=c3d104e3 ");
    expect(line).toContain(" route=api pool=default backend=b2 tries=2 error=- ");
  });

  test("without log.fields, text and json are today's lines", () => {
    expect(formatterFor("text", undefined)).toBe(formatText);
    expect(formatterFor("json", undefined)).toBe(formatJson);
    // The new entry fields never reach the default JSON line.
    expect(Object.keys(JSON.parse(formatJson(entry)))).toEqual(["time", "client", "method", "path", "status", "bytes", "durationMs", "backends", "attempts", "requestId", "route", "pool"]);
    expect(JSON.parse(formatJson({ ...entry, traceId: "4bf92f3577b34da6a3ce929d0e0e4736" })).traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(formatText(entry)).toBe('2026-12-07T03:15:00.250Z 203.0.113.7 "GET /search?q=a%20b" 200 5120 12.3ms backend=b1,b2 attempts=2 id=c3d104e3 route=api pool=default\n');
  });
});
