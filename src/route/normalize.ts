/**
 * Path normalization before routing (RFC 3986 §6.2.2), so that a route sees one spelling of a
 * path and the backend is sent that same spelling (RouteMatch.target): routing on one path and
 * forwarding another is how path-based access rules get bypassed (`/admin` refused, `/%61dmin`
 * or `/public/../admin` let through to a backend that decodes them).
 *
 * What is done, in the RFC's order:
 *   1. §6.2.2.2: percent-encoded unreserved characters (ALPHA DIGIT - . _ ~, §2.3) are decoded;
 *      every other escape keeps its encoding, its hex digits upper-cased (§6.2.2.1).
 *   2. §6.2.2.3: dot segments are removed (the algorithm of §5.2.4), "." and ".." alike, also
 *      when they were written %2E.
 * Empty segments ("//") are kept: RFC 3986 gives them meaning, and merging them (nginx's
 * merge_slashes) would forward a path the client did not send.
 *
 * What is refused (the caller answers 400), and why:
 *   - %2F (an encoded "/"): decoding it changes the segments, keeping it leaves backends that
 *     decode it (many do) seeing other segments than the route did. Either way routing and the
 *     backend could disagree, so neither is safe.
 *   - %5C and a raw "\": Windows servers and some frameworks read a backslash as "/" (the same
 *     disagreement as %2F).
 *   - %00: a NUL ends the path early in C backends and file systems.
 *   - a "%" not followed by two hex digits: not a URI (§2.1), and backends read it differently.
 *   - ".." that climbs above the root ("/../etc"): §5.2.4 would silently drop it, but no client
 *     resolving relative references sends one (browsers resolve them first); it is a probe.
 *   - a path that does not start with "/" (not origin-form, RFC 9112 §3.2.1); "*" is the caller's.
 */

/** Why a path was refused: the reason for the 400. */
export interface PathRefusal {
  readonly refused: string;
}

const HEX = "0123456789ABCDEF";

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** RFC 3986 §2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126;
}

const refusals = {
  slash: { refused: 'an encoded "/" (%2F) in the path: routing and the backend could read different segments' },
  backslash: { refused: 'a backslash (\\ or %5C) in the path: some backends read it as "/"' },
  nul: { refused: "an encoded NUL (%00) in the path" },
  escape: { refused: 'a "%" in the path not followed by two hex digits (RFC 3986 §2.1)' },
  climb: { refused: 'a ".." segment above the root of the path' },
  origin: { refused: 'a request target that is not a path starting with "/" (RFC 9112 §3.2.1)' },
} as const satisfies Record<string, PathRefusal>;

/**
 * The normalized form of `path` (the request target without its query), or why it is refused.
 * Returns `path` itself, the same string, when it is already normal: no '%', no '\' and no dot
 * segment, which is nearly every request, costs one scan and no allocation.
 */
export function normalizePath(path: string): string | PathRefusal {
  const n = path.length;
  if (n === 0 || path.charCodeAt(0) !== 47) return refusals.origin;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === 37 || c === 92) return slowNormalize(path);
    // A "." right after a "/" may begin a dot segment: "/./", "/../", or at the end.
    if (c === 46 && path.charCodeAt(i - 1) === 47) {
      const d = i + 1 < n ? path.charCodeAt(i + 1) : 47;
      if (d === 47) return slowNormalize(path);
      if (d === 46 && (i + 2 >= n || path.charCodeAt(i + 2) === 47)) return slowNormalize(path);
    }
  }
  return path;
}

function slowNormalize(path: string): string | PathRefusal {
  // 1. Percent-encoding (§6.2.2.1, §6.2.2.2).
  let decoded = "";
  const n = path.length;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === 92) return refusals.backslash;
    if (c !== 37) {
      decoded += path[i];
      continue;
    }
    const hi = i + 2 < n ? hexValue(path.charCodeAt(i + 1)) : -1;
    const lo = hi === -1 ? -1 : hexValue(path.charCodeAt(i + 2));
    if (lo === -1) return refusals.escape;
    const byte = hi * 16 + lo;
    if (byte === 0x2f) return refusals.slash;
    if (byte === 0x5c) return refusals.backslash;
    if (byte === 0) return refusals.nul;
    decoded += isUnreserved(byte) ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
    i += 2;
  }
  // 2. Dot segments (§5.2.4), segment by segment; the input starts with "/".
  const segments = decoded.split("/");
  const out: string[] = [];
  // segments[0] is "" (before the leading "/").
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === ".") {
      // "/a/." is "/a/": the directory itself.
      if (last) out.push("");
      continue;
    }
    if (s === "..") {
      if (out.length === 0) return refusals.climb;
      out.pop();
      if (last) out.push("");
      continue;
    }
    out.push(s);
  }
  const result = "/" + out.join("/");
  return result === path ? path : result;
}

/** Whether `value` is a refusal rather than a path. */
export function isRefusal(value: string | PathRefusal): value is PathRefusal {
  return typeof value !== "string";
}
