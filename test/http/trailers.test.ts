import { expect, test } from "bun:test";
import { FieldList } from "../../src/http/fields.ts";
import { lastChunkWith, takesTrailers } from "../../src/http/trailers.ts";

test("takesTrailers reads TE's tokens", () => {
  expect(takesTrailers("trailers")).toBe(true);
  expect(takesTrailers("gzip, Trailers")).toBe(true);
  expect(takesTrailers("gzip")).toBe(false);
  expect(takesTrailers(null)).toBe(false);
});

test("lastChunkWith keeps what may be a trailer, drops framing and unsafe lines", () => {
  const f = new FieldList(["grpc-status", "0", "Content-Length", "5", "x-bad", "a\r\nInjected: 1", "bad name", "v", "Server-Timing", "db;dur=5"]);
  expect(Buffer.from(lastChunkWith(f)!).toString("latin1")).toBe("0\r\ngrpc-status: 0\r\nServer-Timing: db;dur=5\r\n\r\n");
  expect(lastChunkWith(new FieldList(["transfer-encoding", "chunked"]))).toBeUndefined();
});
