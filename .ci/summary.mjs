// The last line of a CI run, from vitest's JSON reports: "N passed, N failed", with
// ", N skipped" when tests were skipped. Usage: node .ci/summary.mjs <report> [<report>...]
// With several reports (one per Node.js runtime) it prints a line for each, then their sum
// last. A report that is missing counts as one failure. A report given as "path=status"
// with a non-zero exit status but no failure counted (vitest exits 1 on an unhandled
// error) counts one. Exits 1 when it counts a failure, so .ci/run cannot pass a run its
// reports call failed.
import { readFileSync } from "node:fs";

/** The report, or undefined when there is none (an earlier step failed) or it is unreadable. */
function readReport(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * numFailedTests counts failed tests only: a file that fails outside its tests (it cannot
 * be imported, throws at file level, a beforeAll or afterAll throws) fails the run with
 * no failed test in it. Each such file counts as one failure.
 */
function filesFailedOutsideTests(report) {
  return (report.testResults ?? []).filter(
    (file) =>
      file.status === "failed" &&
      !(file.assertionResults ?? []).some((test) => test.status === "failed"),
  ).length;
}

function totals(report) {
  if (report === null || typeof report !== "object") return { passed: 0, failed: 1, skipped: 0 };
  let failed = (report.numFailedTests ?? 0) + filesFailedOutsideTests(report);
  // Last guard: vitest said the run failed, for a reason neither count shows.
  if (report.success === false && failed === 0) failed = 1;
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  return { passed: report.numPassedTests ?? 0, failed, skipped };
}

function format({ passed, failed, skipped }) {
  const line = `${passed} passed, ${failed} failed`;
  return skipped > 0 ? `${line}, ${skipped} skipped` : line;
}

const paths = process.argv.length > 2 ? process.argv.slice(2) : ["reports/vitest.json"];
const sum = { passed: 0, failed: 0, skipped: 0 };
for (const argument of paths) {
  const [, path = argument, status] = /^(.*)=(\d+)$/.exec(argument) ?? [];
  const counts = totals(readReport(path));
  if (status !== undefined && Number(status) !== 0 && counts.failed === 0) counts.failed = 1;
  if (paths.length > 1) console.log(`${path}: ${format(counts)}`);
  sum.passed += counts.passed;
  sum.failed += counts.failed;
  sum.skipped += counts.skipped;
}
console.log(format(sum));
process.exitCode = sum.failed > 0 ? 1 : 0;
