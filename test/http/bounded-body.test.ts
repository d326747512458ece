/** src/http/bounded-body.ts: a body over the bound is refused without being read to its end. */
import { expect, test } from "bun:test";
import { readBounded } from "../../src/http/bounded-body.ts";

/** A body of `chunks` chunks of `size` bytes each, counting what was pulled and whether it was cancelled. */
function streamed(chunks: number, size: number) {
  const seen = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (seen.pulled === chunks) return c.close();
      seen.pulled++;
      c.enqueue(new Uint8Array(size).fill(0x61));
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  return { res: new Response(body), seen };
}

test("a body within the bound is read whole, as UTF-8; an empty one is empty", async () => {
  expect(await readBounded(new Response("héllo"), 6)).toBe("héllo");
  expect(await readBounded(new Response(null), 1)).toBe("");
  const { res } = streamed(4, 16);
  expect(await readBounded(res, 64)).toBe("a".repeat(64));
});

test("a body that grows over the bound is cancelled at the chunk that crosses it", async () => {
  const { res, seen } = streamed(1000, 1024);
  expect(await readBounded(res, 4096)).toBeUndefined();
  expect(seen.pulled).toBeLessThanOrEqual(6);
  expect(seen.cancelled).toBe(true);
});

test("a declared Content-Length over the bound is refused before the body is read", async () => {
  let cancelled = false;
  let read = 0;
  const body = new ReadableStream<Uint8Array>({ pull(c) { read++; c.enqueue(new Uint8Array(1024)); }, cancel() { cancelled = true; } }, { highWaterMark: 0 });
  const res = new Response(body, { headers: { "content-length": "10240" } });
  expect(await readBounded(res, 4096)).toBeUndefined();
  expect(read).toBe(0);
  expect(cancelled).toBe(true);
});
