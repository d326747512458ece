/**
 * Values with placeholders ("{host}", "{route}" ...), parsed once at load into literal parts and
 * variable names, so that filling one in per request is a concatenation, never a parse.
 * A placeholder is "{" lower-case letters and "_" "}"; any other brace is literal text, so a
 * JSON value such as `{"a":1}` needs no escaping. An unknown placeholder is refused at load.
 */

export interface Template<K extends string> {
  /** The text itself when it has no placeholder. */
  readonly constant: string | undefined;
  /** Literal parts and keys alternating: [literal, key, literal, key, ..., literal]. */
  readonly parts: readonly string[];
  fill(vars: Readonly<Record<K, string>>): string;
}

const PLACEHOLDER = /\{([a-z_]+)\}/g;

/** Parse `text`, or say what is wrong with it (text that completes "expected ..."). */
export function parseTemplate<K extends string>(text: string, known: readonly K[]): Template<K> | string {
  const parts: string[] = [];
  let last = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    const key = m[1]!;
    if (!(known as readonly string[]).includes(key)) {
      return `placeholders among ${known.map((k) => `{${k}}`).join(", ")}; {${key}} is not one`;
    }
    parts.push(text.slice(last, m.index), key);
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  if (parts.length === 1) return { constant: text, parts, fill: () => text };
  const fill = (vars: Readonly<Record<K, string>>): string => {
    let s = parts[0]!;
    for (let i = 1; i < parts.length; i += 2) s += vars[parts[i] as K] + parts[i + 1]!;
    return s;
  };
  return { constant: undefined, parts, fill };
}

/** The placeholders of header rules (requestHeaders, responseHeaders). */
export const HEADER_PLACEHOLDERS = ["client_ip", "host", "request_id", "route"] as const;
export type HeaderPlaceholder = (typeof HEADER_PLACEHOLDERS)[number];

/** The placeholders of redirect.to. */
export const REDIRECT_PLACEHOLDERS = ["host", "path", "query"] as const;
export type RedirectPlaceholder = (typeof REDIRECT_PLACEHOLDERS)[number];
