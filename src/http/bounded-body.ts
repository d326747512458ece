/**
 * A response body read only up to a bound. For answers this process asks for itself (a
 * backend's stats, a forward-auth service, a CA's renewal information): a peer that sends more
 * than any real answer holds is refused before its bytes are buffered, not after.
 */

/** The body as text, or undefined when it is over `max` bytes: declared so, or once that many have arrived (the rest is not read). */
export async function readBounded(res: Response, max: number): Promise<string | undefined> {
  if (res.body === null) return "";
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > max) {
    void res.body.cancel().catch(() => {});
    return undefined;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      void reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
