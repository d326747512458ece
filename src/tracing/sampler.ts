/**
 * Which new traces are recorded: OpenTelemetry's TraceIdRatioBased, in the form of its
 * consistent probability sampling (OTel spec, "TraceIdRatioBased" and "Probability sampling"):
 * the rightmost 56 bits of the trace id, random by W3C Trace Context Level 2 §3.2.2.3, are
 * compared with a threshold. Deterministic: every component that sees the trace id and uses the
 * same ratio decides alike, and a lower ratio's traces are a subset of a higher one's.
 */

const TWO_56 = 2 ** 56;
const TWO_28 = 2 ** 28;

/** The threshold for a ratio: a trace is recorded when its random part is below it. */
export function ratioThreshold(ratio: number): number {
  return ratio >= 1 ? TWO_56 : Math.max(0, Math.floor(ratio * TWO_56));
}

/** The rightmost 7 bytes (14 hex digits) of a 32-hex trace id, as a number below 2^56 (exact in a double). */
export function randomPart(traceId: string): number {
  return parseInt(traceId.slice(18, 25), 16) * TWO_28 + parseInt(traceId.slice(25, 32), 16);
}

/** The trace is sampled at the ratio whose threshold is `threshold`. */
export function sampledAt(traceId: string, threshold: number): boolean {
  if (threshold >= TWO_56) return true;
  if (threshold <= 0) return false;
  return randomPart(traceId) < threshold;
}
