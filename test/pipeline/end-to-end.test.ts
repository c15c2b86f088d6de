import { type AddressInfo, createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { simulatorToken } from "../support/simulator-token.js";
import { waitFor } from "../support/wait-for.js";
import { servePage } from "../support/web-page.js";

/** Reads a resource straight from the simulator, as finAPI serves it, for comparison. */
async function served(harness: Harness, url: string): Promise<unknown> {
  const token = await simulatorToken(harness.simulator);
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  return response.json();
}

/**
 * A host that resets every connection. Not a port that was free a moment ago: another
 * test file's server, running in parallel, took one once and answered 404.
 */
async function resettingHost() {
  const unreachable = createServer((socket) => socket.resetAndDestroy());
  await new Promise<void>((resolve) => unreachable.listen(0, "127.0.0.1", resolve));
  return { port: (unreachable.address() as AddressInfo).port, unreachable };
}

async function jobOf(harness: Harness, id: unknown) {
  return harness.service.inbox.get(String(id));
}

describe("callback → inbox → finAPI → file sink", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("writes a bundle with the KreditCheck and every DAC report exactly as finAPI served them", async () => {
    harness = await startHarness();
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    expect(accepted.status).toBe(202);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));

    const kreditCheck = await served(
      harness,
      `${harness.simulator.processctrlUrl}/checks/${callback.processToken}/kreditcheck/${callback.kreditCheckId}`,
    );
    expect(bundle.callback).toEqual(callback);
    expect(bundle.kreditCheck).toEqual(kreditCheck);
    // Same key order too: the result is handed on, not rebuilt.
    expect(JSON.stringify(bundle.kreditCheck)).toBe(JSON.stringify(kreditCheck));

    const caseIds = (
      kreditCheck as { bankConnections: { accounts: { caseId?: string }[] }[] }
    ).bankConnections
      .flatMap((connection) => connection.accounts)
      .map((account) => account.caseId)
      .filter((caseId): caseId is string => Boolean(caseId));
    expect(caseIds).toHaveLength(3);
    expect(Object.keys(bundle.dacReports).sort()).toEqual([...caseIds].sort());
    for (const caseId of caseIds) {
      expect(bundle.dacReports[caseId]).toEqual(
        await served(harness, `${harness.simulator.diUrl}/cases/${caseId}/reports`),
      );
    }
    expect(bundle.problems).toEqual([]);
    expect(Date.parse(bundle.receivedAt)).toBeLessThanOrEqual(Date.parse(bundle.completedAt));
    await harness.waitForJob(accepted.body.id, "done");
  });

  it("does not fetch anything for a callback whose status is not SUCCESSFUL, and delivers it as is", async () => {
    harness = await startHarness();
    const logs = harness.logs;
    // The start-up check's token request is the only one.
    await waitFor(() => logs.text().includes("start-up check"), "the start-up check");
    const callback = makeCallback({ status: "FAILED", errorMessage: "user aborted" });
    await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    expect(bundle.kreditCheck).toBeNull();
    expect(bundle.dacReports).toEqual({});
    expect(bundle.problems).toEqual([
      expect.objectContaining({
        code: "callback_not_successful",
        message: expect.stringContaining("FAILED"),
      }),
    ]);
    const stats = harness.simulator.stats();
    expect(stats.calls).toMatchObject({ kreditcheck: 0, dac: 0, token: 1 });
    // A customer's failed check is no operator's problem: said at info, not as a warning.
    const said = logs.lines().find((line) => String(line.msg).includes("status is not SUCCESSFUL"));
    expect(said).toMatchObject({ level: 30, status: "FAILED" });
  });

  it("fetches and delivers the result when a SUCCESSFUL callback follows a FAILED one of the same check", async () => {
    harness = await startHarness();
    const callback = makeCallback({ status: "FAILED", errorMessage: "bank timed out" });
    const id = String(callback.kreditCheckId);
    const first = await harness.post(callback);
    expect((await harness.waitForBundle(id)).kreditCheck).toBeNull();
    await harness.waitForJob(first.body.id, "done");
    const second = await harness.post({ ...callback, status: "SUCCESSFUL", errorMessage: null });
    expect(second.body).toEqual({ accepted: true, duplicate: false, id: first.body.id });
    const delivered = await waitFor(async () => {
      const bundle = await harness?.readBundle(id);
      return bundle?.kreditCheck ? bundle : undefined;
    }, "the SUCCESSFUL callback's bundle");
    expect(delivered.callback).toMatchObject({ status: "SUCCESSFUL", errorMessage: null });
    expect(delivered.problems).toEqual([]);
    expect(Object.keys(delivered.dacReports).length).toBeGreaterThan(0);
    expect(await jobOf(harness, first.body.id)).toMatchObject({ state: "done", attempts: 1 });
  });

  it("accepts a DAC-only licence result with few fields and accounts without caseId", async () => {
    harness = await startHarness({
      simulator: {
        accounts: { connections: 1, accountsPerConnection: 2, accountsWithoutCaseId: 2 },
      },
    });
    const callback = makeCallback({ processToken: `dac-only-${Date.now()}` });
    await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    expect(bundle.kreditCheck).not.toBeNull();
    expect(bundle.dacReports).toEqual({});
    expect(harness.simulator.stats().calls.dac).toBe(0);
  });

  it("retries a 503 from finAPI until the result is delivered", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0" } });
    harness.simulator.failNext("kreditcheck", 3, 503);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    const job = await harness.waitForJob(accepted.body.id, "done");
    expect(job.attempts).toBe(4);
    expect(harness.simulator.stats().statuses.kreditcheck).toMatchObject({ "503": 3, "200": 1 });
  });

  it("retries a 503 inside the call first, without spending a job attempt", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "2" } });
    harness.simulator.failNext("dac", 2, 503);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    expect((await jobOf(harness, accepted.body.id))?.attempts).toBe(1);
  });

  it("honours Retry-After of a 429 before trying again", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0" } });
    harness.simulator.failNext("kreditcheck", 1, 429, { retryAfterSec: 1 });
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const started = Date.now();
    await harness.waitForBundle(String(callback.kreditCheckId));
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect((await jobOf(harness, accepted.body.id))?.attempts).toBe(2);
  });

  it("gives up at once on a 403 and names the data_intelligence:manager scope", async () => {
    harness = await startHarness({ simulator: { forbidden: true } });
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.attempts).toBe(1);
    expect(job.lastError).toContain("finAPI refused access to the KreditCheck result (403)");
    expect(job.lastError).toContain("data_intelligence:manager");
    expect(job.lastError).toContain("support@finapi.io");
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
  });

  it("gives up at once when only the DAC reports answer 403, instead of delivering bundles without them", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0", DAC_CONCURRENCY: "1" } });
    // The KreditCheck result is served; the first DAC report is refused for want of the scope.
    harness.simulator.failNext("dac", 1, 403);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.attempts).toBe(1);
    expect(job.lastErrorCodes).toEqual(["finapi_forbidden"]);
    // Which report, of which case: finAPI's answer alone does not say.
    expect(job.lastError).toMatch(
      /^finapi_forbidden: case [\w.-]+: finAPI refused access to a DAC report \(403\)/,
    );
    expect(job.lastError).toContain("data_intelligence:manager");
    expect(job.lastError).toContain("retry --all-dead --code finapi_forbidden");
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
  });

  it("gives up when the token endpoint refuses the credentials while DAC reports are fetched, instead of delivering the bundle without them", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0", DAC_CONCURRENCY: "1" } });
    // A first check gets the token the next one's KreditCheck is fetched with.
    const first = makeCallback();
    await harness.post(first);
    await harness.waitForBundle(String(first.kreditCheckId));
    // Then a report answers 401 (the token was revoked, say) and the fresh token is refused.
    harness.simulator.failNext("dac", 1, 401);
    harness.simulator.failNext("token", 1, 401);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastErrorCodes).toEqual(["finapi_auth_failed"]);
    expect(job.lastError).toContain("FINAPI_CLIENT_SECRET");
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
  });

  it("waits for a result that is not there yet (404 within the grace window)", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0", NOT_FOUND_GRACE_MS: "60000" } });
    harness.simulator.failNext("kreditcheck", 2, 404);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    expect((await jobOf(harness, accepted.body.id))?.attempts).toBe(3);
  });

  it("gives up on a 404 after the grace window, saying what to check", async () => {
    harness = await startHarness({ env: { NOT_FOUND_GRACE_MS: "0" } });
    const callback = makeCallback({ kreditCheckId: `missing-${Date.now()}` });
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastError).toContain("kreditcheck_not_found");
    expect(job.lastError).toContain("NOT_FOUND_GRACE_MS");
  });

  it("gives up when a DAC report is refused as invalid (400), instead of delivering the bundle without it", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0", DAC_CONCURRENCY: "1" } });
    harness.simulator.failNext("dac", 1, 400);
    const callback = makeCallback();
    const job = await harness.waitForJob((await harness.post(callback)).body.id, "dead");
    expect(job.lastErrorCodes).toEqual(["finapi_rejected"]);
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
  });

  it("gives up when FINAPI_DI_URL serves something that is not a DAC report (a web page)", async () => {
    const page = await servePage("<html>maintenance</html>");
    try {
      harness = await startHarness({ env: { FINAPI_DI_URL: `${page.url}/di` } });
      const callback = makeCallback();
      const job = await harness.waitForJob((await harness.post(callback)).body.id, "dead");
      expect(job.lastErrorCodes).toEqual(["finapi_invalid_response"]);
      expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
    } finally {
      await harness?.close();
      harness = undefined;
      await page.close();
    }
  });

  it("explains a DAC report that finAPI does not have in problems instead of dropping it silently", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0", DAC_CONCURRENCY: "1" } });
    harness.simulator.failNext("dac", 1, 404);
    const callback = makeCallback();
    await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    expect(Object.keys(bundle.dacReports)).toHaveLength(2);
    expect(bundle.problems).toHaveLength(1);
    expect(bundle.problems[0]).toMatchObject({
      code: "finapi_not_found",
      caseId: expect.any(String),
      // A wrong FINAPI_DI_URL makes every report 404: the problem says what to check.
      fix: expect.stringContaining("FINAPI_DI_URL"),
    });
    expect(bundle.dacReports[bundle.problems[0]?.caseId as string]).toBeUndefined();
  });

  it("names FINAPI_PROCESSCTRL_URL while a missing result is still retried within the grace window", async () => {
    harness = await startHarness({
      env: { FINAPI_RETRIES: "0", BACKOFF_BASE_MS: "60000", BACKOFF_MAX_MS: "60000" },
    });
    const callback = makeCallback({ kreditCheckId: `missing-${Date.now()}` });
    const accepted = await harness.post(callback);
    const job = await waitFor(async () => {
      const current = await jobOf(harness as Harness, accepted.body.id);
      return current?.state === "pending" && current.lastError ? current : undefined;
    }, "the first failed attempt");
    expect(job.lastError).toContain("result_not_ready");
    expect(job.lastError).toContain("NOT_FOUND_GRACE_MS");
    expect(job.lastError).toContain("FINAPI_PROCESSCTRL_URL");
  });

  it("names the URL variable when a finAPI host cannot be reached", async () => {
    const { port, unreachable } = await resettingHost();
    try {
      harness = await startHarness({
        env: { FINAPI_TOKEN_URL: `http://127.0.0.1:${port}/api/v2/oauth/token`, MAX_ATTEMPTS: "1" },
      });
      const accepted = await harness.post(makeCallback());
      const job = await harness.waitForJob(accepted.body.id, "dead");
      expect(job.lastError).toContain("finapi_network");
      expect(job.lastError).toContain("FINAPI_TOKEN_URL");
    } finally {
      unreachable.close();
    }
  });

  it("logs a finAPI call that got no answer as one short line: code and reason, no stack", async () => {
    const { port, unreachable } = await resettingHost();
    try {
      harness = await startHarness({
        env: {
          FINAPI_DI_URL: `http://127.0.0.1:${port}/di/api/v1`,
          FINAPI_RETRIES: "0",
          MAX_ATTEMPTS: "1",
        },
      });
      const accepted = await harness.post(makeCallback());
      await harness.waitForJob(accepted.body.id, "dead");
      const failed = harness.logs.lines().filter((line) => line.msg === "finAPI call failed");
      expect(failed.length).toBeGreaterThan(0);
      for (const line of failed) {
        expect(line).toMatchObject({ endpoint: "dac", errorCode: "ECONNRESET" });
        expect(String(line.reason)).toMatch(/socket hang up|ECONNRESET|other side closed/);
        expect(line).not.toHaveProperty("err");
        expect(JSON.stringify(line)).not.toContain("    at ");
        expect(JSON.stringify(line).length).toBeLessThan(600);
      }
    } finally {
      unreachable.close();
    }
  });

  it("says the token URL is wrong, not the credentials, when it answers 404", async () => {
    harness = await startHarness({
      env: (simulator) => ({ FINAPI_TOKEN_URL: `${simulator.url}/api/v2/oauth/tokn` }),
    });
    const accepted = await harness.post(makeCallback());
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastError).toContain("finapi_token_url_wrong");
    expect(job.lastError).toContain("FINAPI_TOKEN_URL");
    expect(job.lastError).not.toContain("FINAPI_CLIENT_SECRET");
  });

  it("logs at start-up where the finAPI calls go, through which proxy, and where the files land", async () => {
    // The simulator's URLs are http: the https proxy is shown but not used.
    harness = await startHarness({
      env: { https_proxy: "ops:pr0xy-pw@proxy.internal:3128", NO_PROXY: "localhost" },
    });
    const started = harness.startupLine();
    expect(started).toMatchObject({
      fileSinkDir: harness.resultsDir,
      finapi: {
        tokenUrl: harness.simulator.tokenUrl,
        processctrlUrl: harness.simulator.processctrlUrl,
        diUrl: harness.simulator.diUrl,
      },
      proxies: { https_proxy: "http://***:***@proxy.internal:3128/", NO_PROXY: "localhost" },
    });
    expect(JSON.stringify(started)).not.toMatch(/pr0xy-pw|ops/);
    // No PostgreSQL in use: no schema to name.
    expect(started).not.toHaveProperty("pgSchema");
    expect(started).toMatchObject({ trustProxy: false });
  });

  it("names the http sink by its origin only at start-up: a webhook's key may sit in its path or query", async () => {
    harness = await startHarness({
      env: {
        SINKS: "file,http",
        HTTP_SINK_URL: "https://hooks.example.com/services/T00/B00/XXXXSECRET?code=KEY123",
        HTTP_SINK_SECRET: "a-signing-secret-of-enough-length",
      },
      service: { worker: false },
    });
    const started = harness.startupLine();
    expect(started).toMatchObject({ httpSinkOrigin: "https://hooks.example.com" });
    expect(JSON.stringify(started)).not.toMatch(/XXXXSECRET|KEY123/);
  });

  it("fetches the DAC reports of one check in parallel", async () => {
    harness = await startHarness({ simulator: { latencyMs: 100 }, env: { DAC_CONCURRENCY: "4" } });
    const callback = makeCallback();
    await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    expect(harness.simulator.stats().maxConcurrent.dac).toBe(3);
  });

  it("says at start-up, before any callback, that finAPI refused the client credentials", async () => {
    harness = await startHarness({ env: { FINAPI_CLIENT_SECRET: "wrong-secret" } });
    const logs = harness.logs;
    await waitFor(() => logs.text().includes("start-up check"), "the start-up check");
    const check = logs.lines().find((line) => String(line.msg).startsWith("start-up check"));
    expect(check).toMatchObject({ level: 50, code: "finapi_auth_failed" });
    expect(String(check?.msg)).toContain("retry --all-dead --code finapi_auth_failed");
    expect(String(check?.error)).toContain("FINAPI_CLIENT_SECRET");
    // One refusal, one line: not the token provider's error beside the start-up check's.
    expect(logs.lines().filter((line) => Number(line.level) >= 40)).toEqual([check]);
    expect(JSON.stringify(logs.lines())).not.toContain("wrong-secret");
  });

  it("checks the credentials at start-up with the token the first job then uses", async () => {
    harness = await startHarness();
    const logs = harness.logs;
    await waitFor(() => logs.text().includes("start-up check"), "the start-up check");
    expect(
      logs.lines().find((line) => String(line.msg).startsWith("start-up check")),
    ).toMatchObject({ level: 30, msg: "start-up check: finAPI accepted the client credentials" });
    const callback = makeCallback();
    await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    expect(harness.simulator.stats().calls.token).toBe(1);
  });

  it("marks the job dead with a clear message when finAPI refuses the client credentials", async () => {
    harness = await startHarness({ env: { FINAPI_CLIENT_SECRET: "wrong-secret" } });
    const accepted = await harness.post(makeCallback());
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastError).toContain("finapi_auth_failed");
    expect(job.lastError).toContain("FINAPI_CLIENT_SECRET");
    expect(
      harness.logs
        .lines()
        .some(
          (line) => line.level === 50 && `${line.msg} ${line.error}`.includes("client credentials"),
        ),
    ).toBe(true);
  });

  it("sends a fresh X-Request-Id on every finAPI call and logs it with status and duration", async () => {
    harness = await startHarness();
    const callback = makeCallback();
    await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    const seen = harness.simulator.stats().requestIds;
    expect(seen).toHaveLength(5); // token, KreditCheck, 3 DAC reports
    expect(new Set(seen).size).toBe(5);
    const logged = harness.logs.lines().filter((line) => line.requestId);
    for (const requestId of seen) {
      expect(logged.find((line) => line.requestId === requestId)).toMatchObject({
        status: 200,
        durationMs: expect.any(Number),
      });
    }
  });

  it("puts processToken and kreditCheckId on every log line of a job and never logs a secret", async () => {
    harness = await startHarness();
    const callback = makeCallback();
    await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    await waitFor(() => harness?.logs.text().includes("check delivered"), "log line");
    const jobLines = harness.logs.lines().filter((line) => line.component === "worker");
    expect(jobLines.length).toBeGreaterThanOrEqual(5);
    for (const line of jobLines) {
      expect(line).toMatchObject({
        processToken: callback.processToken,
        kreditCheckId: callback.kreditCheckId,
      });
    }
    const text = harness.logs.text();
    expect(text).not.toContain(harness.simulator.clientSecret);
  });
});

describe("the manager token", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("is requested exactly once for 50 concurrent different callbacks", async () => {
    harness = await startHarness({
      env: { WORKER_CONCURRENCY: "16" },
      simulator: { latencyMs: 20 },
    });
    const callbacks = Array.from({ length: 50 }, () => makeCallback());
    const answers = await Promise.all(
      callbacks.map((callback) => (harness as Harness).post(callback)),
    );
    expect(answers.every((answer) => answer.status === 202)).toBe(true);
    for (const callback of callbacks) await harness.waitForBundle(String(callback.kreditCheckId));
    expect(harness.simulator.stats().calls.token).toBe(1);
  });

  it("is replaced when finAPI revokes it mid-run", async () => {
    harness = await startHarness();
    const first = makeCallback();
    await harness.post(first);
    await harness.waitForBundle(String(first.kreditCheckId));
    harness.simulator.revokeToken();
    const second = makeCallback();
    await harness.post(second);
    await harness.waitForBundle(String(second.kreditCheckId));
    const stats = harness.simulator.stats();
    expect(stats.calls.token).toBe(2);
    expect(stats.statuses.kreditcheck["401"]).toBe(1);
  });

  it("is replaced when it expires, without asking for it in a loop", async () => {
    harness = await startHarness({
      simulator: { tokenLifetimeSec: 1 },
      env: { TOKEN_REFRESH_MARGIN_MS: "60000" },
    });
    const first = makeCallback();
    await harness.post(first);
    await harness.waitForBundle(String(first.kreditCheckId));
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const second = makeCallback();
    await harness.post(second);
    await harness.waitForBundle(String(second.kreditCheckId));
    const stats = harness.simulator.stats();
    expect(stats.tokensIssued).toBe(2);
    expect(stats.calls.token).toBeLessThanOrEqual(3);
  });
});
