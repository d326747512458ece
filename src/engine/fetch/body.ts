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

export async function prepareBody(req: Request, limit: number): Promise<PreparedBody> {
  const stream = req.body;
  if (stream === null) return NO_BODY;
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const length = Number(declared);
    if (length === 0) return NO_BODY;
    if (length <= limit) return { bytes: await req.arrayBuffer(), stream: undefined };
  }
  return readUpTo(stream, limit);
}

async function readUpTo(stream: ReadableStream<Uint8Array>, limit: number): Promise<PreparedBody> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size <= limit) {
    const { done, value } = await reader.read();
    if (done) return { bytes: concat(chunks, size), stream: undefined };
    chunks.push(value);
    size += value.byteLength;
  }
  return { bytes: null, stream: new StreamedBody(chunks, reader) };
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
  ) {}

  /**
   * The stream to hand to fetch. fetch pulls a piece only once it has written the one before
   * (backpressure holds: a backend that reads nothing leaves the pulls waiting), so the time
   * from handing over a piece to the next pull is the time the backend took to take it.
   */
  toStream(hooks: UploadHooks): ReadableStream<Uint8Array> {
    const { reader, head } = this;
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
