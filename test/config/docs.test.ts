/**
 * docs/configuration.md is generated from the config schema (bun run docs): it must match what
 * the generator makes of the schema now, every option must have a description, and what the page
 * states beside the schema (defaults filled in by the code, the example configs) must hold.
 */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { DOCUMENTS, staleDocuments } from "../../docs/generate.ts";
import { EXAMPLES, SEED_EXAMPLE, configOptions, undocumentedOptions } from "../../docs/generators/configuration.ts";
import { DEFAULT_DNS_REFRESH_MS, parseConfigText, validateConfig } from "../../src/config/load.ts";
import { CHECK_DEFAULTS } from "../../src/health/check.ts";

describe("generated documents", () => {
  // Every entry of DOCUMENTS, so that a document added there is kept fresh too.
  for (const doc of DOCUMENTS) {
    test(`${doc.file} matches ${doc.source}`, async () => {
      const stale = await staleDocuments([doc]);
      if (stale.length > 0) throw new Error(stale.join("\n"));
    });
  }

  test("a document that differs is reported by name, with the command that fixes it", async () => {
    const changed = { ...DOCUMENTS[0]!, render: () => "not what is on disk\n" };
    expect(await staleDocuments([changed])).toEqual([`${changed.file} is stale: run bun run docs`]);
  });
});

describe("docs/configuration.md", () => {
  test("every option has a description", () => {
    const missing = undocumentedOptions();
    if (missing.length > 0) throw new Error(`options without a description (add v.description in src/config/schema.ts): ${missing.join(", ")}`);
  });

  test("an option without a description is found, in objects, unions and lists alike", () => {
    const schema = v.strictObject({
      documented: v.optional(v.pipe(v.number(), v.description("has one")), 1),
      plain: v.optional(v.string()),
      section: v.optional(v.pipe(v.union([v.literal(false), v.strictObject({ inner: v.boolean() })]), v.description("has one"))),
      list: v.pipe(v.array(v.strictObject({ item: v.pipe(v.string(), v.description("has one")), bare: v.number() })), v.description("has one")),
    });
    expect(undocumentedOptions(schema)).toEqual(["plain", "section.inner", "list[].bare"]);
  });

  test("the page lists every option of the schema, with its path, type and default", () => {
    const options = configOptions();
    const byPath = new Map(options.map((o) => [o.path, o]));
    expect(options.length).toBeGreaterThan(100);
    expect(byPath.get("retry.budget.percent")).toMatchObject({ type: "number from 0 to 100", default: "`20`", section: "retry" });
    expect(byPath.get("retry.budget")).toMatchObject({ type: "object or `false`", default: "`{}` (on)" });
    expect(byPath.get("passive.failurePercentage")).toMatchObject({ type: "object or `false`", default: "`false` (off)" });
    expect(byPath.get("backends")).toMatchObject({ type: "list of objects, at least 1", default: "required, unless `pools` is given" });
    expect(byPath.get("backends[].weight")).toMatchObject({ type: "whole number from 1 to 1000", default: "`1`" });
    expect(byPath.get("retry.perTryTimeout")).toMatchObject({ type: "duration, more than 0", default: '`"5s"`' });
    expect(byPath.get("limits.maxBodySize")).toMatchObject({ type: "size", default: '`"128MB"`' });
    expect(byPath.get("workers")).toMatchObject({ type: '`"auto"` or whole number from 1 to 64', section: undefined });
    // A backend's override shares the global check's fields: documented there, not twice.
    expect(byPath.has("backends[].healthCheck")).toBe(true);
    expect(byPath.has("backends[].healthCheck.interval")).toBe(false);
    expect(byPath.has("healthCheck.interval")).toBe(true);
  });

  test("defaults the code fills in are the ones the page states", () => {
    const defaults = new Map(configOptions().map((o) => [o.path, o.defaultValue]));
    for (const [field, value] of Object.entries(CHECK_DEFAULTS)) expect([field, defaults.get(`healthCheck.${field}`)]).toEqual([field, value]);
    expect(defaults.get("backends[].refresh")).toBe(DEFAULT_DNS_REFRESH_MS);
    const resolved = validateConfig({ backends: [{ dns: "api.internal", port: 80 }] }).pools.default!.backends[0]!;
    expect([resolved.type, resolved.refresh]).toEqual([defaults.get("backends[].type") as "A", defaults.get("backends[].refresh") as number]);
  });

  test("the example configs on the page are valid, and the three formats say the same", () => {
    const configs = EXAMPLES.map((e) => validateConfig(parseConfigText(e.text, e.file), e.file));
    for (const c of configs.slice(1)) expect(c).toEqual(configs[0]!);
    const seed = validateConfig(parseConfigText(SEED_EXAMPLE, "seed.json"), "seed.json");
    expect(seed.listen.port).toBe(8000);
    expect(seed.pools.default!.backends.map((b) => b.name)).toEqual(["backend-1", "backend-2"]);
  });
});
