import { afterEach, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import {
  adminQuery,
  describePostgres,
  freshSchemaPerTest,
  testDatabaseUrl,
} from "../support/postgres.js";
import { documentUrls, servedBytes } from "../support/served.js";
import { waitFor } from "../support/wait-for.js";

describePostgres("the postgres sink", () => {
  const fresh = freshSchemaPerTest("sink");
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("stores the check, its DAC reports and its documents in tables the README's queries read", async () => {
    harness = await startHarness({
      env: {
        STORE_URL: testDatabaseUrl,
        PG_SCHEMA: fresh.name,
        SINKS: "file,postgres",
        FETCH_DOCUMENTS: "account_pdf,dac_zip",
      },
    });
    const callback = makeCallback();
    await harness.post(callback);
    const bundle = await harness.waitForBundle(String(callback.kreditCheckId));
    const id = String(callback.kreditCheckId);

    const [check] = await waitFor(async () => {
      const rows = await adminQuery(
        `SELECT * FROM ${fresh.name}.kreditcheck_checks WHERE kreditcheck_id = $1`,
        [id],
      );
      return rows.length > 0 ? rows : undefined;
    }, "the check row");
    const kreditCheck = bundle.kreditCheck as Record<string, unknown>;
    expect(check).toMatchObject({
      process_token: callback.processToken,
      client_reference: callback.clientReference,
      status: "SUCCESSFUL",
      overall_verdict: kreditCheck.overallVerdict,
      rate_amount: String(kreditCheck.rateAmount),
      kreditcheck: kreditCheck,
      callback,
      problems: [],
      deliveries: 1,
    });
    expect(check?.received_at).toEqual(new Date(bundle.receivedAt));

    const reports = await adminQuery(
      `SELECT case_id, report FROM ${fresh.name}.kreditcheck_dac_reports WHERE kreditcheck_id = $1`,
      [id],
    );
    expect(Object.fromEntries(reports.map((row) => [row.case_id, row.report]))).toEqual(
      bundle.dacReports,
    );

    const documents = await adminQuery(
      `SELECT name, content_type, content FROM ${fresh.name}.kreditcheck_documents WHERE kreditcheck_id = $1 ORDER BY name`,
      [id],
    );
    const urls = documentUrls(harness.simulator, callback);
    expect(documents.map((row) => [row.name, row.content_type])).toEqual([
      ["account_pdf", "application/pdf"],
      ["dac_zip", "application/zip"],
    ]);
    expect(documents[0]?.content).toEqual(await servedBytes(harness.simulator, urls.account_pdf));
    expect(documents[1]?.content).toEqual(await servedBytes(harness.simulator, urls.dac_zip));

    // The README's example queries, as written there.
    const verdict = String(kreditCheck.overallVerdict);
    const recent = await adminQuery(
      `SELECT kreditcheck_id, client_reference, rate_amount, completed_at
       FROM ${fresh.name}.kreditcheck_checks
       WHERE overall_verdict = $1 AND completed_at > now() - interval '7 days'
       ORDER BY completed_at DESC`,
      [verdict],
    );
    expect(recent.map((row) => row.kreditcheck_id)).toEqual([id]);
    const income = await adminQuery(
      `SELECT case_id, report -> 'reports' -> 'income' AS income
       FROM ${fresh.name}.kreditcheck_dac_reports
       WHERE kreditcheck_id = $1`,
      [id],
    );
    expect(income).toHaveLength(3);
    for (const row of income) {
      const served = bundle.dacReports[String(row.case_id)] as { reports: Record<string, unknown> };
      expect(row.income).toHaveProperty("type");
      expect(row.income).toEqual(served.reports.income);
    }
  });
});
