/**
 * A backend that records every byte it receives, verbatim, and answers each request it frames
 * (the other side of the raw client, test/helpers/raw.ts): the wire tests put the rig in front
 * of it with recordingRig (test/helpers/balancer.ts).
 */
import type { Socket } from "bun";
import { HTTPParser } from "../../src/engine/socket/llhttp.ts";

export interface RecordedRequest {
  method: string;
  url: string;
  headers: [string, string][];
  body: string;
  /** A chunked body's trailer section, as received. */
  trailers: [string, string][];
}

export interface RecordingBackend {
  url: string;
  port: number;
  /** Every byte received, per connection, in order. */
  raw: string[];
  requests: RecordedRequest[];
  connections: () => number;
  /** Connections the proxy has closed (or reset). */
  closed: () => number;
  stop(): void;
}

/**
 * What the backend answers to a request, by path:
 * - /103: an interim 103 Early Hints, then 200
 * - /chunked: a chunked body "hello world" in two chunks
 * - /close: a body delimited by closing the connection
 * - /leftover: a response followed by stray bytes (must not be read as the next response)
 * - /late-bytes: a response, then 30 ms later stray bytes on the idle connection
 * - /cookies: three Set-Cookie fields
 * - /hang: never answers
 * - /chunked-trailer: a chunked body "hello" with a trailer section (X-Secret-Trailer, X-Two)
 * - /split-head: a response whose head comes in two writes 30 ms apart
 * - with `dribble` in the query: the whole answer written 3 bytes at a time
 * - /one-per-connection: answered only as the first request on its connection; later on the
 *   same connection the backend resets it (a keep-alive connection it closed as it was reused)
 * - anything else: 200 with body "ok <n>" (n counts requests)
 */
export function startRecordingBackend(): RecordingBackend {
  const raw: string[] = [];
  const requests: RecordedRequest[] = [];
  let connections = 0;
  let closed = 0;
  const server = Bun.listen<{ index: number; parser: InstanceType<typeof HTTPParser> }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        const index = connections++;
        raw[index] = "";
        const p = new HTTPParser();
        p.initialize(HTTPParser.REQUEST, {});
        let current: RecordedRequest | undefined;
        // Past 32 field lines llhttp hands them over early, through kOnHeaders; it also hands
        // over a trailer section that way, after the head, with the message's target again.
        // This referee keeps each message's lines to that message (the bug it exists to catch).
        let inHead = false;
        let early: string[] = [];
        let earlyUrl = "";
        p[HTTPParser.kOnMessageBegin] = () => {
          inHead = true;
          early = [];
          earlyUrl = "";
        };
        p[HTTPParser.kOnHeaders] = (fields: string[], url: string) => {
          if (!inHead) {
            for (let i = 0; i < fields.length; i += 2) current!.trailers.push([fields[i]!.toLowerCase(), fields[i + 1]!]);
            return;
          }
          early.push(...fields);
          earlyUrl += url;
        };
        p[HTTPParser.kOnHeadersComplete] = (_a: number, _b: number, last: string[] | undefined, method: number, lastUrl: string | undefined) => {
          inHead = false;
          const fields = [...early, ...(last ?? [])];
          const url = earlyUrl + (lastUrl ?? "");
          early = [];
          earlyUrl = "";
          const headers: [string, string][] = [];
          for (let i = 0; i < fields.length; i += 2) headers.push([fields[i]!.toLowerCase(), fields[i + 1]!]);
          current = { method: (process as any).binding("http_parser").methods[method], url, headers, body: "", trailers: [] };
          return 0;
        };
        p[HTTPParser.kOnBody] = (b: Uint8Array) => {
          current!.body += Buffer.from(b).toString("latin1");
        };
        let onConnection = 0;
        p[HTTPParser.kOnMessageComplete] = () => {
          const req = current!;
          requests.push(req);
          if (req.url === "/one-per-connection" && onConnection++ > 0) return void socket.terminate();
          answer(socket, req, requests.length);
        };
        socket.data = { index, parser: p };
      },
      close() {
        closed++;
      },
      data(socket, chunk) {
        raw[socket.data.index] += Buffer.from(chunk).toString("latin1");
        socket.data.parser.execute(chunk);
      },
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    port: server.port,
    raw,
    requests,
    connections: () => connections,
    closed: () => closed,
    stop: () => server.stop(true),
  };
}

function answer(socket: Socket<unknown>, req: RecordedRequest, n: number): void {
  const [path, query = ""] = req.url.split("?");
  if (query.includes("dribble")) return void dribbleTo(socket, answerText(path!, n));
  switch (path) {
    case "/103":
      socket.write("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      return;
    case "/chunked":
      socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
      return;
    case "/close":
      socket.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
      socket.end();
      return;
    case "/leftover":
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged");
      return;
    case "/late-bytes":
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      setTimeout(() => socket.write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"), 30);
      return;
    case "/cookies":
      socket.write("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2, c=3\r\nSet-Cookie: d=4\r\nContent-Length: 0\r\n\r\n");
      return;
    case "/hang":
      return;
    case "/split-head": {
      socket.write("HTTP/1.1 200 OK\r\nX-Split: 1\r\nContent-Len");
      setTimeout(() => socket.write(`gth: 5\r\n\r\nsplit`), 30);
      return;
    }
    case "/chunked-trailer":
      socket.write(answerText(path, n));
      return;
    default: {
      const body = `ok ${n}`;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    }
  }
}

/** The answers that can be written at once, as text (for the dribbled variants). */
function answerText(path: string, n: number): string {
  switch (path) {
    case "/103":
      return "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    case "/chunked":
      return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    case "/chunked-trailer":
      return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Secret-Trailer: s3cret\r\nX-Two: 2\r\n\r\n";
    case "/split-head":
      return "HTTP/1.1 200 OK\r\nX-Split: 1\r\nContent-Length: 5\r\n\r\nsplit";
    default: {
      const body = `ok ${n}`;
      return `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    }
  }
}

/** Write `text` 3 bytes at a time, 1 ms apart, so the reader gets it over many reads. */
async function dribbleTo(socket: Socket<unknown>, text: string): Promise<void> {
  for (let i = 0; i < text.length; i += 3) {
    socket.write(Buffer.from(text.slice(i, i + 3), "latin1"));
    await Bun.sleep(1);
  }
}
