/**
 * The README and docs/ link to each other, to sections and to files in the tree: every such
 * link must lead somewhere. Sections are found by GitHub's anchor rule (lower case, spaces to
 * hyphens, punctuation dropped).
 */
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";

const ROOT = join(import.meta.dir, "..");
const FILES = ["README.md", "CONTRIBUTING.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

function anchors(file: string): Set<string> {
  const out = new Set<string>();
  let inCode = false;
  for (const line of readFileSync(join(ROOT, file), "utf8").split("\n")) {
    if (line.startsWith("```")) inCode = !inCode;
    const m = !inCode && /^#{1,6} (.*)$/.exec(line);
    if (!m) continue;
    out.add(m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-"));
  }
  return out;
}

test("every relative link in the README and docs/ leads to a file, and every #section to a heading", () => {
  const broken: string[] = [];
  for (const file of FILES) {
    const text = readFileSync(join(ROOT, file), "utf8").replace(/```[^]*?```/g, "");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue; // http:, https:, mailto:
      const [path, hash] = target!.split("#") as [string, string | undefined];
      const resolved = path === "" ? file : normalize(join(dirname(file), path));
      if (!existsSync(join(ROOT, resolved))) {
        broken.push(`${file}: ${target} (no ${resolved})`);
        continue;
      }
      if (hash !== undefined && resolved.endsWith(".md") && !anchors(resolved).has(hash)) broken.push(`${file}: ${target} (no section #${hash} in ${resolved})`);
    }
  }
  expect(broken).toEqual([]);
});
