import { describe, expect, it } from "vitest";
import { ReceiverError } from "../../src/errors.js";
import type { DacReportResponse, KreditCheckResult } from "../../src/finapi/ports.js";
import type { Job, JobProgress } from "../../src/inbox/inbox.js";
import {
  assembleBundle,
  type PipelineDeps,
  processCheck,
} from "../../src/pipeline/process-check.js";
import type { Bundle, Sink } from "../../src/sinks/sink.js";
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

describe("assembleBundle, when finAPI does not know the result yet (404)", () => {
  const receivedAt = new Date("2026-01-01T00:00:00.000Z");
  const notFound = new ReceiverError("finAPI does not know this resource (404).", {
    code: "finapi_not_found",
    retryable: false,
  });
  function depsAt(ageMs: number): PipelineDeps {
    return {
      ...depsServing({} as KreditCheckResult),
      kreditChecks: { getKreditCheck: () => Promise.reject(notFound) },
      clock: () => receivedAt.getTime() + ageMs,
    };
  }
  const attempt = (deps: PipelineDeps) =>
    assembleBundle(
      deps,
      { callback: { processToken: "pt", kreditCheckId: "kc", status: "SUCCESSFUL" }, receivedAt },
      { logger: captureLogs().logger, signal: new AbortController().signal },
    ).catch((thrown: unknown) => thrown);

  it("is retried until NOT_FOUND_GRACE_MS after the callback, however few attempts are left", async () => {
    // The job store keeps retrying until retryUntil even past MAX_ATTEMPTS: an early
    // callback must not die as not found while the promised window is still open.
    expect(await attempt(depsAt(1_000))).toMatchObject({
      code: "result_not_ready",
      retryable: true,
      retryUntil: receivedAt.getTime() + 600_000,
    });
  });

  it("is final, naming the URL to check, once the window has passed", async () => {
    const error = await attempt(depsAt(600_000));
    expect(error).toMatchObject({ code: "kreditcheck_not_found", retryable: false });
    expect((error as ReceiverError).fix).toContain("NOT_FOUND_GRACE_MS");
  });
});

describe("processCheck, when one sink failed and the job runs again", () => {
  /** A sink that records what it was given, and fails while `failing` says so. */
  function recordingSink(name: string) {
    const sink = {
      name,
      failing: false,
      delivered: [] as Bundle[],
      async deliver(bundle: Bundle) {
        if (sink.failing) throw new Error(`${name} is down`);
        sink.delivered.push(bundle);
      },
    };
    return sink satisfies Sink;
  }

  it("delivers only to the sink that failed, with the bundle fetched the first time", async () => {
    const file = recordingSink("file");
    const http = recordingSink("http");
    let fetches = 0;
    const deps: PipelineDeps = {
      ...depsServing({ status: "SUCCESSFUL", bankConnections: [] } as unknown as KreditCheckResult),
      sinks: [file, http],
    };
    deps.kreditChecks = {
      getKreditCheck: async () => {
        fetches += 1;
        return { status: "SUCCESSFUL", bankConnections: [] } as unknown as KreditCheckResult;
      },
    };
    const callback = { processToken: "pt", kreditCheckId: "kc", status: "SUCCESSFUL" };
    const job = { id: "job-1", callback, receivedAt: new Date() } as unknown as Job;
    // What the worker keeps in the job between attempts.
    const progress: JobProgress = {};
    const run = () =>
      processCheck(deps, {
        job,
        progress,
        logger: captureLogs().logger,
        signal: new AbortController().signal,
      });

    http.failing = true;
    await expect(run()).rejects.toMatchObject({ code: "sink_delivery_failed" });
    expect(progress.deliveredSinks).toEqual(["file"]);
    http.failing = false;
    // The next attempt starts from the stored progress (as JSON, the way the inbox keeps it).
    Object.assign(progress, JSON.parse(JSON.stringify(progress)));
    await run();

    expect({ file: file.delivered.length, http: http.delivered.length, fetches }).toEqual({
      file: 1,
      http: 1,
      fetches: 1,
    });
    expect(progress.deliveredSinks?.sort()).toEqual(["file", "http"]);
  });
});
