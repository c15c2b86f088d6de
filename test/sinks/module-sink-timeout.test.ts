import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { ReceiverError } from "../../src/errors.js";
import { loadSinks } from "../../src/sinks/load.js";
import type { Bundle } from "../../src/sinks/sink.js";
import { makeCallback, startHarness } from "../support/harness.js";
import { captureLogs } from "../support/log-capture.js";

const HUNG = "test/fixtures/hung-deliver-sink.mjs";
const base = { FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret", FILE_SINK_DIR: "/tmp/x" };
const bundle = {
  callback: { processToken: "pt", kreditCheckId: "kc-hung", status: "SUCCESSFUL" },
} as unknown as Bundle;

describe("MODULE_SINK_TIMEOUT_MS: a module sink's deliver() that never settles", () => {
  it("fails the delivery as retryable at the deadline, aborting the module's signal, though the module ignores it", async () => {
    const config = loadConfig({ ...base, SINKS: `module:${HUNG}`, MODULE_SINK_TIMEOUT_MS: "200" });
    const [sink] = await loadSinks(config, captureLogs().logger);
    const job = new AbortController();
    const failed = await sink
      ?.deliver(bundle, { logger: captureLogs().logger, signal: job.signal })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failed).toBeInstanceOf(ReceiverError);
    expect(failed).toMatchObject({
      code: "module_sink_timeout",
      retryable: true,
      message: `module:${HUNG} did not finish delivering within 200 ms (MODULE_SINK_TIMEOUT_MS); its signal was aborted`,
    });
    expect((failed as ReceiverError).fix).toContain(`the module ${HUNG}`);
    expect((failed as ReceiverError).fix).toContain("MODULE_SINK_TIMEOUT_MS");
    const { signals } = (await import(pathToFileURL(resolve(HUNG)).href)) as {
      signals: AbortSignal[];
    };
    const given = signals.at(-1);
    expect(given?.aborted).toBe(true);
    expect(given?.reason).toBe(failed);
    // The job's own abort (shutdown, a lost lease) still reaches the module through it.
    const [again] = await loadSinks(config, captureLogs().logger);
    const stopping = new AbortController();
    const pending = again?.deliver(bundle, {
      logger: captureLogs().logger,
      signal: stopping.signal,
    });
    pending?.catch(() => undefined);
    stopping.abort(new Error("shutdown"));
    expect(signals.at(-1)?.reason).toEqual(new Error("shutdown"));
  }, 5_000);

  it("ends its jobs (dead after MAX_ATTEMPTS, logged), so the worker goes on to the next instead of stalling", async () => {
    const h = await startHarness({
      env: {
        SINKS: `module:${HUNG}`,
        MODULE_SINK_TIMEOUT_MS: "200",
        MAX_ATTEMPTS: "1",
        WORKER_CONCURRENCY: "1",
      },
    });
    try {
      // More than 2 × WORKER_CONCURRENCY: before, two such jobs ran for good and the rest waited.
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(String((await h.post(makeCallback())).body.id));
      for (const id of ids) {
        const job = await h.waitForJob(id, "dead", 10_000);
        expect(job.lastErrorCodes).toEqual(["sink_delivery_failed", "module_sink_timeout"]);
        expect(job.lastError).toContain(`hung: module_sink_timeout: module:${HUNG} did not finish`);
      }
      expect(
        h.logs
          .lines()
          .filter((line) => line.msg === "job is dead" && line.code === "sink_delivery_failed"),
      ).toHaveLength(3);
    } finally {
      await h.close();
    }
  }, 30_000);
});
