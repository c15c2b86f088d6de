import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { documentUrls, servedBytes } from "../support/served.js";
import { waitFor } from "../support/wait-for.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";

describe("documents (FETCH_DOCUMENTS)", () => {
  let harness: Harness | undefined;
  let receiver: Awaited<ReturnType<typeof startWebhookReceiver>> | undefined;
  afterEach(async () => {
    await harness?.close();
    await receiver?.close();
    harness = undefined;
    receiver = undefined;
  });

  it("writes the account PDF and the DAC zip beside the JSON, byte for byte as finAPI served them", async () => {
    harness = await startHarness({ env: { FETCH_DOCUMENTS: "account_pdf,dac_zip" } });
    const callback = makeCallback();
    await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    const id = String(callback.kreditCheckId);
    const urls = documentUrls(harness.simulator, callback);
    const pdf = await readFile(join(harness.resultsDir, `${id}.account.pdf`));
    const zip = await readFile(join(harness.resultsDir, `${id}.dac.zip`));
    expect(pdf.subarray(0, 5).toString()).toBe("%PDF-");
    expect(pdf.equals(await servedBytes(harness.simulator, urls.account_pdf))).toBe(true);
    expect(zip.subarray(0, 2).toString()).toBe("PK");
    expect(zip.equals(await servedBytes(harness.simulator, urls.dac_zip))).toBe(true);
    // The JSON names the files instead of carrying the bytes.
    expect(bundle.documents).toEqual([
      {
        name: "account_pdf",
        contentType: "application/pdf",
        file: `${id}.account.pdf`,
        bytes: pdf.length,
      },
      { name: "dac_zip", contentType: "application/zip", file: `${id}.dac.zip`, bytes: zip.length },
    ]);
    expect(bundle.problems).toEqual([]);
    // No temporary files are left behind.
    expect((await readdir(harness.resultsDir)).sort()).toEqual(
      [`${id}.account.pdf`, `${id}.dac.zip`, `${id}.json`].sort(),
    );
  });

  it("removes a document an earlier delivery wrote when a not-successful callback for the check replaces its JSON", async () => {
    harness = await startHarness({ env: { FETCH_DOCUMENTS: "account_pdf" } });
    const callback = makeCallback();
    const id = String(callback.kreditCheckId);
    await harness.post(callback);
    await harness.waitForBundle(id);
    expect((await readdir(harness.resultsDir)).sort()).toEqual([`${id}.account.pdf`, `${id}.json`]);
    // Replayed by hand under another processToken, as FAILED: the later bundle wins.
    const failed = { ...makeCallback({ kreditCheckId: id }), status: "FAILED" };
    await harness.post(failed);
    const replaced = await waitFor(async () => {
      const bundle = await harness?.readBundle(id);
      return bundle?.kreditCheck === null ? bundle : undefined;
    }, "the FAILED callback's bundle");
    expect(replaced.documents).toEqual([]);
    expect(await readdir(harness.resultsDir)).toEqual([`${id}.json`]);
  });

  it("fetches no document unless asked to", async () => {
    harness = await startHarness();
    const callback = makeCallback();
    await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    expect(bundle.documents).toBeUndefined();
    const { calls } = harness.simulator.stats();
    expect(calls.account_pdf + calls.dac_zip).toBe(0);
  });

  it("notes a document finAPI does not have (404) or refuses (403) in problems and still delivers the check", async () => {
    harness = await startHarness({
      env: { FETCH_DOCUMENTS: "account_pdf,dac_zip", FINAPI_RETRIES: "0" },
    });
    harness.simulator.failNext("account_pdf", 1, 404);
    harness.simulator.failNext("dac_zip", 1, 403);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    expect(bundle.problems).toEqual([
      expect.objectContaining({ code: "finapi_not_found", document: "account_pdf" }),
      // A 403 on a document is about that document, not the scope: the check still goes out.
      expect.objectContaining({
        code: "finapi_forbidden",
        document: "dac_zip",
        fix: expect.stringContaining("FETCH_DOCUMENTS"),
      }),
    ]);
    expect(bundle.documents).toEqual([]);
    expect((await harness.service.inbox.get(String(accepted.body.id)))?.state).toBe("done");
    expect(await readdir(harness.resultsDir)).not.toContain(
      `${callback.kreditCheckId}.account.pdf`,
    );
  });

  it("gives up when the token endpoint refuses the credentials while a document is fetched, instead of delivering without it", async () => {
    harness = await startHarness({ env: { FETCH_DOCUMENTS: "account_pdf", FINAPI_RETRIES: "0" } });
    const first = makeCallback();
    await harness.post(first);
    await harness.waitForBundle(String(first.kreditCheckId));
    harness.simulator.failNext("account_pdf", 1, 401);
    harness.simulator.failNext("token", 1, 401);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastErrorCodes).toEqual(["finapi_auth_failed"]);
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
  });

  it("gives up when finAPI refuses a document's request as invalid (400), instead of a done job without it", async () => {
    harness = await startHarness({ env: { FETCH_DOCUMENTS: "account_pdf", FINAPI_RETRIES: "0" } });
    harness.simulator.failNext("account_pdf", 1, 400);
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "dead");
    // Found by `retry --all-dead --code finapi_rejected`, as README's table says.
    expect(job.lastErrorCodes).toEqual(["finapi_rejected"]);
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeUndefined();
  });

  it("sends the documents base64 in the http sink's JSON, also when the delivery resumes from a retry", async () => {
    receiver = await startWebhookReceiver((index) => ({ status: index === 0 ? 503 : 200 }));
    harness = await startHarness({
      env: {
        FETCH_DOCUMENTS: "account_pdf,dac_zip",
        SINKS: "file,http",
        HTTP_SINK_URL: receiver.url,
        HTTP_SINK_SECRET: "a-signing-secret",
      },
    });
    const callback = makeCallback();
    await harness.post(callback);
    await waitFor(() => (receiver?.received.length ?? 0) >= 2, "the second post");
    const body = JSON.parse(receiver.received[1]?.rawBody ?? "{}") as {
      documents: { name: string; contentType: string; base64: string }[];
    };
    const urls = documentUrls(harness.simulator, callback);
    expect(body.documents.map(({ name, contentType }) => ({ name, contentType }))).toEqual([
      { name: "account_pdf", contentType: "application/pdf" },
      { name: "dac_zip", contentType: "application/zip" },
    ]);
    const [pdf, zip] = body.documents.map(({ base64 }) => Buffer.from(base64, "base64"));
    expect(pdf?.equals(await servedBytes(harness.simulator, urls.account_pdf))).toBe(true);
    expect(zip?.equals(await servedBytes(harness.simulator, urls.dac_zip))).toBe(true);
    // Fetched once: the retry resumed from the saved bundle.
    expect(harness.simulator.stats().calls.account_pdf).toBe(2); // one here, one by servedBytes
  });
});
