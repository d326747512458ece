/** Raw HTTP/1.1 over a socket: for requests fetch would normalize (paths, hop-by-hop fields). */
import { connect } from "node:net";

export interface RawResponse {
  status: number;
  /** Header lines in wire order. */
  headers: [string, string][];
  body: string;
}

/**
 * Sends `head` (request line and headers, without the blank line) over a fresh TCP connection
 * with Connection: close, so the test controls the exact bytes (fetch would normalize the path).
 * Header names come back as sent over the wire; `lowerCase` folds them.
 */
export function rawRequest(port: number, head: string, { lowerCase = false } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(`${head}\r\nConnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const split = text.indexOf("\r\n\r\n");
      const [statusLine = "", ...lines] = text.slice(0, split).split("\r\n");
      resolve({
        status: Number(statusLine.split(" ")[1]),
        headers: lines.map((l) => {
          const name = l.slice(0, l.indexOf(":"));
          return [lowerCase ? name.toLowerCase() : name, l.slice(l.indexOf(":") + 1).trim()];
        }),
        body: text.slice(split + 4),
      });
    });
  });
}

/** A TCP server that accepts and then closes every connection as soon as bytes arrive: a backend that resets. */
export function startResettingServer(): { port: number; url: string; connections: () => number; stop(): void } {
  let connections = 0;
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        connections++;
      },
      data(socket) {
        socket.terminate();
      },
    },
  });
  return { port: server.port, url: `http://127.0.0.1:${server.port}`, connections: () => connections, stop: () => server.stop(true) };
}
