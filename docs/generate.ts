/**
 * Writes every generated document (`bun run docs`); with `--check`, writes nothing and exits 1
 * naming each document that differs from what the code says.
 *
 * A generated document is rendered from the module that owns its facts, so that the text cannot
 * drift from the code: docs/configuration.md from the config schema, docs/errors.md from the
 * errors module. To add one, write
 * docs/generators/<name>.ts exporting a render function that returns the whole text, and add
 * an entry to DOCUMENTS; test/config/docs.test.ts then fails whenever it is stale, as it does
 * for every entry here.
 */
import { join } from "node:path";
import { renderConfiguration } from "./generators/configuration.ts";
import { errorsMarkdown } from "./generators/errors.ts";

export interface GeneratedDocument {
  /** Path from the repository's root. */
  file: string;
  /** The module the facts come from, named in the document's header. */
  source: string;
  render: () => string;
}

export const DOCUMENTS: readonly GeneratedDocument[] = [
  { file: "docs/configuration.md", source: "src/config/schema.ts", render: renderConfiguration },
  { file: "docs/errors.md", source: "src/errors.ts", render: errorsMarkdown },
];

const ROOT = join(import.meta.dir, "..");

/** What is wrong with the documents on disk: one line per stale or missing one. */
export async function staleDocuments(documents: readonly GeneratedDocument[] = DOCUMENTS): Promise<string[]> {
  const stale: string[] = [];
  for (const doc of documents) {
    const file = Bun.file(join(ROOT, doc.file));
    const current = (await file.exists()) ? await file.text() : undefined;
    if (current !== doc.render()) stale.push(`${doc.file} is stale: run bun run docs`);
  }
  return stale;
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes("--check")) {
    const stale = await staleDocuments();
    for (const line of stale) console.error(line);
    return stale.length === 0 ? 0 : 1;
  }
  for (const doc of DOCUMENTS) {
    await Bun.write(join(ROOT, doc.file), doc.render());
    console.log(`wrote ${doc.file} (from ${doc.source})`);
  }
  return 0;
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
