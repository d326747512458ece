/**
 * The HTTP/2 connection preface (RFC 9113 §3.4): a client that knows the server speaks HTTP/2
 * (prior knowledge, §3.3) opens with these 24 octets. No HTTP/1.1 request can begin with them
 * ("PRI" is no method we accept, and "HTTP/2.0" no HTTP/1.x version), so on a plain listener
 * they tell the two protocols apart from the first read.
 */
export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export const enum Preface {
  /** Not the preface: HTTP/1.1. */
  No = 0,
  /** The whole preface: HTTP/2. */
  Yes = 1,
  /** So far a prefix of it: more bytes decide. */
  Partial = 2,
}

/** Whether `bytes`, the first of a connection, start with the preface. */
export function matchPreface(bytes: Uint8Array): Preface {
  const n = Math.min(bytes.length, PREFACE.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== PREFACE[i]) return Preface.No;
  return n === PREFACE.length ? Preface.Yes : Preface.Partial;
}
