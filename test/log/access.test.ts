/**
 * The access log in both formats, line by line, and its buffered writer: lines go to the sink
 * as they are written, the writer's own timer flushes the tail, and close() stops the timer
 * after a last flush.
 */
import { describe, expect, test } from "bun:test";
import { createAccessLog, formatJson, formatText, type AccessEntry, type LineSink } from "../../src/log/access.ts";
import { waitFor } from "../helpers/wait.ts";

const entry: AccessEntry = {
  time: Date.UTC(2026, 10, 21, 7, 55, 3, 983),
  client: "127.0.0.1",
  method: "GET",
  path: "/search?q=a%20b",
  status: 200,
  bytes: 10,
  durationMs: 24.04,
  backends: ["backend-1"],
  attempts: 1,
  requestId: "c3d104e3",
};

describe("text", () => {
  test("one line with every field, as docs/forwarding.md shows it", () => {
    expect(formatText(entry)).toBe('2026-11-21T07:55:03.983Z 127.0.0.1 "GET /search?q=a%20b" 200 10 24.0ms backend=backend-1 attempts=1 id=c3d104e3\n');
  });

  test("every backend tried, in order, and the error code when the balancer answered itself", () => {
    const line = formatText({ ...entry, status: 502, bytes: 0, durationMs: 3.14, backends: ["b1", "b2", "b3"], attempts: 3, error: "SY_UPSTREAM_FAILED" });
    expect(line).toEndWith('"GET /search?q=a%20b" 502 0 3.1ms backend=b1,b2,b3 attempts=3 id=c3d104e3 error=SY_UPSTREAM_FAILED\n');
  });

  test("no backend at all is written as -", () => {
    expect(formatText({ ...entry, status: 503, backends: [], attempts: 0, error: "SY_NO_BACKEND" })).toContain(" backend=- attempts=0 ");
  });
});

describe("json", () => {
  test("one JSON object per line with the documented fields; time in ISO 8601, duration to 0.1 ms", () => {
    const line = formatJson(entry);
    expect(line.endsWith("\n")).toBe(true);
    expect(line.indexOf("\n")).toBe(line.length - 1);
    expect(JSON.parse(line)).toEqual({
      time: "2026-11-21T07:55:03.983Z",
      client: "127.0.0.1",
      method: "GET",
      path: "/search?q=a%20b",
      status: 200,
      bytes: 10,
      durationMs: 24,
      backends: ["backend-1"],
      attempts: 1,
      requestId: "c3d104e3",
    });
  });

  test("the error code is a field when present; a path with quotes stays one valid line", () => {
    const parsed = JSON.parse(formatJson({ ...entry, path: '/a"b\\c', error: "SY_UPSTREAM_TIMEOUT", durationMs: 5000.06 }));
    expect(parsed.error).toBe("SY_UPSTREAM_TIMEOUT");
    expect(parsed.path).toBe('/a"b\\c');
    expect(parsed.durationMs).toBe(5000.1);
  });
});

describe("the buffered writer", () => {
  function recordingSink() {
    const lines: string[] = [];
    let flushes = 0;
    const sink: LineSink = { write: (l) => void lines.push(l), flush: () => void flushes++ };
    return { sink, lines, flushes: () => flushes };
  }

  test("writes each entry in the chosen format; its timer flushes; close flushes once more and stops the timer", async () => {
    const text = recordingSink();
    const json = recordingSink();
    const logText = createAccessLog("text", text.sink, 10);
    const logJson = createAccessLog("json", json.sink, 10);
    logText.write(entry);
    logJson.write(entry);
    expect(text.lines).toEqual([formatText(entry)]);
    expect(json.lines).toEqual([formatJson(entry)]);
    await waitFor(() => text.flushes() >= 2, "the log's timer to flush");
    await logText.close();
    await logJson.close();
    const after = text.flushes();
    // A stopped timer shows only as nothing happening: give it several of its periods.
    await Bun.sleep(60);
    expect(text.flushes()).toBe(after);
  });
});
