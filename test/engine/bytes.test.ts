/**
 * The shared head buffer (src/engine/socket/bytes.ts) and the outbox's copy of what must wait
 * (src/engine/socket/outbox.ts): a head is valid only until the next one is begun, so whatever
 * the kernel does not take at once is copied before the buffer is reused.
 */
import { expect, test } from "bun:test";
import type { Socket } from "bun";
import { headWriter, latin1Bytes } from "../../src/engine/socket/bytes.ts";
import { Outbox } from "../../src/engine/socket/outbox.ts";
import { scanResponse } from "../../src/engine/socket/scan.ts";
import { FieldList } from "../../src/http/fields.ts";
import { toClientHeaders } from "../../src/http/headers.ts";

const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

test("a head is the start line, each field line in order, and the blank line", () => {
  const f = new FieldList(["Host", "a.test", "Set-Cookie", "a=1", "Set-Cookie", "b=2"]);
  const out = headWriter.begin().text("HTTP/1.1 ").int(200).text(" OK\r\n").fields(f).done();
  expect(text(out)).toBe("HTTP/1.1 200 OK\r\nHost: a.test\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n");
});

test("obs-text is written one byte per character, as latin1", () => {
  const f = new FieldList(["X-Name", "caf\u00e9"]);
  const out = headWriter.begin().text("GET / HTTP/1.1\r\n").fields(f).done();
  expect([...out.subarray(out.length - 7, out.length - 4)]).toEqual([0x61, 0x66, 0xe9]);
  expect(out).toEqual(latin1Bytes("GET / HTTP/1.1\r\nX-Name: caf\u00e9\r\n\r\n"));
});

test("a body goes after the head in the same bytes, small or larger than the buffer", () => {
  for (const size of [10, 100_000]) {
    const body = new Uint8Array(size).map((_, i) => i % 251);
    const out = headWriter.begin().text("HTTP/1.1 200 OK\r\n").fields(new FieldList(["Content-Length", String(size)])).done(body);
    const head = `HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`;
    expect(text(out.subarray(0, head.length))).toBe(head);
    expect(out.subarray(head.length)).toEqual(body);
  }
});

test("a body copied from a range of a read's buffer comes out as done(body) would, small or larger than the buffer", () => {
  for (const size of [10, 100_000]) {
    const read = Buffer.from(new Uint8Array(size + 40).map((_, i) => i % 249));
    const body = read.subarray(17, 17 + size);
    const f = new FieldList(["Content-Length", String(size)]);
    const viaView = Buffer.from(headWriter.begin().text("HTTP/1.1 200 OK\r\n").fields(f).done(body));
    const viaRange = headWriter.begin().text("HTTP/1.1 200 OK\r\n").fields(f).doneCopying(read, 17, 17 + size);
    expect(Buffer.from(viaRange).equals(viaView)).toBe(true);
  }
});

test("lines as read are copied from the read's bytes; changed, added and removed ones are not", () => {
  // Odd spacing and a long value, so a copy is told from a re-encoding and both copy paths run.
  const long = "x".repeat(100);
  const read = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type:text/plain\r\nX-Long:  ${long}\r\nconnection: x-drop\r\nX-Drop: 1\r\nVia: 1.0 a\r\nDate: d\r\nContent-Length: 2\r\n\r\nok`, "latin1");
  const r = scanResponse(read, 0, 65536, false)!;
  const f = FieldList.fromScan(r.fields, read);
  toClientHeaders(f, "id-1");
  expect(text(headWriter.begin().text("HTTP/1.1 200 OK\r\n").fields(f).done())).toBe(
    `HTTP/1.1 200 OK\r\nContent-Type:text/plain\r\nX-Long:  ${long}\r\nVia: 1.0 a, 1.1 switchyard\r\nDate: d\r\nContent-Length: 2\r\nx-request-id: id-1\r\n\r\n`,
  );
  // The same list read again after a change to one line: the change shows, the rest is as read.
  f.set("date", "e");
  expect(text(headWriter.begin().fields(f).done())).toContain("Via: 1.0 a, 1.1 switchyard\r\nDate: e\r\nContent-Length: 2\r\n");
});

test("a head larger than the buffer grows it and comes out whole", () => {
  const big = "v".repeat(20_000);
  const out = headWriter.begin().text("GET / HTTP/1.1\r\n").fields(new FieldList(["X-Big", big, "Host", "a"])).done();
  expect(text(out)).toBe(`GET / HTTP/1.1\r\nX-Big: ${big}\r\nHost: a\r\n\r\n`);
});

/** A socket whose kernel takes at most `take` bytes per write; what it took, in order. */
function fakeSocket(take: () => number) {
  const written: number[] = [];
  const socket = {
    write(d: Uint8Array) {
      const n = Math.min(take(), d.length);
      written.push(...d.subarray(0, n));
      return n;
    },
  } as unknown as Socket<unknown>;
  return { socket, written };
}

test("what the kernel did not take of a transient head is copied before the next head reuses the buffer", () => {
  let room = 5;
  const { socket, written } = fakeSocket(() => room);
  const box = new Outbox(socket);
  const first = "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n";
  box.write(headWriter.begin().text(first).done(), true);
  // The kernel is full now: a second head waits whole in the queue.
  room = 0;
  const second = "HTTP/1.1 204 No Content\r\nB: 2\r\n\r\n";
  box.write(headWriter.begin().text(second).done(), true);
  // A third head overwrites the shared buffer; the queued bytes must not change.
  headWriter.begin().text("X".repeat(200)).done();
  room = 1_000;
  box.flush();
  expect(Buffer.from(written).toString("latin1")).toBe(first + second);
  expect(box.pending).toBe(0);
});
