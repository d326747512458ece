/**
 * Reads bun test's JUnit report and prints the one line CI recognises: "N passed, N failed".
 * Exits 1 when the report is missing or counts no test at all.
 */
const file = Bun.argv[2] ?? "test-artifacts/junit.xml";
const xml = await Bun.file(file).text().catch(() => "");
const cases = xml.match(/<testcase\b[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g) ?? [];
let failed = 0;
let skipped = 0;
for (const c of cases) {
  if (/<(failure|error)\b/.test(c)) failed++;
  else if (/<skipped\b/.test(c)) skipped++;
}
const passed = cases.length - failed - skipped;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
if (cases.length === 0) process.exit(1);
