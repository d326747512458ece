/**
 * The request body, prepared so that a retry can send it again when that is possible.
 *
 * Bodies up to `limit` bytes are read into memory once and are replayable; larger ones stream
 * through untouched and can be sent only once. A chunked body (no Content-Length) is read up to
 * the limit: if it ends there it is replayable, otherwise what was read is sent first and the
 * rest streams after it.
 */
export interface PreparedBody {
  body: BodyInit | null;
  replayable: boolean;
}

const NO_BODY: PreparedBody = { body: null, replayable: true };

export async function prepareBody(req: Request, limit: number): Promise<PreparedBody> {
  const stream = req.body;
  if (stream === null) return NO_BODY;
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const length = Number(declared);
    if (length === 0) return NO_BODY;
    if (length <= limit) return { body: await req.arrayBuffer(), replayable: true };
    return { body: stream, replayable: false };
  }
  return readUpTo(stream, limit);
}

async function readUpTo(stream: ReadableStream<Uint8Array>, limit: number): Promise<PreparedBody> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size <= limit) {
    const { done, value } = await reader.read();
    if (done) return { body: concat(chunks, size), replayable: true };
    chunks.push(value);
    size += value.byteLength;
  }
  // Over the limit: replay what was read, then pass the rest through as it arrives.
  let i = 0;
  const rest = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i < chunks.length) return controller.enqueue(chunks[i++]!);
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return { body: rest, replayable: false };
}

function concat(chunks: Uint8Array[], size: number): Uint8Array<ArrayBuffer> {
  if (chunks.length === 1) return chunks[0] as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
