/**
 * Simulated response latency: a fixed delay ("50") or a uniform range ("10-100"),
 * in whole milliseconds.
 */

export interface Latency {
  /** Shortest delay, milliseconds. */
  min: number;
  /** Longest delay, milliseconds (inclusive). */
  max: number;
}

/** No added delay. */
export const NO_LATENCY: Latency = { min: 0, max: 0 };

/**
 * Upper bound for either end of a range. Timers overflow past 2^31-1 ms (they would fire at
 * once), and an hour is already far more than any test or demo wants.
 */
export const MAX_LATENCY_MS = 3_600_000;

const EXPECTED = 'expected milliseconds like "50" or a range like "10-100"';

/**
 * Parses `"50"` → {50, 50}, `"10-100"` → {10, 100}, or a number of milliseconds.
 * Throws an Error naming the bad input and what was expected.
 */
export function parseLatency(text: string | number): Latency {
  if (typeof text === "number") return checkLatency(text, text, String(text));
  if (text.trim().startsWith("-")) {
    throw new Error(`invalid latency ${JSON.stringify(text)}: latency cannot be negative`);
  }
  const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(text);
  if (!match) throw new Error(`invalid latency ${JSON.stringify(text)}: ${EXPECTED}`);
  const min = Number(match[1]);
  const max = match[2] === undefined ? min : Number(match[2]);
  return checkLatency(min, max, JSON.stringify(text));
}

/**
 * Accepts what the control endpoint may be sent: a string or number (see parseLatency)
 * or an object `{min, max}`.
 */
export function latencyFrom(value: unknown): Latency {
  if (typeof value === "string" || typeof value === "number") return parseLatency(value);
  if (typeof value === "object" && value !== null && "min" in value && "max" in value) {
    const { min, max } = value;
    if (typeof min === "number" && typeof max === "number") {
      return checkLatency(min, max, JSON.stringify(value));
    }
  }
  throw new Error(`invalid latency ${JSON.stringify(value)}: ${EXPECTED}, or {"min": 10, "max": 100}`);
}

/** Validates a range (whole, non-negative, min <= max, within MAX_LATENCY_MS) and returns it. */
export function checkLatency(min: number, max: number, shown = `${min}-${max}`): Latency {
  for (const n of [min, max]) {
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`invalid latency ${shown}: ${n} is not a whole, non-negative number of milliseconds`);
    }
    if (n > MAX_LATENCY_MS) {
      throw new Error(`invalid latency ${shown}: ${n} ms is more than the maximum of ${MAX_LATENCY_MS} ms`);
    }
  }
  if (min > max) throw new Error(`invalid latency ${shown}: minimum ${min} is greater than maximum ${max}`);
  return { min, max };
}

/** A random whole number of milliseconds in [min, max]. */
export function pickLatency({ min, max }: Latency): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}
