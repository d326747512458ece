/**
 * The request body (fetch engine), prepared so that a retry can send it again when that is
 * possible, and streamed so that the forwarding loop hears how the sending goes.
 *
 * The first `limit` bytes of every body are read before the request is forwarded. A body that
 * ends within them is kept whole and is replayable. A longer one streams: what was read goes
 * first and the rest follows as it arrives; it can be sent only once. Reading the first bytes
 * before asking for an upstream slot means a client that dribbles its body from the start
 * holds nothing upstream: no backend connection or slot waits on a client until its body flows.
 */
import type { SendProgress } from "../../forward/forward.ts";

export interface PreparedBody {
  /** The whole body, when it ended within the limit (or there is none): replayable. */
  bytes: Uint8Array<ArrayBuffer> | ArrayBuffer | null;
  /** Otherwise the body still arriving. */
  stream: StreamedBody | undefined;
}

const NO_BODY: PreparedBody = { bytes: null, stream: undefined };

/**
 * A body over the route's limits.maxBodySize, found while reading it (a chunked body; a declared
 * length over it was refused before). Its message names maxRequestBodySize as Bun.serve's own
 * does, so that the engine reads both the same way (bodyFault).
 */
export class BodyOverLimit extends Error {
  constructor(max: number) {
    super(`body over maxRequestBodySize (${max} bytes)`);
  }
}

/** `max`: the route's limits.maxBodySize, when below the listener's (which Bun.serve enforces itself). */
export async function prepareBody(req: Request, limit: number, max = Infinity): Promise<PreparedBody> {
  const stream = req.body;
  if (stream === null) return NO_BODY;
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const length = Number(declared);
    if (length === 0) return NO_BODY;
    if (length <= limit) return { bytes: await req.arrayBuffer(), stream: undefined };
  }
  return readUpTo(stream, limit, max);
}

async function readUpTo(stream: ReadableStream<Uint8Array>, limit: number, max: number): Promise<PreparedBody> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size <= limit) {
    const { done, value } = await reader.read();
    if (done) return { bytes: concat(chunks, size), stream: undefined };
    chunks.push(value);
    size += value.byteLength;
    if (size > max) {
      void reader.cancel().catch(() => {});
      throw new BodyOverLimit(max);
    }
  }
  return { bytes: null, stream: new StreamedBody(chunks, reader, size, max) };
}

/** What a streamed body reports besides the bytes. */
export interface UploadHooks {
  /**
   * Reading the client's body failed (it left, went over the size limit, broke the chunked
   * framing). Called before the upstream stream errors, so that the loop knows the failure is
   * the client's before fetch reports it as a failed try.
   */
  clientFailed(e: unknown): void;
  progress: SendProgress;
}

/** A body that streams from the client: the bytes already read, then the rest. Sent once. */
export class StreamedBody {
  constructor(
    private readonly head: Uint8Array[],
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    /** Bytes read so far, and the most the route takes (limits.maxBodySize). */
    private received = 0,
    private readonly max = Infinity,
  ) {}

  /**
   * The stream to hand to fetch. fetch pulls a piece only once it has written the one before
   * (backpressure holds: a backend that reads nothing leaves the pulls waiting), so the time
   * from handing over a piece to the next pull is the time the backend took to take it.
   */
  toStream(hooks: UploadHooks): ReadableStream<Uint8Array> {
    const { reader, head } = this;
    const body = this;
    const progress = hooks.progress;
    let i = 0;
    // Connecting and sending the head are a wait on the backend too.
    progress.sendWaiting();
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          progress.sendTaken();
          if (i < head.length) {
            controller.enqueue(head[i]!);
            head[i++] = EMPTY;
            progress.sendWaiting();
            return;
          }
          let chunk: Awaited<ReturnType<typeof reader.read>>;
          try {
            chunk = await reader.read();
          } catch (e) {
            hooks.clientFailed(e);
            controller.error(e);
            return;
          }
          if (!chunk.done && (body.received += chunk.value.byteLength) > body.max) {
            const e = new BodyOverLimit(body.max);
            void reader.cancel(e).catch(() => {});
            hooks.clientFailed(e);
            controller.error(e);
            return;
          }
          if (chunk.done) {
            controller.close();
            progress.requestSent();
          } else {
            controller.enqueue(chunk.value);
            progress.sendWaiting();
          }
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }

  /** Nobody will send it (the request was answered without a try): stop reading it. */
  discard(): void {
    void this.reader.cancel().catch(() => {});
  }
}

const EMPTY = new Uint8Array(0);

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
