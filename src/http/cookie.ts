/**
 * The value of cookie `name` in a Cookie header ("a=1; b=2"), or undefined. Scans the string
 * in place: no split, no map per request. Bun joins repeated Cookie fields with "; " before we
 * see them, which this reads like one field. A quoted value (RFC 6265 §4.1.1 allows DQUOTEs
 * around a cookie-value) is returned without its quotes.
 */
export function cookieValue(header: string | null, name: string): string | undefined {
  if (header === null) return undefined;
  const n = header.length;
  let i = 0;
  while (i < n) {
    while (i < n && (header.charCodeAt(i) === 32 || header.charCodeAt(i) === 9)) i++;
    let end = header.indexOf(";", i);
    if (end === -1) end = n;
    if (header.startsWith(name, i) && header.charCodeAt(i + name.length) === 61 /* = */ && i + name.length < end) {
      let from = i + name.length + 1;
      let to = end;
      while (to > from && (header.charCodeAt(to - 1) === 32 || header.charCodeAt(to - 1) === 9)) to--;
      if (to - from >= 2 && header.charCodeAt(from) === 34 && header.charCodeAt(to - 1) === 34) {
        from++;
        to--;
      }
      return header.slice(from, to);
    }
    i = end + 1;
  }
  return undefined;
}
