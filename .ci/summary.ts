/**
 * Reads bun test's JUnit reports (one or more files) and prints the one line CI recognises:
 * "N passed, N failed", summed over them. Exits 1 when a report is missing or counts no test.
 *
 * Failing cases are listed just before that line, with the first lines of their message: CI
 * keeps only the tail of a run's output, and a count alone does not say what to mend.
 */
const files = Bun.argv.length > 2 ? Bun.argv.slice(2) : ["test-artifacts/junit.xml"];
const cases: { file: string; xml: string }[] = [];
let empty = false;
for (const file of files) {
  const xml = await Bun.file(file).text().catch(() => "");
  const found = xml.match(/<testcase\b[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g) ?? [];
  if (found.length === 0) empty = true;
  for (const c of found) cases.push({ file, xml: c });
}

const unescape = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#10;/g, "\n")
    .replace(/&amp;/g, "&");
const attr = (xml: string, name: string) =>
  unescape(xml.match(new RegExp(`\\b${name}="([^"]*)"`))?.[1] ?? "");

let failed = 0;
let skipped = 0;
const failures: string[] = [];
for (const { file, xml } of cases) {
  if (/<(failure|error)\b/.test(xml)) {
    failed++;
    const where = `${attr(xml, "file")}:${attr(xml, "line")} ${attr(xml, "classname")}`;
    const message = attr(xml.slice(xml.search(/<(failure|error)\b/)), "message")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .slice(0, 6)
      .map((line) => `      ${line.slice(0, 200)}`)
      .join("\n");
    failures.push(`  FAILED [${file}] ${where} > ${attr(xml, "name")}\n${message}`);
  } else if (/<skipped\b/.test(xml)) skipped++;
}
if (failures.length > 0) console.log(failures.slice(0, 20).join("\n"));
const passed = cases.length - failed - skipped;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
if (empty) process.exit(1);
