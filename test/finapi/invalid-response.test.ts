import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

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

  /** Posts a callback while the Process Controller answers 200 with `body`; the dead job. */
  async function deadJobWhenAnswered(body: string, contentType: string) {
    const processCtrl = await fakeProcessCtrl(body, contentType);
    fake = processCtrl;
    harness = await startHarness({ env: { FINAPI_PROCESSCTRL_URL: processCtrl.url } });
    const accepted = await harness.post(makeCallback());
    return harness.waitForJob(accepted.body.id, "dead");
  }

  it("gives up on a body that is not JSON, naming the problem, the X-Request-Id and the body", async () => {
    const body = "<html>maintenance</html>";
    const job = await deadJobWhenAnswered(body, "text/html");
    expect(job.lastError).toContain("finapi_invalid_response");
    expect(job.lastError).toContain("the body is not JSON");
    expect(job.lastError).toMatch(/X-Request-Id [0-9a-f-]{36}/);
    expect(job.lastError).toContain(body);
    // A web page where the API should be: the fix names the variable first.
    expect(job.lastError).toMatch(/most likely a web page.*check that FINAPI_PROCESSCTRL_URL/);
  });

  it("gives up on JSON of the wrong shape, naming the field but not showing the body (it may hold account data)", async () => {
    const body = '{"bankConnections":"oops","iban":"DE02120300000000202051"}';
    const job = await deadJobWhenAnswered(body, "application/json");
    expect(job.lastError).toContain("finapi_invalid_response");
    expect(job.lastError).toContain("bankConnections");
    expect(job.lastError).toContain(`body of ${body.length} bytes not shown`);
    expect(job.lastError).not.toContain("DE02120300000000202051");
    // The worker logs the dead job just after storing it: wait for that line, then look.
    await waitFor(() => harness?.logs.text().includes("job is dead"), "the 'job is dead' log line");
    expect(harness?.logs.text()).not.toContain("DE02120300000000202051");
  });
});
