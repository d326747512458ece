/**
 * ACME Renewal Information (ARI, RFC 9773): the CA's suggested window for renewing one
 * certificate. A CA moves it earlier when it must revoke (a mis-issuance, a key compromise) or
 * wants renewals spread out; a client that follows it renews in time with no human involved.
 *
 * The directory names the endpoint (`renewalInfo`, §3); a certificate is named by its CertID
 * (§4.1); the answer is a window and a Retry-After saying when to ask again (§4.2, §4.3). The
 * directory is read once per CA and per day; a CA without `renewalInfo` is asked nothing more.
 * Requests trust `acme.directoryCa` and are bounded in time like every other request to the CA
 * (order.ts getFromCa).
 */
import * as x509 from "@peculiar/x509";
import { getFromCa } from "./order.ts";
import { readBounded } from "../http/bounded-body.ts";

export interface RenewalWindow {
  /** The suggested window, ms since the epoch. */
  readonly start: number;
  readonly end: number;
  /** When to ask again (Retry-After, bounded). */
  readonly retryAfterMs: number;
  readonly explanationUrl?: string;
}

/** §4.3.3: without a Retry-After, ask again in 6 hours (what the RFC suggests for polling). */
export const DEFAULT_RETRY_AFTER_MS = 6 * 3_600_000;
/** A Retry-After is taken within these bounds: not a tight loop, and at least daily (§4.3.3). */
export const MIN_RETRY_AFTER_MS = 1_000;
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
/** A directory or a window is a few hundred bytes; an answer over this is refused unread. */
const MAX_ANSWER_BYTES = 65_536;
/** A directory is read again after this long (a CA may add ARI). */
const DIRECTORY_TTL_MS = 24 * 3_600_000;

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/**
 * RFC 9773 §4.1: base64url(the Authority Key Identifier's keyIdentifier) "." base64url(the
 * serial number's DER content octets, a leading zero kept). Undefined for a certificate with no
 * AKI keyIdentifier (no CA-issued certificate lacks one: RFC 5280 §4.2.1.1).
 */
export function certId(pem: string): string | undefined {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (block === undefined) return undefined;
  const cert = new x509.X509Certificate(block);
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
  if (aki?.keyId === undefined) return undefined;
  return `${base64url(Buffer.from(aki.keyId, "hex"))}.${base64url(serialOctets(cert.serialNumber))}`;
}

/**
 * A serial number's DER content octets (X.690 §8.3: two's complement, shortest form) from its
 * hex: a serial whose first byte has the high bit set takes a leading 00, or it would read as
 * negative. @peculiar/x509 and node both give the hex without it (measured: 8A01... for the
 * octets 00 8A 01 ...), and a CertID without it names no certificate the CA knows.
 */
export function serialOctets(hex: string): Buffer {
  const even = hex.length % 2 === 1 ? `0${hex}` : hex;
  const bytes = Buffer.from(even, "hex");
  return bytes.length > 0 && bytes[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
}

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date; bounded; the default without one. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number {
  if (header === undefined || header.trim() === "") return DEFAULT_RETRY_AFTER_MS;
  const v = header.trim();
  // An HTTP-date starts with a day name (IMF-fixdate, and the obsolete rfc850 and asctime forms).
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : /^[A-Za-z]{3}/.test(v) ? Date.parse(v) - now : NaN;
  if (!Number.isFinite(ms)) return DEFAULT_RETRY_AFTER_MS;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, ms));
}

const directories = new Map<string, { at: number; renewalInfo: Promise<string | undefined> }>();

/** The directory's renewalInfo URL, or undefined when the CA offers no ARI. */
function renewalInfoUrl(directory: string): Promise<string | undefined> {
  const known = directories.get(directory);
  if (known !== undefined && Date.now() - known.at < DIRECTORY_TTL_MS) return known.renewalInfo;
  const renewalInfo = getFromCa(directory).then(async (r) => {
    if (!r.ok) {
      await r.body?.cancel();
      throw new Error(`the directory answered ${r.status}`);
    }
    const text = await readBounded(r, MAX_ANSWER_BYTES);
    if (text === undefined) throw new Error(`the directory answered more than ${MAX_ANSWER_BYTES} bytes`);
    const url = (JSON.parse(text) as { renewalInfo?: unknown }).renewalInfo;
    return typeof url === "string" && url.startsWith("https://") ? url : undefined;
  });
  // A failure is not kept: the next poll reads the directory again.
  renewalInfo.catch(() => directories.delete(directory));
  directories.set(directory, { at: Date.now(), renewalInfo });
  return renewalInfo;
}

/**
 * What a renewal's order names as `replaces` (RFC 9773 §5): the CertID of the certificate in
 * `pem` when the CA offers ARI, else undefined (also when its directory cannot be read: the
 * order goes without, as to a CA without ARI).
 */
export async function replacesFor(directory: string, pem: string): Promise<string | undefined> {
  try {
    return (await renewalInfoUrl(directory)) === undefined ? undefined : certId(pem);
  } catch {
    return undefined;
  }
}

/**
 * The CA's window for the certificate in `pem`; undefined when the CA offers no ARI or the
 * certificate has no CertID. Throws when the CA cannot be asked or answers what §4.2 does not
 * allow (the caller logs it and falls back to its own schedule).
 */
export async function renewalWindow(directory: string, pem: string): Promise<RenewalWindow | undefined> {
  const base = await renewalInfoUrl(directory);
  if (base === undefined) return undefined;
  const id = certId(pem);
  if (id === undefined) return undefined;
  const r = await getFromCa(`${base.replace(/\/+$/, "")}/${id}`);
  if (r.status !== 200) {
    await r.body?.cancel();
    throw new Error(`renewalInfo answered ${r.status}`);
  }
  // A window is a few hundred bytes: anything much larger is not one, and is not buffered.
  const text = await readBounded(r, MAX_ANSWER_BYTES);
  if (text === undefined) throw new Error(`renewalInfo answered more than ${MAX_ANSWER_BYTES} bytes`);
  const body = JSON.parse(text) as { suggestedWindow?: { start?: unknown; end?: unknown }; explanationURL?: unknown };
  const start = typeof body.suggestedWindow?.start === "string" ? Date.parse(body.suggestedWindow.start) : NaN;
  const end = typeof body.suggestedWindow?.end === "string" ? Date.parse(body.suggestedWindow.end) : NaN;
  // §4.2: the window's end MUST be after its start.
  if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) throw new Error(`renewalInfo answered no valid suggestedWindow: ${JSON.stringify(body).slice(0, 200)}`);
  return {
    start, end,
    retryAfterMs: retryAfterMs(r.headers.get("retry-after") ?? undefined),
    ...(typeof body.explanationURL === "string" ? { explanationUrl: body.explanationURL } : {}),
  };
}

/** §4.2: a uniformly random time in the window (so that clients spread out). */
export function pickInWindow(w: Pick<RenewalWindow, "start" | "end">, random = Math.random): number {
  return w.start + (w.end - w.start) * random();
}
