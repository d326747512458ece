/**
 * `log.only`: which requests are logged. Decided from three numbers the loop has anyway (status,
 * duration, error code), before any entry or string is built, so a request filtered out costs a
 * comparison.
 *
 * - `errors`: status 500 or above, or a line with an SY_ code (the proxy answered itself, a
 *   body was cut by the backend, the client went away: docs/errors.md).
 * - `slower:DURATION` (`slower:500ms`): requests that took at least that long, first byte in to
 *   last byte out.
 * - `sample:RATIO` (`sample:0.1`): each request with that probability, independently.
 */
import { parseDuration } from "../config/units.ts";

export type AccessFilter = (status: number, durationMs: number, error: string | undefined) => boolean;

export const ONLY_HINT = 'expected "errors", "slower:DURATION" (e.g. "slower:500ms") or "sample:RATIO" (a number above 0 and at most 1, e.g. "sample:0.1")';

/** The filter `only` says, or undefined when it is not one (the schema's check says so). */
export function parseOnly(only: string): AccessFilter | undefined {
  if (only === "errors") return (status, _ms, error) => status >= 500 || error !== undefined;
  const colon = only.indexOf(":");
  if (colon < 0) return undefined;
  const kind = only.slice(0, colon);
  const arg = only.slice(colon + 1);
  if (kind === "slower") {
    const ms = /^\d/.test(arg) ? parseDuration(arg) : undefined;
    return ms === undefined ? undefined : (_status, durationMs) => durationMs >= ms;
  }
  if (kind === "sample") {
    const ratio = /^(0|1)?(\.\d+)?$/.test(arg) && arg !== "" ? Number(arg) : NaN;
    if (!(ratio > 0 && ratio <= 1)) return undefined;
    return () => Math.random() < ratio;
  }
  return undefined;
}
