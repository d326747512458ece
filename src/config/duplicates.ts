/**
 * Duplicate keys in YAML and JSON config files, with their line numbers.
 *
 * Bun.YAML.parse and JSON.parse keep the last of two equal keys without a word, so a second
 * `retry:` block would silently replace the first. Rather than write a second YAML parser, the
 * text is parsed once more with every key tagged by its line number and a running count (each
 * after an invisible separator, U+2063, so that two keys on one line differ too): keys that were one in the first parse are now distinct, and siblings
 * sharing a name before the tag are the duplicates. Tagging only ever lengthens keys, so it can
 * not invent a duplicate; what it misses (a YAML key it cannot find at a line start, as in a
 * one-line flow mapping `{a: 1, a: 2}`) is still caught by name, only without its line.
 *
 * Runs once per load, never per request.
 */

const TAG = "\u2063";

/**
 * A YAML block-mapping key at the start of a line, after indentation and any "- " sequence
 * markers: a plain key (no ":" "#" or flow characters), or a double- or single-quoted one,
 * followed by ":" and a space or the end of the line (YAML 1.2 §7.3.3, §8.2.2). "<<" is the merge
 * key: it is quoted in the tagged copy so that the merge does not happen there and keys merged
 * from an anchor are not taken for duplicates of keys that override them.
 */
const YAML_KEY = /^(\s*(?:-\s+)*)(?:(<<)|([A-Za-z0-9_$./-][^:#{}[\],]*?)|("(?:[^"\\]|\\.)*")|('(?:[^']|'')*'))(\s*:)(?=\s|$)/;

function tagYaml(text: string): string {
  let seq = 0;
  return text
    .split("\n")
    .map((line, i) => {
      const m = YAML_KEY.exec(line);
      if (!m) return line;
      const [whole, indent, merge, plain, double, single, colon] = m;
      const n = `${i + 1}${TAG}${seq++}`;
      const key = merge !== undefined ? `"<<${TAG}${n}"`
        : plain !== undefined ? `${plain.trimEnd()}${TAG}${n}`
        : (double ?? single)!.slice(0, -1) + `${TAG}${n}` + (double ?? single)!.slice(-1);
      return indent + key + colon + line.slice(whole.length);
    })
    .join("\n");
}

/** Every JSON string, matched from the start so that quotes inside strings never mislead; a key is one followed by ":". */
const JSON_STRING = /"(?:[^"\\]|\\.)*"(\s*:)?/g;

function tagJson(text: string): string {
  let line = 1;
  let scanned = 0;
  let seq = 0;
  return text.replace(JSON_STRING, (match: string, colon: string | undefined, offset: number) => {
    if (colon === undefined) return match;
    for (; scanned < offset; scanned++) if (text.charCodeAt(scanned) === 10) line++;
    const close = match.length - colon.length - 1;
    return `${match.slice(0, close)}${TAG}${line}${TAG}${seq++}${match.slice(close)}`;
  });
}

/**
 * Problems, one per duplicated key: `retry.attempts: duplicate key (lines 4 and 9); ...`.
 * Empty when there are none, or when the tagged copy does not parse (the first parse
 * succeeded, so there is nothing else to report).
 */
export function duplicateKeys(text: string, format: "yaml" | "json"): string[] {
  let tagged: unknown;
  try {
    tagged = format === "yaml" ? Bun.YAML.parse(tagYaml(text)) : JSON.parse(tagJson(text));
  } catch {
    return [];
  }
  const problems = new Set<string>();
  walk(tagged, "", problems);
  return [...problems];
}

function walk(node: unknown, path: string, problems: Set<string>): void {
  if (Array.isArray(node)) {
    node.forEach((item, i) => walk(item, `${path}[${i}]`, problems));
    return;
  }
  if (typeof node !== "object" || node === null) return;
  const lines = new Map<string, string[]>();
  for (const key of Object.keys(node)) {
    const at = key.indexOf(TAG);
    const name = at === -1 ? key : key.slice(0, at);
    const list = lines.get(name) ?? [];
    list.push(at === -1 ? "?" : key.slice(at + 1, key.indexOf(TAG, at + 1)));
    lines.set(name, list);
    // A merge key ("<<") is kept apart in the tagged copy; what it merges is checked where its anchor is.
    if (name !== "<<") walk((node as Record<string, unknown>)[key], path ? `${path}.${name}` : name, problems);
  }
  for (const [name, at] of lines) {
    if (at.length < 2 || name === "<<") continue;
    const known = [...new Set(at.filter((l) => l !== "?"))];
    const where = known.length === 0 ? "" : ` (line${known.length > 1 ? "s" : ""} ${known.join(", ").replace(/, (?=[^,]*$)/, " and ")})`;
    problems.add(`${path ? `${path}.${name}` : name}: duplicate key${where}; each key may appear once`);
  }
}
