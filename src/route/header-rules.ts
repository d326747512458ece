/**
 * A route's header rules (requestHeaders, responseHeaders): remove, then set, then add, applied
 * to the engines' HeaderFields (the fetch engine's Headers, the socket engine's FieldList) so
 * that both engines change headers the same way. Names are lower-cased and values parsed into
 * templates at load (template.ts); per request a rule is a lookup of its placeholders' values.
 *
 * The schema has already refused names the proxy manages (hop-by-hop fields, RFC 9110 §7.6.1,
 * and Content-Length, RFC 9112 §6.2: see route/schema.ts headerName), values with CR, LF or NUL,
 * and unknown placeholders. The values placeholders take come from the request head as the
 * engine parsed it (a Host, an X-Request-Id), which cannot hold CR or LF either.
 */
import type { HeaderFields } from "../http/fields.ts";
import { HEADER_PLACEHOLDERS, parseTemplate, type HeaderPlaceholder, type Template } from "./template.ts";

/** The values of the placeholders for one request. */
export type HeaderVars = Readonly<Record<HeaderPlaceholder, string>>;

export interface HeaderRulesConfig {
  readonly set?: Readonly<Record<string, string>>;
  readonly add?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

export class HeaderRules {
  private constructor(
    private readonly remove: readonly string[],
    private readonly setRules: readonly (readonly [string, Template<HeaderPlaceholder>])[],
    private readonly addRules: readonly (readonly [string, Template<HeaderPlaceholder>])[],
  ) {}

  /** Throws on an unknown placeholder (the schema refuses those first, naming the field). */
  static compile(config: HeaderRulesConfig): HeaderRules {
    const templates = (rec: Readonly<Record<string, string>> | undefined) =>
      Object.entries(rec ?? {}).map(([name, value]) => {
        const t = parseTemplate(value, HEADER_PLACEHOLDERS);
        if (typeof t === "string") throw new Error(`header ${name}: expected ${t}`);
        return [name.toLowerCase(), t] as const;
      });
    return new HeaderRules([...new Set((config.remove ?? []).map((n) => n.toLowerCase()))], templates(config.set), templates(config.add));
  }

  /** Whether the rules do anything, so a caller can skip building the vars. */
  get empty(): boolean {
    return this.remove.length === 0 && this.setRules.length === 0 && this.addRules.length === 0;
  }

  /** Whether a value uses a placeholder (else `apply` never reads `vars`). */
  get usesVars(): boolean {
    return [...this.setRules, ...this.addRules].some(([, t]) => t.constant === undefined);
  }

  apply(headers: HeaderFields, vars: HeaderVars): void {
    for (const name of this.remove) headers.delete(name);
    for (const [name, t] of this.setRules) headers.set(name, t.constant ?? t.fill(vars));
    for (const [name, t] of this.addRules) headers.append(name, t.constant ?? t.fill(vars));
  }
}

/** Placeholder problem of a header value, or undefined: for the schema, which names the field. */
export function headerTemplateProblem(value: string): string | undefined {
  const t = parseTemplate(value, HEADER_PLACEHOLDERS);
  return typeof t === "string" ? t : undefined;
}
