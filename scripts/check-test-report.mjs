// Fails CI when the integration project did not really run: a green run that
// skipped the cluster tests would hide a broken install step.
import { readFileSync } from 'node:fs';

const MIN_INTEGRATION_TESTS = 15;
const report = JSON.parse(readFileSync(process.argv[2] ?? 'test-results.json', 'utf8'));
let passed = 0;
let skipped = 0;
let failed = 0;
for (const file of report.testResults ?? []) {
  if (!String(file.name).includes('/test/integration/')) continue;
  for (const t of file.assertionResults ?? []) {
    if (t.status === 'passed') passed++;
    else if (t.status === 'failed') failed++;
    else skipped++;
  }
}
console.log(`integration tests: ${passed} passed, ${failed} failed, ${skipped} skipped or pending`);
if (failed > 0 || skipped > 0 || passed < MIN_INTEGRATION_TESTS) {
  console.error(`CI requires at least ${MIN_INTEGRATION_TESTS} integration tests to pass with none skipped.`);
  process.exit(1);
}
