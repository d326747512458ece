/**
 * Heads as bytes. HTTP field values are latin1 at most (obs-text), never UTF-8, so a head is
 * encoded one byte per character. Nearly every head is plain ASCII, where UTF-8 and latin1
 * agree and TextEncoder is several times faster than Buffer.from(text, "latin1"); the check
 * for a byte above 0x7F costs far less than either.
 */
const encoder = new TextEncoder();
const NON_ASCII = /[^\x00-\x7f]/;

export function latin1Bytes(text: string): Uint8Array {
  return NON_ASCII.test(text) ? Buffer.from(text, "latin1") : encoder.encode(text);
}

/** `text` then `body` in one buffer: one write for a small answer. */
export function headAndBody(text: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(text.length + body.length);
  if (NON_ASCII.test(text)) Buffer.from(out.buffer, out.byteOffset, out.length).write(text, 0, "latin1");
  else encoder.encodeInto(text, out);
  out.set(body, text.length);
  return out;
}
