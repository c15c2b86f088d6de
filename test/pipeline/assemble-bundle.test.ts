import { describe, expect, it } from "vitest";
import type { DacReportResponse, KreditCheckResult } from "../../src/finapi/ports.js";
import { assembleBundle, type PipelineDeps } from "../../src/pipeline/process-check.js";
import { captureLogs } from "../support/log-capture.js";

/** The pipeline's ports answered in memory: what finAPI serves is set per test. */
function depsServing(kreditCheck: KreditCheckResult): PipelineDeps {
  const unused = () => Promise.reject(new Error("not used"));
  return {
    kreditChecks: { getKreditCheck: async () => kreditCheck },
    dacReports: {
      getDacReports: async (caseId: string) =>
        ({ caseId, reports: { summary: { caseId } } }) as unknown as DacReportResponse,
    },
    documentSource: { getDocument: unused } as unknown as PipelineDeps["documentSource"],
    documents: [],
    sinks: [],
    notFoundGraceMs: 600_000,
    dacConcurrency: 4,
    clock: Date.now,
  };
}

describe("assembleBundle", () => {
  it("keeps the report of every case, whatever its caseId (one named __proto__ too)", async () => {
    const kreditCheck = {
      bankConnections: [{ accounts: [{ caseId: "__proto__" }, { caseId: "c-2" }, {}] }],
    } as unknown as KreditCheckResult;
    const bundle = await assembleBundle(
      depsServing(kreditCheck),
      {
        callback: { processToken: "pt", kreditCheckId: "kc", status: "SUCCESSFUL" },
        receivedAt: new Date(),
      },
      { logger: captureLogs().logger, signal: new AbortController().signal },
    );
    const served = JSON.parse(JSON.stringify(bundle)) as { dacReports: object };
    expect(Object.keys(served.dacReports)).toEqual(["__proto__", "c-2"]);
    expect(bundle.problems).toEqual([]);
  });
});
