/**
 * The access log's sink: appends whole lines to a file, reopens it after a rename (logrotate),
 * and drops and counts lines past its bound instead of queueing without end.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AccessSink, FILE_BATCH } from "../../src/log/access-sink.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-access-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const line = (i: number, len = 60) => `line ${i} ${"x".repeat(Math.max(0, len - 12 - String(i).length))}\n`;

describe("the file sink", () => {
  test("appends every line in order, to a file that already has some", async () => {
    const path = join(dir, "append.log");
    const first = new AccessSink(path);
    first.write("before\n");
    await first.close();
    const sink = new AccessSink(path);
    const lines = Array.from({ length: 500 }, (_, i) => line(i));
    for (const l of lines) sink.write(l);
    await sink.flush();
    expect(readFileSync(path, "utf8")).toBe("before\n" + lines.join(""));
    await sink.close();
  });

  test("after a rename, reopen() sends the next lines to a new file at the path; the old one keeps what came before", async () => {
    const path = join(dir, "rotate.log");
    const sink = new AccessSink(path);
    sink.write("one\n");
    await sink.flush();
    renameSync(path, path + ".1");
    // Still the old file (the descriptor moved with it), until reopened.
    sink.write("two\n");
    await sink.flush();
    await sink.reopen();
    sink.write("three\n");
    await sink.close();
    expect(readFileSync(path + ".1", "utf8")).toBe("one\ntwo\n");
    expect(readFileSync(path, "utf8")).toBe("three\n");
  });

  test("a line longer than a batch is written whole, alone", async () => {
    const path = join(dir, "long.log");
    const sink = new AccessSink(path);
    const long = "L".repeat(FILE_BATCH * 3) + "\n";
    sink.write("a\n");
    sink.write(long);
    sink.write("b\n");
    await sink.close();
    expect(readFileSync(path, "utf8")).toBe("a\n" + long + "b\n");
  });
});

describe("bounded", () => {
  test("past maxBuffer, lines are dropped and counted, never queued; what is written is whole lines", async () => {
    const path = join(dir, "bounded.log");
    let dropped = 0;
    const sink = new AccessSink(path, { maxBuffer: 8192, onDrop: (n) => (dropped += n) });
    const n = 1000;
    // All in one turn of the event loop: the sink can write one batch meanwhile, no more.
    for (let i = 0; i < n; i++) sink.write(line(i, 1000));
    expect(dropped).toBeGreaterThan(n / 2);
    expect(sink.pending * 1000).toBeLessThanOrEqual(8192);
    await sink.close();
    const written = readFileSync(path, "utf8").split("\n").slice(0, -1);
    expect(written.length + dropped).toBe(n);
    for (const l of written) expect(l).toMatch(/^line \d+ x+$/);
    expect(written[0]).toStartWith("line 0 ");
    // Lines written after close are dropped and counted too.
    sink.write("late\n");
    expect(written.length + dropped).toBe(n + 1);
  });
});
