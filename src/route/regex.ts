/**
 * Patterns in routes (match.pathRegex, match.headers.NAME.regex, rewrite.regex) run on a
 * linear-time engine, RE2 as ported to JavaScript (re2js), never on the backtracking RegExp of
 * JavaScriptCore: a pattern like `^(a+)+$` takes exponential time there on a hostile path, and
 * the path and headers are the client's to choose (ReDoS). RE2 runs any pattern it accepts in
 * time linear in the input (measured: `^(a+)+$` on 5,000 "a" and a "!" in about 2 ms, where
 * RegExp never finishes), so nothing it accepts needs refusing. What it refuses are exactly the
 * constructs that need backtracking (lookaround, backreferences): those are refused at load,
 * saying why. Envoy, Traefik and Caddy route with RE2 (or Go's regexp) for the same reason.
 */
import type { RE2JS } from "re2js";

/**
 * re2js is loaded on the first pattern, not at start-up: loading it costs 5-15 ms and about
 * 6 MB of memory, which a config without patterns (most of them) should not pay. `require` is
 * synchronous, as schema checks are, and `bun build --compile` bundles it like an import.
 */
let engine: typeof RE2JS | undefined;
function re2(): typeof RE2JS {
  return (engine ??= (require("re2js") as typeof import("re2js")).RE2JS);
}

/** A compiled pattern: search semantics, as RegExp.test (anchor with ^ and $ for the whole string). */
export interface SafeRegex {
  readonly source: string;
  test(input: string): boolean;
  /** The first match replaced by `replacement` ($1, $2 ... for groups), or `input` itself when nothing matches. */
  replaceFirst(input: string, replacement: string): string;
  readonly groups: number;
}

/** Longest pattern accepted: a route's pattern is a few dozen characters; this bounds compile work. */
const MAX_PATTERN = 1000;

const BACKTRACKING: readonly [RegExp, string][] = [
  [/\(\?<?[=!]/, "lookaround ((?=, (?!, (?<=, (?<!)"],
  [/\\[1-9]|\\k</, "a backreference (\\1, \\k<name>)"],
];

/**
 * Compile `pattern`, or say what is wrong with it (text that completes "expected ...").
 * Compiling costs about 40 µs a pattern, at load only.
 */
export function compileRegex(pattern: string): SafeRegex | string {
  if (pattern.length > MAX_PATTERN) return `a pattern of at most ${MAX_PATTERN} characters`;
  let re: RE2JS;
  try {
    re = re2().compile(pattern);
  } catch (e) {
    for (const [probe, what] of BACKTRACKING) {
      if (probe.test(pattern)) {
        return `a pattern without ${what}: it needs a backtracking engine, which can take exponential time on a hostile path or header (ReDoS), so patterns run on RE2, a linear-time engine, which has no such constructs`;
      }
    }
    return `a valid RE2 regular expression (${(e as Error).message})`;
  }
  const groups = re.groupCount();
  return {
    source: pattern,
    groups,
    test: (input) => re.test(input),
    replaceFirst: (input, replacement) => re.matcher(input).replaceFirst(replacement),
  };
}

/** The highest $N a replacement refers to (0 when none), to check it against the pattern's groups. */
export function highestGroupRef(replacement: string): number {
  let max = 0;
  for (const m of replacement.matchAll(/\$(\d+)|\$\{(\d+)\}/g)) max = Math.max(max, Number(m[1] ?? m[2]));
  return max;
}
