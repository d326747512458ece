/** Helpers shared by the sim tests (raw requests go through test/helpers/raw.ts). */

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
