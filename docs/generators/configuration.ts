/**
 * docs/configuration.md, rendered from the config schema (src/config/schema.ts): every option
 * with its path, its type in words, its default and its meaning (the option's v.description).
 *
 * The walk reads valibot's schema objects as they are at run time: optional wrappers (and their
 * defaults), objects, unions (`false | {...}`), arrays (`backends[]`), picklists, literals,
 * records and pipes with their checks (min/max values and lengths, integer, startsWith). What
 * the structure cannot say comes from the OptionDoc metadata beside the description.
 */
import * as v from "valibot";
import { ConfigSchema, type OptionDoc } from "../../src/config/schema.ts";
import { formatDuration } from "../../src/config/units.ts";

/** The parts of a valibot schema or pipe item this walk reads. */
interface Node {
  kind: string;
  type: string;
  pipe?: readonly Node[];
  wrapped?: Node;
  default?: unknown;
  options?: readonly unknown[];
  item?: Node;
  entries?: Record<string, Node>;
  literal?: unknown;
  requirement?: unknown;
  metadata?: Record<string, unknown>;
}

export interface Option {
  /** e.g. "retry.budget.percent", "backends[].tls.ca". */
  path: string;
  /** The top-level key it belongs under, or undefined for a top-level scalar. */
  section: string | undefined;
  /** The type in words (Markdown). */
  type: string;
  /** The default in words (Markdown): a value, "required", "none" or the OptionDoc's text. */
  default: string;
  /** The default as a value: the schema's, or the OptionDoc's defaultValue; undefined when neither. */
  defaultValue: unknown;
  description: string | undefined;
  /** It has fields of its own (an object, a list of objects, or an object or `false`). */
  hasFields: boolean;
}

/** Every option of `schema` in schema order, parents before their fields. */
export function configOptions(schema: v.GenericSchema = ConfigSchema): Option[] {
  const out: Option[] = [];
  walk((schema as unknown as Node).entries ?? {}, "", undefined, out);
  return out;
}

/** Options without a description: the paths, for a test to name. */
export function undocumentedOptions(schema: v.GenericSchema = ConfigSchema): string[] {
  return configOptions(schema).filter((o) => !o.description?.trim()).map((o) => o.path);
}

function walk(entries: Record<string, Node>, prefix: string, section: string | undefined, out: Option[]): void {
  for (const [key, entry] of Object.entries(entries)) {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    const optional = entry.type === "optional" || entry.type === "exact_optional" || entry.type === "nullish";
    const inner = optional ? entry.wrapped! : entry;
    const meta = docOf(inner);
    const fields = meta.fieldsAt === undefined ? objectsIn(inner, path) : [];
    out.push({
      path,
      section: section ?? (fields.length > 0 ? key : undefined),
      type: typeWords(inner) + (meta.fieldsAt === undefined ? "" : `; its fields are those of [${code(meta.fieldsAt)}](#${anchor(meta.fieldsAt)})`),
      default: optional ? defaultWords(entry, inner, meta) : "required",
      defaultValue: optional ? defaultValueOf(entry, meta) : undefined,
      description: v.getDescription(inner as unknown as v.GenericSchema),
      hasFields: fields.length > 0 || meta.fieldsAt !== undefined,
    });
    for (const f of fields) walk(f.entries, f.prefix, section ?? key, out);
  }
}

/** The objects whose fields are options below `path`: the value itself, a union's, a list's items. */
function objectsIn(node: Node, path: string): { entries: Record<string, Node>; prefix: string }[] {
  if (node.entries) return [{ entries: node.entries, prefix: path }];
  if (node.type === "union") return (node.options as Node[]).flatMap((o) => objectsIn(o, path));
  if (node.type === "array" && node.item) return objectsIn(node.item, `${path}[]`);
  return [];
}

/** The pipes of `node`, outermost first: its own, then those of the schemas it pipes on. */
function pipeChain(node: Node): Node[][] {
  if (!node.pipe) return [];
  const nested = node.pipe.filter((item, i) => item.kind === "schema" && (i > 0 || item !== node) && item.pipe);
  return [[...node.pipe].reverse(), ...nested.flatMap(pipeChain)];
}

/** The OptionDoc metadata of `node`; an outer pipe's entry wins over one it pipes on. */
function docOf(node: Node): OptionDoc {
  const found = pipeChain(node)
    .flat()
    .filter((item) => item.kind === "metadata" && item.type === "metadata")
    .map((item) => item.metadata as OptionDoc);
  return Object.assign({}, ...found.reverse());
}

interface Checks {
  min?: number;
  max?: number;
  minLength?: number;
  integer: boolean;
  nonEmpty: boolean;
  startsWith?: string;
}

/** The checks of a pipe chain, the tightest of each kind. */
function checksOf(node: Node): Checks {
  const c: Checks = { integer: false, nonEmpty: false };
  for (const item of pipeChain(node).flat()) {
    if (item.kind !== "validation") continue;
    const r = item.requirement;
    if (item.type === "min_value") c.min = Math.max(c.min ?? -Infinity, r as number);
    else if (item.type === "max_value") c.max = Math.min(c.max ?? Infinity, r as number);
    else if (item.type === "min_length") c.minLength = Math.max(c.minLength ?? 0, r as number);
    else if (item.type === "integer") c.integer = true;
    else if (item.type === "non_empty") c.nonEmpty = true;
    else if (item.type === "starts_with") c.startsWith = r as string;
  }
  return c;
}

const code = (text: string) => `\`${text}\``;
const plural = (word: string, many: boolean) => (many ? `${word}s` : word);

/** The type of `node` in words: "whole number from 1 to 1000", "object or `false`". */
export function typeWords(node: Node, many = false): string {
  const meta = docOf(node);
  if (meta.type !== undefined) return many ? (meta.plural ?? `${meta.type}s`) : meta.type;
  const checks = checksOf(node);
  if (meta.unit !== undefined) return plural(meta.unit, many) + rangeWords(checks, meta.unit);
  switch (node.type) {
    case "number":
      return plural(checks.integer ? "whole number" : "number", many) + rangeWords(checks);
    case "string":
      if (checks.startsWith !== undefined) return `${plural("string", many)} starting with ${code(JSON.stringify(checks.startsWith))}`;
      if (checks.minLength !== undefined) return `${plural("string", many)} of at least ${checks.minLength} characters`;
      return (checks.nonEmpty ? "non-empty " : "") + plural("string", many);
    case "boolean":
      return `${code("true")} or ${code("false")}`;
    case "literal":
      return code(JSON.stringify(node.literal));
    case "picklist": {
      const names = (node.options as string[]).map((o) => code(JSON.stringify(o)));
      if (names.length > 3) return `one of ${names.join(", ")}`;
      return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`;
    }
    case "union": {
      // `false` last: "object or `false`" reads as the object with a way to turn it off.
      const options = [...(node.options as Node[])].sort((a, b) => Number(isFalse(a)) - Number(isFalse(b)));
      return options.map((o) => typeWords(o, many)).join(" or ");
    }
    case "array":
      return `list of ${typeWords(node.item!, true)}${checks.minLength ? `, at least ${checks.minLength}` : ""}`;
    case "object":
    case "strict_object":
    case "loose_object":
    case "record":
      return plural("object", many);
    default:
      return node.type;
  }
}

const isFalse = (node: Node) => node.type === "literal" && node.literal === false;

function rangeWords(c: Checks, unit?: OptionDoc["unit"]): string {
  const show = (n: number) => (unit === undefined ? String(n) : formatUnit(n, unit));
  if (c.min !== undefined && c.max !== undefined) return ` from ${show(c.min)} to ${show(c.max)}`;
  if (c.min !== undefined) {
    if (c.min === 0) return ", 0 or more";
    // A duration checked to be at least 1ms is one that must be more than zero.
    return unit === "duration" && c.min === 1 ? ", more than 0" : `, at least ${show(c.min)}`;
  }
  if (c.max !== undefined) return `, at most ${show(c.max)}`;
  return "";
}

function formatUnit(n: number, unit: NonNullable<OptionDoc["unit"]>): string {
  return unit === "duration" ? formatDuration(n) : formatSize(n);
}

/** Bytes as the config would write them: "64KB", "128MB" (binary units, as units.ts parses). */
function formatSize(bytes: number): string {
  for (const [suffix, factor] of [["GB", 1024 ** 3], ["MB", 1024 ** 2], ["KB", 1024]] as const) {
    if (bytes > 0 && bytes % factor === 0) return `${bytes / factor}${suffix}`;
  }
  return String(bytes);
}

function defaultWords(entry: Node, inner: Node, meta: OptionDoc): string {
  if (meta.defaultText !== undefined) return meta.defaultText;
  const value = defaultValueOf(entry, meta);
  if (value === undefined) return "none";
  const shown = code(formatValue(value, meta.unit));
  // On a `false | {...}` option, say what the default means.
  if (inner.type === "union" && (inner.options as Node[]).some(isFalse)) return value === false ? `${shown} (off)` : `${shown} (on)`;
  return shown;
}

function defaultValueOf(entry: Node, meta: OptionDoc): unknown {
  return entry.default !== undefined ? v.getDefault(entry as unknown as v.GenericSchema) : meta.defaultValue;
}

/** A value as it would be written in a JSON config, durations and sizes in their units. */
function formatValue(value: unknown, unit: OptionDoc["unit"]): string {
  if (typeof value === "number" && unit !== undefined && value !== 0) return JSON.stringify(formatUnit(value, unit));
  if (Array.isArray(value)) return `[${value.map((x) => formatValue(x, unit)).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value).map(([k, x]) => `${JSON.stringify(k)}: ${formatValue(x, undefined)}`);
    return fields.length === 0 ? "{}" : `{ ${fields.join(", ")} }`;
  }
  return JSON.stringify(value);
}

/** The smallest config, in each format; the test validates every one, so the page cannot lie. */
export const EXAMPLES = [
  {
    format: "json",
    file: "switchyard.json",
    text: `{
  "backends": [
    { "url": "http://127.0.0.1:5001" },
    { "url": "http://127.0.0.1:5002" }
  ]
}
`,
  },
  {
    format: "yaml",
    file: "switchyard.yaml",
    text: `backends:
  - url: http://127.0.0.1:5001
  - url: http://127.0.0.1:5002
`,
  },
  {
    format: "toml",
    file: "switchyard.toml",
    text: `[[backends]]
url = "http://127.0.0.1:5001"

[[backends]]
url = "http://127.0.0.1:5002"
`,
  },
] as const;

/** The seed format, which loads unchanged (src/config/load.ts maps lb_port onto listen.port). */
export const SEED_EXAMPLE = `{
  "lb_port": 8000,
  "backends": [
    { "name": "backend-1", "url": "http://127.0.0.1:5001" },
    { "name": "backend-2", "url": "http://127.0.0.1:5002" }
  ]
}
`;

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");

function anchor(heading: string): string {
  return heading.toLowerCase().replace(/[^a-z0-9 -]/g, "").replaceAll(" ", "-");
}

export function renderConfiguration(): string {
  const options = configOptions();
  const general = options.filter((o) => o.section === undefined);
  const sections = [...new Set(options.flatMap((o) => (o.section === undefined ? [] : [o.section])))];
  const row = (o: Option) => `| ${code(o.path)} | ${cell(o.type)} | ${cell(o.default)} | ${cell(o.description ?? "")} |`;
  const header = ["| option | type | default | meaning |", "| --- | --- | --- | --- |"];

  const lines: string[] = [
    "# Configuration",
    "",
    "<!-- Generated by `bun run docs` (docs/generate.ts) from src/config/schema.ts, where each option's",
    "     meaning is its v.description. Edit the schema, not this file: a test fails when they differ. -->",
    "",
    "Switchyard reads one config file: JSON (`.json`), YAML (`.yaml`, `.yml`) or TOML (`.toml`), told",
    "apart by the file's extension. A file describes listeners (each HTTP, layer 7, or TCP, layer 4),",
    "named pools of backends, and routes that take each request to a pool ([routing.md](routing.md)).",
    "Its smallest form is one list of `backends`: one listener, one pool and one route, each named",
    "`default`; `switchyard check` prints any file in that expanded form. Only `backends` (or",
    "`pools`) is required; every other option has a default. The same smallest config in each format:",
    "",
  ];
  for (const e of EXAMPLES) lines.push(`${e.file}:`, "", "```" + e.format, e.text.trimEnd(), "```", "");
  lines.push(
    "The seed format loads unchanged: `lb_port` is read as `listen.port` (a file that sets both is",
    "refused).",
    "",
    "```json",
    SEED_EXAMPLE.trimEnd(),
    "```",
    "",
    "Fuller examples, which a test keeps valid: [examples/switchyard.yaml](../examples/switchyard.yaml)",
    "(every HTTP-mode section), [examples/tcp-redis.toml](../examples/tcp-redis.toml) (TCP mode),",
    "[examples/dns-discovery.yaml](../examples/dns-discovery.yaml) (backends found through DNS) and",
    "[examples/demo.json](../examples/demo.json) (what `switchyard demo` runs).",
    "",
    "## Values",
    "",
    '- **Durations** are written `"250ms"`, `"5s"`, `"1m"`, `"1h"` (or `"1.5s"`), or as a number of',
    "  milliseconds.",
    '- **Sizes** are written `"64KB"`, `"128MB"`, `"1GB"` (binary units, as nginx: 1KB is 1024 bytes;',
    "  `KiB`, `MiB` and `GiB` mean the same), or as a number of bytes.",
    "- An option whose type ends in \"or `false`\" is a feature that `false` turns off; an empty object",
    "  `{}` turns it on with the defaults of its fields.",
    "- A path such as `backends[].weight` is the field `weight` of every entry of the list `backends`.",
    "",
    "## Checking a file",
    "",
    "`switchyard check --config FILE` validates a file exactly as `serve` does and prints it",
    "normalized: every default filled in, durations in milliseconds, sizes in bytes, backend URLs in",
    "full. It exits 0, or prints every problem at once and exits 2. Each problem names the field, the",
    "value and what was expected; an unknown key is an error (with a suggestion when a known one is",
    "close), and so is a key written twice in a YAML or JSON file (their parsers would silently keep",
    "the last):",
    "",
    "```",
    "switchyard: invalid configuration",
    "switchyard.json: 2 problems",
    '  - backends[0].wieght: unknown option; did you mean "weight"?',
    '  - retry.perTryTimeout: got "5x", expected a duration like "250ms", "5s", "1m" or a number of milliseconds',
    "```",
    "",
    "The flags of `switchyard serve` (`--port`, `--backend`, `--strategy`, `--engine`, `--workers`",
    "...) override the file's values; see the README's \"Command line\".",
    "",
    "## Options",
    "",
    `- [General](#general): ${general.map((o) => code(o.path)).join(", ")}`,
    ...sections.map((s) => `- [${code(s)}](#${anchor(s)})`),
    "",
    "### General",
    "",
    ...header,
    ...general.map(row),
  );
  for (const s of sections) {
    const [top, ...fields] = options.filter((o) => o.section === s);
    lines.push("", `### ${code(s)}`, "", top!.description ?? "", "");
    lines.push(`Type: ${top!.type}. Default: ${top!.default}.`, "");
    if (fields.length > 0) lines.push(...header, ...fields.map(row));
  }
  lines.push("");
  return lines.join("\n");
}
