/**
 * Reads bun test's JUnit reports (one or more files) and prints the one line CI recognises:
 * "N passed, N failed", summed over them. Exits 1 when a report is missing or counts no test.
 */
const files = Bun.argv.length > 2 ? Bun.argv.slice(2) : ["test-artifacts/junit.xml"];
const cases: string[] = [];
let empty = false;
for (const file of files) {
  const xml = await Bun.file(file).text().catch(() => "");
  const found = xml.match(/<testcase\b[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g) ?? [];
  if (found.length === 0) empty = true;
  cases.push(...found);
}
let failed = 0;
let skipped = 0;
for (const c of cases) {
  if (/<(failure|error)\b/.test(c)) failed++;
  else if (/<skipped\b/.test(c)) skipped++;
}
const passed = cases.length - failed - skipped;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
if (empty) process.exit(1);
