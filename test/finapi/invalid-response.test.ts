import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";

/** A stand-in Process Controller that answers 200 with whatever body the test sets. */
async function fakeProcessCtrl(
  body: string,
  contentType: string,
): Promise<{ url: string; close: () => Promise<void> }> {
  const app = express();
  app.get("/api/v1/checks/:processToken/kreditcheck/:kreditCheckId", (_req, res) => {
    res.type(contentType).send(body);
  });
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("an answer from finAPI that is not what the receiver expects", () => {
  let harness: Harness | undefined;
  let fake: { close: () => Promise<void> } | undefined;
  afterEach(async () => {
    await harness?.close();
    await fake?.close();
    harness = undefined;
    fake = undefined;
  });

  it.each([
    ["a body that is not JSON", "<html>maintenance</html>", "text/html", "the body is not JSON"],
    [
      "a field of the wrong shape",
      '{"bankConnections":"oops"}',
      "application/json",
      "bankConnections",
    ],
  ])(
    "gives up on %s, naming the problem, the X-Request-Id and the body",
    async (_name, body, type, problem) => {
      const processCtrl = await fakeProcessCtrl(body, type);
      fake = processCtrl;
      harness = await startHarness({ env: { FINAPI_PROCESSCTRL_URL: processCtrl.url } });
      const accepted = await harness.post(makeCallback());
      const job = await harness.waitForJob(accepted.body.id, "dead");
      expect(job.lastError).toContain("finapi_invalid_response");
      expect(job.lastError).toContain(problem);
      expect(job.lastError).toMatch(/X-Request-Id [0-9a-f-]{36}/);
      expect(job.lastError).toContain(body.slice(0, 15));
    },
  );
});
