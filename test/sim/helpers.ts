/** Helpers shared by the sim tests. */

import { connect } from "node:net";

export interface RawResponse {
  status: number;
  /** Header lines exactly as they came over the wire, in order. */
  headers: [string, string][];
  body: string;
}

/**
 * Sends `head` (request line and headers, without the blank line) over a fresh TCP connection
 * with Connection: close, so the test controls the exact bytes (fetch would normalize the path).
 */
export function rawRequest(port: number, head: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(`${head}\r\nConnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const split = text.indexOf("\r\n\r\n");
      const [statusLine = "", ...lines] = text.slice(0, split).split("\r\n");
      resolve({
        status: Number(statusLine.split(" ")[1]),
        headers: lines.map((line) => {
          const colon = line.indexOf(":");
          return [line.slice(0, colon), line.slice(colon + 1).trim()];
        }),
        body: text.slice(split + 4),
      });
    });
  });
}

/** Polls `condition` every few ms until it holds; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** The error code of a fetch that must fail (ECONNREFUSED; Bun 1.3 said ConnectionRefused). */
export async function fetchErrorCode(url: string, init?: RequestInit): Promise<string> {
  try {
    const res = await fetch(url, init);
    return `no error: status ${res.status}`;
  } catch (err) {
    return String((err as { code?: unknown }).code ?? (err as Error).name);
  }
}

export const REFUSED = ["ECONNREFUSED", "ConnectionRefused"];

/** sha256 hex of the first n bytes of the /bytes pattern (byte i = i % 256). */
export function patternSha256(n: number): string {
  const hasher = new Bun.CryptoHasher("sha256");
  const block = Uint8Array.from({ length: 1 << 16 }, (_, i) => i % 256);
  for (let at = 0; at < n; at += block.length) hasher.update(block.subarray(0, Math.min(block.length, n - at)));
  return hasher.digest("hex");
}
