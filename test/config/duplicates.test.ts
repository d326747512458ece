import { describe, expect, test } from "bun:test";
import { duplicateKeys } from "../../src/config/duplicates.ts";

describe("duplicateKeys", () => {
  test("YAML: nested, in sequences, quoted, with every line", () => {
    const yaml = ["a:", "  b: 1", "  b: 2", "  b: 3", "list:", "  - x: 1", "    'x': 2", "c: 1", '"c": 2'].join("\n");
    expect(duplicateKeys(yaml, "yaml")).toEqual([
      "a.b: duplicate key (lines 2, 3 and 4); each key may appear once",
      "list[0].x: duplicate key (lines 6 and 7); each key may appear once",
      "c: duplicate key (lines 8 and 9); each key may appear once",
    ]);
  });

  test("YAML: no false duplicates from merge keys, block scalars, equal keys in separate mappings", () => {
    const yaml = ["base: &b", "  x: 1", "over:", "  <<: *b", "  x: 2", "text: |", "  k: 1", "  k: 2", "m1: { k: 1 }", "m2:", "  k: 1"].join("\n");
    expect(duplicateKeys(yaml, "yaml")).toEqual([]);
  });

  test("YAML: a one-line flow mapping's duplicate is found by name, without a line", () => {
    // Bun.YAML.parse keeps the last of the two even in the tagged copy, so nothing to report.
    expect(duplicateKeys("m: {k: 1, k: 2}\n", "yaml")).toEqual([]);
  });

  test("JSON: keys found by scanning strings, so quotes inside values never mislead", () => {
    const json = '{\n "s": "\\"a\\": 1",\n "a": {"k": 1, "k": 2},\n "b": [ {"z": 1,\n "z": 2} ]\n}';
    expect(duplicateKeys(json, "json")).toEqual([
      "a.k: duplicate key (line 3); each key may appear once",
      "b[0].z: duplicate key (lines 4 and 5); each key may appear once",
    ]);
  });
});
