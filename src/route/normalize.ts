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

/**
 * A path with a "%", a backslash or what may be a dot segment. Escapes that are already normal (an
 * upper-case escape of a reserved or non-ASCII byte, "%C3%A9") change nothing, so such a path
 * still comes back as the same string; only what changes is copied, a run at a time.
 */
function slowNormalize(path: string): string | PathRefusal {
  // 1. Percent-encoding (§6.2.2.1, §6.2.2.2).
  const n = path.length;
  let out = "";
  let from = 0;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === 92) return refusals.backslash;
    if (c !== 37) continue;
    const hi = i + 2 < n ? hexValue(path.charCodeAt(i + 1)) : -1;
    const lo = hi === -1 ? -1 : hexValue(path.charCodeAt(i + 2));
    if (lo === -1) return refusals.escape;
    const byte = hi * 16 + lo;
    if (byte === 0x2f) return refusals.slash;
    if (byte === 0x5c) return refusals.backslash;
    if (byte === 0) return refusals.nul;
    if (isUnreserved(byte)) {
      out += path.slice(from, i) + String.fromCharCode(byte);
      from = i + 3;
    } else if (path.charCodeAt(i + 1) >= 97 || path.charCodeAt(i + 2) >= 97) {
      // Lower-case hex digits: upper-cased (§6.2.2.1).
      out += path.slice(from, i) + "%" + HEX[hi] + HEX[lo];
      from = i + 3;
    }
    i += 2;
  }
  const decoded = from === 0 ? path : out + path.slice(from);
  // 2. Dot segments (§5.2.4), only when there is one.
  if (!hasDotSegment(decoded)) return decoded;
  const segments = decoded.split("/");
  const kept: string[] = [];
  // segments[0] is "" (before the leading "/").
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === ".") {
      // "/a/." is "/a/": the directory itself.
      if (last) kept.push("");
      continue;
    }
    if (seg === "..") {
      if (kept.length === 0) return refusals.climb;
      kept.pop();
      if (last) kept.push("");
      continue;
    }
    kept.push(seg);
  }
  return "/" + kept.join("/");
}

/** Whether a "." or ".." segment is in `path` (which starts with "/"). */
function hasDotSegment(path: string): boolean {
  const n = path.length;
  for (let i = path.indexOf("/."); i !== -1; i = path.indexOf("/.", i + 1)) {
    const d = i + 2 < n ? path.charCodeAt(i + 2) : 47;
    if (d === 47) return true;
    if (d === 46 && (i + 3 >= n || path.charCodeAt(i + 3) === 47)) return true;
  }
  return false;
}

/** Whether `value` is a refusal rather than a path. */
export function isRefusal(value: string | PathRefusal): value is PathRefusal {
  return typeof value !== "string";
}
