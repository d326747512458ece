/**
 * Durations and sizes as people write them in config files.
 * Parsed once at load time; the rest of the program sees plain numbers (ms, bytes).
 */

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i;
const DURATION_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "250ms", "5s", "1m", "1h", "1.5s" or a number of milliseconds. Returns undefined when malformed. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = DURATION.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNIT[(m[2] ?? "ms").toLowerCase()]!);
}

const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$/i;
// KB/MB/GB are binary here, as in nginx's client_max_body_size and HAProxy's bufsize: a
// "64KB" buffer is 65536 bytes. KiB/MiB/GiB are accepted as explicit spellings of the same.
const SIZE_UNIT: Record<string, number> = {
  b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

/** "64KB", "128MB", "1GB" or a number of bytes. Returns undefined when malformed. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? value : undefined;
  const m = SIZE.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNIT[(m[2] ?? "b").toLowerCase()]!);
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
