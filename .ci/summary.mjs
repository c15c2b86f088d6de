// The last line of a CI run, from vitest's JSON report: "N passed, N failed", with
// ", N skipped" when tests were skipped. Usage: node .ci/summary.mjs reports/vitest.json
// Exits 1 when it counts a failure, so .ci/run cannot pass a run its report calls failed.
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
  if (report === undefined) return { passed: 0, failed: 1, skipped: 0 };
  let failed = (report.numFailedTests ?? 0) + filesFailedOutsideTests(report);
  // Last guard: vitest said the run failed, for a reason neither count shows.
  if (report.success === false && failed === 0) failed = 1;
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  return { passed: report.numPassedTests ?? 0, failed, skipped };
}

const { passed, failed, skipped } = totals(readReport(process.argv[2] ?? "reports/vitest.json"));
const line = `${passed} passed, ${failed} failed`;
console.log(skipped > 0 ? `${line}, ${skipped} skipped` : line);
process.exitCode = failed > 0 ? 1 : 0;
