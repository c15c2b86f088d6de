import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CI = fileURLToPath(new URL("../.ci/", import.meta.url));

/** Runs a command to its end: its output lines and exit status, a failure included. */
function outputOf(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ lines: string[]; status: number }> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { PATH: process.env.PATH ?? "", ...env } }, (error, stdout) => {
      resolve({
        lines: stdout.trimEnd().split("\n"),
        status: error ? Number(error.code ?? -1) : 0,
      });
    });
  });
}

/** Runs a command to its end: its last output line and exit status, a failure included. */
async function lastLine(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ line: string; status: number }> {
  const { lines, status } = await outputOf(command, args, env);
  return { line: lines.at(-1) ?? "", status };
}

/** A report as vitest's JSON reporter writes it, with only the fields the summary reads. */
function report(
  files: { status: "passed" | "failed"; tests: ("passed" | "failed" | "skipped")[] }[],
): object {
  const tests = files.flatMap((file) => file.tests);
  const count = (status: string) => tests.filter((test) => test === status).length;
  return {
    numPassedTests: count("passed"),
    numFailedTests: count("failed"),
    numPendingTests: count("skipped"),
    numTodoTests: 0,
    success: files.every((file) => file.status === "passed"),
    testResults: files.map((file) => ({
      status: file.status,
      assertionResults: file.tests.map((status) => ({ status })),
    })),
  };
}

describe(".ci/summary.mjs: the totals line of a CI run", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-ci-summary-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function summarize(content: object | string) {
    const path = join(dir, "vitest.json");
    await writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
    return lastLine(process.execPath, [join(CI, "summary.mjs"), path]);
  }

  it("a passing run, with skipped tests named only when there are some", async () => {
    expect(await summarize(report([{ status: "passed", tests: ["passed", "passed"] }]))).toEqual({
      line: "2 passed, 0 failed",
      status: 0,
    });
    expect(
      await summarize({ ...report([{ status: "passed", tests: ["passed"] }]), numTodoTests: 1 }),
    ).toEqual({ line: "1 passed, 0 failed, 1 skipped", status: 0 });
  });

  it("a failed test", async () => {
    const failing = report([
      { status: "failed", tests: ["passed", "failed"] },
      { status: "passed", tests: ["passed", "skipped"] },
    ]);
    expect(await summarize(failing)).toEqual({ line: "2 passed, 1 failed, 1 skipped", status: 1 });
  });

  it("a file that failed to load, or whose beforeAll threw, counts as a failure", async () => {
    // Vitest reports such a file with no tests, or with its tests skipped, and no failed test.
    const notLoaded = report([
      { status: "passed", tests: ["passed"] },
      { status: "failed", tests: [] },
    ]);
    expect(await summarize(notLoaded)).toEqual({ line: "1 passed, 1 failed", status: 1 });
    const hookFailed = report([{ status: "failed", tests: ["skipped", "skipped"] }]);
    expect(await summarize(hookFailed)).toEqual({
      line: "0 passed, 1 failed, 2 skipped",
      status: 1,
    });
  });

  it("a failed run with nothing counted, and a missing or unreadable report, count one failure", async () => {
    expect(await summarize({ numPassedTests: 0, numFailedTests: 0, success: false })).toEqual({
      line: "0 passed, 1 failed",
      status: 1,
    });
    expect(await summarize("{ truncated")).toEqual({ line: "0 passed, 1 failed", status: 1 });
    expect(await summarize("null")).toEqual({ line: "0 passed, 1 failed", status: 1 });
    expect(
      await lastLine(process.execPath, [join(CI, "summary.mjs"), join(dir, "none.json")]),
    ).toEqual({ line: "0 passed, 1 failed", status: 1 });
  });

  it("prints a line per report, then their sum; a failing exit status with a clean report counts one", async () => {
    const first = join(dir, "first.json");
    const second = join(dir, "second.json");
    await writeFile(first, JSON.stringify(report([{ status: "passed", tests: ["passed"] }])));
    await writeFile(second, JSON.stringify(report([{ status: "passed", tests: ["passed"] }])));
    expect(
      await outputOf(process.execPath, [join(CI, "summary.mjs"), `${first}=0`, second]),
    ).toEqual({
      lines: [
        `${first}: 1 passed, 0 failed`,
        `${second}: 1 passed, 0 failed`,
        "2 passed, 0 failed",
      ],
      status: 0,
    });
    // vitest exits 1 on an unhandled error, and may still report every test passed.
    expect(
      await lastLine(process.execPath, [join(CI, "summary.mjs"), `${first}=0`, `${second}=1`]),
    ).toEqual({ line: "2 passed, 1 failed", status: 1 });
  });
});

/**
 * .ci/run itself, copied into a folder of its own with stand-ins for npm and pg_isready:
 * every step passes unless FAIL_AT names it, and `npm test` writes REPORT as vitest would.
 */
describe(".ci/run ends with the totals line on every way out", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-ci-run-"));
    await mkdir(join(dir, ".ci"));
    await mkdir(join(dir, "bin"));
    for (const name of ["run", "summary.mjs"]) {
      await copyFile(join(CI, name), join(dir, ".ci", name));
    }
    const npm = [
      "#!/bin/sh",
      'case "$*" in',
      '  "$FAIL_AT"*) exit 1 ;;',
      '  test) mkdir -p reports && printf "%s" "$REPORT" > reports/vitest.json && exit "$TEST_STATUS" ;;',
      "esac",
    ].join("\n");
    await writeFile(join(dir, "bin", "npm"), `${npm}\n`, { mode: 0o755 });
    await writeFile(join(dir, "bin", "pg_isready"), "#!/bin/sh\n", { mode: 0o755 });
    // The second runtime's run: exits OTHER_STATUS, leaving OTHER_REPORT as its report
    // (none when empty), as .ci/other-node.sh does.
    const otherNode = [
      "#!/bin/sh",
      '[ -n "$OTHER_REPORT" ] && mkdir -p "$(dirname "$2")" && printf "%s" "$OTHER_REPORT" > "$2"',
      'exit "$OTHER_STATUS"',
    ].join("\n");
    await writeFile(join(dir, ".ci", "other-node.sh"), `${otherNode}\n`, { mode: 0o755 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Without `other`, the second runtime's run is off (OTHER_NODE=""). */
  const run = (env: {
    FAIL_AT?: string;
    REPORT?: object;
    TEST_STATUS?: number;
    other?: { report?: object; status: number };
  }) =>
    lastLine("bash", [join(dir, ".ci", "run")], {
      PATH: `${join(dir, "bin")}:${process.env.PATH ?? ""}`,
      FAIL_AT: env.FAIL_AT ?? "no step",
      REPORT: JSON.stringify(env.REPORT ?? {}),
      TEST_STATUS: String(env.TEST_STATUS ?? 0),
      // A major no machine runs, so the step is never skipped as "this Node's".
      OTHER_NODE: env.other ? "99" : "",
      OTHER_REPORT: env.other?.report ? JSON.stringify(env.other.report) : "",
      OTHER_STATUS: String(env.other?.status ?? 0),
    });

  it("a step before the tests fails: no report, one failure, even after a passing run", async () => {
    const passing = report([{ status: "passed", tests: ["passed"] }]);
    expect(await run({ REPORT: passing })).toEqual({ line: "1 passed, 0 failed", status: 0 });
    for (const step of ["ci", "run lint", "run typecheck", "run build"]) {
      expect(await run({ FAIL_AT: step }), step).toEqual({ line: "0 passed, 1 failed", status: 1 });
    }
  });

  it("sums the second runtime's run into the last line; its failure fails CI", async () => {
    const passing = report([{ status: "passed", tests: ["passed", "passed"] }]);
    const failing = report([{ status: "failed", tests: ["passed", "failed"] }]);
    expect(await run({ REPORT: passing, other: { report: passing, status: 0 } })).toEqual({
      line: "4 passed, 0 failed",
      status: 0,
    });
    expect(await run({ REPORT: passing, other: { report: failing, status: 1 } })).toEqual({
      line: "3 passed, 1 failed",
      status: 1,
    });
    // It exited 1 with a clean report (an unhandled error): one failure.
    expect(await run({ REPORT: passing, other: { report: passing, status: 1 } })).toEqual({
      line: "4 passed, 1 failed",
      status: 1,
    });
    // Its install or build failed: no report, one failure.
    expect(await run({ REPORT: passing, other: { status: 1 } })).toEqual({
      line: "2 passed, 1 failed",
      status: 1,
    });
    // That Node could not be downloaded: said, and the first run's result stands.
    expect(await run({ REPORT: passing, other: { status: 2 } })).toEqual({
      line: "2 passed, 0 failed",
      status: 0,
    });
    // The first run failed and the second passed: still a failure.
    expect(
      await run({ REPORT: failing, TEST_STATUS: 1, other: { report: passing, status: 0 } }),
    ).toEqual({ line: "3 passed, 1 failed", status: 1 });
  });

  it("npm test exiting non-zero with a clean report fails the run and is counted", async () => {
    const passing = report([{ status: "passed", tests: ["passed", "passed"] }]);
    expect(await run({ REPORT: passing, TEST_STATUS: 1 })).toEqual({
      line: "2 passed, 1 failed",
      status: 1,
    });
  });

  it("a test file that failed to load fails the run and is counted", async () => {
    const notLoaded = report([
      { status: "passed", tests: ["passed"] },
      { status: "failed", tests: [] },
    ]);
    expect(await run({ REPORT: notLoaded, TEST_STATUS: 1 })).toEqual({
      line: "1 passed, 1 failed",
      status: 1,
    });
  });
});
