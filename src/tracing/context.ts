/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): reading and writing `traceparent`,
 * and making trace and span ids. Pure functions, no allocation on the reading side: the
 * forwarding loop calls them on every request while tracing is on.
 */

/** 0-9, a-f: the only hex the header allows (§3.2.2.2: lowercase). */
function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
}

/** Hex digits from `from` to `to`, all of them lowercase hex and not all "0". */
function validId(v: string, from: number, to: number): boolean {
  let nonZero = false;
  for (let i = from; i < to; i++) {
    const c = v.charCodeAt(i);
    if (!isHex(c)) return false;
    if (c !== 48) nonZero = true;
  }
  return nonZero;
}

/**
 * A `traceparent` this proxy accepts: version "00" and exactly 55 characters,
 * `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`, ids not all zeros (§3.2.2.3,
 * §3.2.2.4). Stricter than §3.2.4 allows for future versions, on purpose: a version we do not
 * know is treated as absent, and a new trace is started (§3.2.4: "If the vendor failed to
 * parse traceparent, it MUST NOT attempt to parse tracestate").
 */
export function validTraceparent(v: string | null): v is string {
  if (v === null || v.length !== 55) return false;
  if (v.charCodeAt(0) !== 48 || v.charCodeAt(1) !== 48) return false;
  if (v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return false;
  return validId(v, 3, 35) && validId(v, 36, 52) && isHex(v.charCodeAt(53)) && isHex(v.charCodeAt(54));
}

/** The sampled flag (bit 0 of trace-flags, §3.2.2.5) of a valid traceparent. */
export function sampledFlag(v: string): boolean {
  const low = v.charCodeAt(54);
  return ((low <= 57 ? low - 48 : low - 87) & 1) === 1;
}

export const traceIdOf = (traceparent: string): string => traceparent.slice(3, 35);
export const parentIdOf = (traceparent: string): string => traceparent.slice(36, 52);

export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}

/**
 * Random hex for ids, from a pool of 4 KiB of the system's CSPRNG turned to hex at once (one
 * crypto call and one native hex conversion per 128 trace ids; an id is then a slice). Built
 * char by char, an id cost 600-750 ns, most of a not-sampled request's tracing. W3C Trace
 * Context §3.2.2.3: a trace id should be random in at least its rightmost 7 bytes (the sampler
 * reads them: sampler.ts).
 */
const POOL_BYTES = 4096;
const random = new Uint8Array(POOL_BYTES);
let hex = "";
let at = 0;

function hexChars(n: number): string {
  if (at + n > hex.length) {
    crypto.getRandomValues(random);
    hex = Buffer.from(random.buffer, random.byteOffset, random.byteLength).toString("hex");
    at = 0;
  }
  const s = hex.slice(at, at + n);
  at += n;
  return s;
}

const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/** A new trace id: 32 lowercase hex, never all zeros (§3.2.2.3). */
export function newTraceId(): string {
  let id = hexChars(32);
  while (id === ZERO_TRACE) id = hexChars(32);
  return id;
}

/** A new span id: 16 lowercase hex, never all zeros (§3.2.2.4). */
export function newSpanId(): string {
  let id = hexChars(16);
  while (id === ZERO_SPAN) id = hexChars(16);
  return id;
}
