import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import pg from "pg";
import { afterEach, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { SqliteInbox } from "../../src/inbox/sqlite/sqlite-inbox.js";
import { closeSinks, loadSinks } from "../../src/sinks/load.js";
import { PostgresSink } from "../../src/sinks/postgres.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { captureLogs } from "../support/log-capture.js";
import {
  adminQuery,
  describePostgres,
  freshSchemaPerTest,
  testDatabaseUrl,
} from "../support/postgres.js";
import { documentUrls, servedBytes } from "../support/served.js";
import { waitFor } from "../support/wait-for.js";

/** Another session holding `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` until it rolls back. */
async function lockTable(table: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: testDatabaseUrl });
  await client.connect();
  await client.query("BEGIN");
  await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  return client;
}

async function unlock(client: pg.Client | undefined): Promise<void> {
  await client?.query("ROLLBACK").catch(() => undefined);
  await client?.end().catch(() => undefined);
}

/** A login role of its own (trust authentication), and the URL that connects as it. */
async function createRole(prefix: string): Promise<{ name: string; url: string }> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString("hex")}`;
  await adminQuery(`CREATE ROLE ${name} LOGIN`);
  const url = new URL(testDatabaseUrl);
  url.username = name;
  url.password = "";
  return { name, url: url.toString() };
}

async function dropRole(name: string): Promise<void> {
  await adminQuery(`DROP OWNED BY ${name}`);
  await adminQuery(`DROP ROLE ${name}`);
}

/** The sink's tables, created by the test's administrator as a DBA would. */
async function createSinkTables(schema: string): Promise<void> {
  const sink = await PostgresSink.open({
    url: testDatabaseUrl,
    schema,
    variable: "POSTGRES_SINK_URL",
    timeoutMs: 10_000,
  });
  await sink.close();
}

/**
 * A TCP relay to the test's PostgreSQL that can fall silent: then it accepts connections and
 * never answers, as a wrong host behind a firewall that drops packets does.
 */
async function startRelay() {
  const server = new URL(testDatabaseUrl);
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  };
  let silent = false;
  const relay = createServer((socket) => {
    track(socket);
    if (silent) return;
    const upstream = connect(Number(server.port || 5432), server.hostname);
    track(upstream);
    socket.pipe(upstream).pipe(socket);
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as { port: number };
  return {
    port,
    /** The test database through the relay, with a password (trust authentication ignores it). */
    url(password: string) {
      const url = new URL(testDatabaseUrl);
      url.host = `127.0.0.1:${port}`;
      url.password = password;
      return url.toString();
    },
    /** Cuts every connection, and answers none from now on. */
    fallSilent() {
      silent = true;
      for (const socket of sockets) socket.destroy();
    },
    resume() {
      silent = false;
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}

/** The job once its last error names `code`. */
function waitForError(harness: Harness, id: string, code: string, timeoutMs = 15_000) {
  return waitFor(
    async () => {
      const job = await harness.service.inbox.get(id);
      return job?.lastErrorCodes?.includes(code) ? job : undefined;
    },
    `job ${id} to fail with ${code}`,
    timeoutMs,
  );
}

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

describePostgres("the postgres sink when another session locks its table", () => {
  const fresh = freshSchemaPerTest("sinklock");
  let harness: Harness | undefined;
  let locker: pg.Client | undefined;
  afterEach(async () => {
    // The lock first: the service's close and the schema's drop would wait for it.
    await unlock(locker);
    locker = undefined;
    await harness?.close();
    harness = undefined;
  });

  /** The lock goes; the job is then done with its bundle written once. */
  async function unlockAndExpectOneWrite(id: string, kreditCheckId: string): Promise<void> {
    await unlock(locker);
    locker = undefined;
    await harness?.waitForJob(id, "done");
    const rows = await adminQuery(
      `SELECT deliveries FROM ${fresh.name}.kreditcheck_checks WHERE kreditcheck_id = $1`,
      [kreditCheckId],
    );
    expect(rows).toEqual([{ deliveries: 1 }]);
  }

  const env = (timeoutMs: string) => ({
    SINKS: "postgres",
    POSTGRES_SINK_URL: testDatabaseUrl,
    PG_SCHEMA: fresh.name,
    POSTGRES_SINK_TIMEOUT_MS: timeoutMs,
  });

  it("gives up a write after POSTGRES_SINK_TIMEOUT_MS, says why, and writes the bundle once the lock is gone", async () => {
    harness = await startHarness({ env: env("500") });
    locker = await lockTable(`${fresh.name}.kreditcheck_checks`);
    const callback = makeCallback();
    const id = String((await harness.post(callback)).body.id);

    const failed = await waitForError(harness, id, "postgres_sink_timeout");
    expect(failed.state).not.toBe("dead");
    expect(failed.lastErrorCodes).toEqual(["sink_delivery_failed", "postgres_sink_timeout"]);
    expect(failed.lastError).toContain("within POSTGRES_SINK_TIMEOUT_MS=500 ms");
    expect(failed.lastError).toContain("another session holds a lock");

    // The abandoned attempts left nothing behind: one write, on connections that still work.
    await unlockAndExpectOneWrite(id, String(callback.kreditCheckId));
  });

  it("survives its connection being cut mid-write (a failover, pg_terminate_backend): retried, then written once", async () => {
    const uncaught: string[] = [];
    const onUncaught = (error: Error) => void uncaught.push(error.message);
    process.on("uncaughtException", onUncaught);
    try {
      harness = await startHarness({ env: env("60000") });
      locker = await lockTable(`${fresh.name}.kreditcheck_checks`);
      const callback = makeCallback();
      const id = String((await harness.post(callback)).body.id);
      const waiting = `SELECT pid FROM pg_locks WHERE relation = '${fresh.name}.kreditcheck_checks'::regclass AND NOT granted`;
      await waitFor(
        async () => (await adminQuery(waiting)).length > 0,
        "the delivery to wait for the lock",
      );
      await adminQuery(`SELECT pg_terminate_backend(pid) FROM (${waiting}) AS waiting`);
      const failed = await waitForError(harness, id, "sink_delivery_failed");
      expect(failed.state).not.toBe("dead");
      await unlockAndExpectOneWrite(id, String(callback.kreditCheckId));
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });

  it("stops waiting for the lock at shutdown and gives the job back", async () => {
    harness = await startHarness({ env: { ...env("60000"), SHUTDOWN_TIMEOUT_MS: "500" } });
    locker = await lockTable(`${fresh.name}.kreditcheck_checks`);
    const id = String((await harness.post(makeCallback())).body.id);
    await waitFor(
      async () =>
        (
          await adminQuery(
            `SELECT 1 FROM pg_locks WHERE relation = '${fresh.name}.kreditcheck_checks'::regclass AND NOT granted`,
          )
        ).length > 0,
      "the delivery to wait for the lock",
    );

    const closing = harness.service.close().then(() => "closed");
    const stopped = await Promise.race([
      closing,
      new Promise((resolve) => setTimeout(() => resolve("still waiting after 10 s"), 10_000)),
    ]);
    expect(stopped).toBe("closed");
    // The store is closed now; read the job through a fresh inbox on the same file.
    const inbox = new SqliteInbox({ path: harness.config.store.sqlitePath });
    try {
      expect(await inbox.get(id)).toMatchObject({ state: "pending" });
    } finally {
      await inbox.close();
    }
  });
});

describePostgres("the postgres sink as a database user that may not create tables", () => {
  const fresh = freshSchemaPerTest("sinkgrant");
  let harness: Harness | undefined;
  let role: string | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
    if (role) await dropRole(role);
    role = undefined;
  });

  it("starts on tables that exist; a missing privilege kills the job with the GRANTs to run, after which a retry delivers", async () => {
    await createSinkTables(fresh.name);
    const user = await createRole("kcr_writer");
    role = user.name;
    const schema = fresh.name;
    // Everything but INSERT and UPDATE on kreditcheck_checks; no CREATE anywhere.
    await adminQuery(`GRANT USAGE ON SCHEMA ${schema} TO ${role};
      GRANT SELECT ON ${schema}.kreditcheck_schema_migrations, ${schema}.kreditcheck_checks TO ${role};
      GRANT SELECT, INSERT, DELETE ON ${schema}.kreditcheck_dac_reports, ${schema}.kreditcheck_documents TO ${role};`);
    harness = await startHarness({
      env: { SINKS: "postgres", POSTGRES_SINK_URL: user.url, PG_SCHEMA: schema },
    });
    const callback = makeCallback();
    const id = String((await harness.post(callback)).body.id);

    const dead = await harness.waitForJob(id, "dead");
    expect(dead.attempts).toBe(1);
    expect(dead.lastErrorCodes).toEqual(["sink_delivery_failed", "postgres_sink_forbidden"]);
    expect(dead.lastError).toContain("[42501]");
    expect(dead.lastError).toContain(
      `GRANT SELECT, INSERT, UPDATE ON ${schema}.kreditcheck_checks TO ${role};`,
    );
    expect(dead.lastError).toContain(
      "then npm run cli -- retry --all-dead --code postgres_sink_forbidden",
    );
    expect(dead.lastError).not.toContain("CREATE");

    // Do what the fix says: run its GRANTs, then retry the dead job.
    const grants = /run: (GRANT .*;) then npm run cli/.exec(String(dead.lastError))?.[1];
    await adminQuery(String(grants));
    expect(await harness.service.inbox.requeue(id)).toEqual({ fellBackToFresh: false });
    await harness.waitForJob(id, "done");
    const rows = await adminQuery(
      `SELECT kreditcheck_id FROM ${schema}.kreditcheck_checks WHERE kreditcheck_id = $1`,
      [String(callback.kreditCheckId)],
    );
    expect(rows).toHaveLength(1);
  });

  it("a start-up refused for a privilege says what to grant, not only CREATE", async () => {
    await createSinkTables(fresh.name);
    const user = await createRole("kcr_reader");
    role = user.name;
    await adminQuery(`GRANT USAGE ON SCHEMA ${fresh.name} TO ${role}`);
    const config = loadConfig({
      FINAPI_CLIENT_ID: "id",
      FINAPI_CLIENT_SECRET: "secret",
      SINKS: "postgres",
      POSTGRES_SINK_URL: user.url,
      PG_SCHEMA: fresh.name,
    });
    const message = await loadSinks(config, captureLogs().logger).then(
      async (sinks) => {
        await closeSinks(sinks, { timeoutMs: 10_000, logger: captureLogs().logger });
        return "started";
      },
      (error: unknown) => String((error as Error).message),
    );
    expect(message).toContain(
      `POSTGRES_SINK_URL=${user.url}: the postgres sink could not be set up: [42501]`,
    );
    expect(message).toContain(`CREATE on schema ${fresh.name}`);
    expect(message).toContain(
      `GRANT SELECT ON ${fresh.name}.kreditcheck_schema_migrations TO ${role};`,
    );
    expect(message).toContain(
      `GRANT SELECT, INSERT, UPDATE ON ${fresh.name}.kreditcheck_checks TO ${role};`,
    );
  });
});

describePostgres("the postgres sink when its server cannot be reached", () => {
  const fresh = freshSchemaPerTest("sinkdown");
  let harness: Harness | undefined;
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
    await relay?.close();
    relay = undefined;
  });

  it("names POSTGRES_SINK_URL without its password and what to check, retries, and delivers once it is back", async () => {
    relay = await startRelay();
    harness = await startHarness({
      env: {
        SINKS: "postgres",
        POSTGRES_SINK_URL: relay.url("s3cret-pw"),
        PG_SCHEMA: fresh.name,
        POSTGRES_SINK_TIMEOUT_MS: "500",
      },
    });
    relay.fallSilent();
    const callback = makeCallback();
    const id = String((await harness.post(callback)).body.id);

    const failed = await waitForError(harness, id, "postgres_sink_unreachable");
    expect(failed.state).not.toBe("dead");
    expect(failed.lastErrorCodes).toEqual(["sink_delivery_failed", "postgres_sink_unreachable"]);
    expect(failed.lastError).toContain(
      `could not connect to POSTGRES_SINK_URL (postgres://postgres:***@127.0.0.1:${relay.port}/test)`,
    );
    expect(failed.lastError).toContain("check host and port in POSTGRES_SINK_URL");
    expect(failed.lastError).not.toContain("s3cret-pw");

    relay.resume();
    await harness.waitForJob(id, "done");
    const rows = await adminQuery(
      `SELECT 1 FROM ${fresh.name}.kreditcheck_checks WHERE kreditcheck_id = $1`,
      [String(callback.kreditCheckId)],
    );
    expect(rows).toHaveLength(1);
  });
});

describePostgres(
  "the postgres sink given one check again (a redelivery, an operator's retry)",
  () => {
    const fresh = freshSchemaPerTest("sinkagain");
    let sink: PostgresSink | undefined;
    afterEach(async () => {
      await sink?.close();
      sink = undefined;
    });

    const ctx = () => ({ logger: captureLogs().logger, signal: new AbortController().signal });
    const openSink = () =>
      PostgresSink.open({
        url: testDatabaseUrl,
        schema: fresh.name,
        variable: "POSTGRES_SINK_URL",
        timeoutMs: 10_000,
      });
    function bundleOf(verdict: string, caseIds: string[]) {
      const callback = {
        processToken: "pt-again",
        kreditCheckId: "kc-again",
        status: "SUCCESSFUL",
      };
      return {
        callback,
        kreditCheck: { status: "SUCCESSFUL", overallVerdict: verdict },
        dacReports: Object.fromEntries(caseIds.map((caseId) => [caseId, { caseId, reports: {} }])),
        problems: [],
        receivedAt: "2026-01-01T00:00:00.000Z",
        completedAt: "2026-01-01T00:00:01.000Z",
      };
    }

    it("finds checks by client_reference, process_token and completion time through indexes", async () => {
      sink = await openSink();
      // Enough rows that reading the whole table costs more than an index lookup.
      for (let n = 0; n < 300; n += 1) {
        const bundle = bundleOf("GREEN", []);
        await sink.deliver(
          {
            ...bundle,
            callback: {
              processToken: `pt-${n}`,
              kreditCheckId: `kc-${n}`,
              status: "SUCCESSFUL",
              clientReference: `CU-${n}`,
            },
            completedAt: new Date(Date.UTC(2026, 0, 1, 0, n)).toISOString(),
          } as never,
          ctx(),
        );
      }
      await adminQuery(`ANALYZE ${fresh.name}.kreditcheck_checks`);
      const planOf = async (where: string) => {
        const rows = await adminQuery<{ "QUERY PLAN": string }>(
          `EXPLAIN SELECT kreditcheck_id FROM ${fresh.name}.kreditcheck_checks WHERE ${where}`,
        );
        return rows.map((row) => row["QUERY PLAN"]).join("\n");
      };
      expect(await planOf("client_reference = 'CU-7'")).toMatch(
        /kreditcheck_checks_client_reference/,
      );
      expect(await planOf("process_token = 'pt-7'")).toMatch(/kreditcheck_checks_process_token/);
      expect(
        await planOf(
          "completed_at >= '2026-01-01T04:00:00Z' AND completed_at < '2026-01-01T04:05:00Z'",
        ),
      ).toMatch(/kreditcheck_checks_completed/);
    });

    it("keeps one row per check, with the later bundle's verdict and only its DAC reports", async () => {
      sink = await openSink();
      await sink.deliver(bundleOf("GREEN", ["c-1", "c-2"]), ctx());
      await sink.deliver(bundleOf("RED", ["c-2", "c-3"]), ctx());

      const checks = await adminQuery(
        `SELECT overall_verdict, deliveries FROM ${fresh.name}.kreditcheck_checks WHERE kreditcheck_id = 'kc-again'`,
      );
      expect(checks).toEqual([{ overall_verdict: "RED", deliveries: 2 }]);
      const reports = await adminQuery(
        `SELECT case_id FROM ${fresh.name}.kreditcheck_dac_reports WHERE kreditcheck_id = 'kc-again' ORDER BY case_id`,
      );
      expect(reports.map((row) => row.case_id)).toEqual(["c-2", "c-3"]);
    });

    it("gives up at once on data the database refuses (a constraint), instead of retrying it", async () => {
      sink = await openSink();
      await adminQuery(
        `ALTER TABLE ${fresh.name}.kreditcheck_checks ADD CONSTRAINT no_black CHECK (overall_verdict <> 'BLACK')`,
      );
      const error = await sink
        .deliver(bundleOf("BLACK", ["c-1"]), ctx())
        .catch((thrown: unknown) => thrown);
      expect(error).toMatchObject({ code: "postgres_sink_rejected", retryable: false });
      expect(
        await adminQuery(
          `SELECT 1 FROM ${fresh.name}.kreditcheck_checks WHERE kreditcheck_id = 'kc-again'`,
        ),
      ).toEqual([]);
    });
  },
);

describePostgres(
  "the postgres sink given text PostgreSQL cannot store (U+0000, a lone surrogate)",
  () => {
    const fresh = freshSchemaPerTest("sinktext");
    let sink: PostgresSink | undefined;
    afterEach(async () => {
      await sink?.close();
      sink = undefined;
    });

    it("stores the check with U+FFFD in their place and a text_replaced problem, leaving the bundle as served", async () => {
      sink = await PostgresSink.open({
        url: testDatabaseUrl,
        schema: fresh.name,
        variable: "POSTGRES_SINK_URL",
        timeoutMs: 10_000,
      });
      // As a bank may serve an account holder's name: jsonb refuses both (22P05, 22P02).
      const bundle = {
        callback: { processToken: "pt-text", kreditCheckId: "kc-text", status: "SUCCESSFUL" },
        kreditCheck: {
          status: "SUCCESSFUL",
          overallVerdict: "GREEN",
          bankConnections: [{ accounts: [{ accountHolderName: "Muster\u0000GmbH" }] }],
          // A key too, and a surrogate pair (an emoji), which is a character and stays.
          "note\ud800": "fine \ud83d\ude00",
          // Text that only looks like an escape (a backslash, then u0000) is no NUL.
          memo: "C:\\u0000 as typed",
        },
        dacReports: {
          "c-1": { caseId: "c-1", reports: { income: { employer: "Firma\ud800 AG" } } },
          "c-2": { caseId: "c-2", reports: {} },
        },
        problems: [],
        receivedAt: "2026-01-01T00:00:00.000Z",
        completedAt: "2026-01-01T00:00:01.000Z",
      };
      const asServed = structuredClone(bundle);

      await sink.deliver(bundle, { logger: captureLogs().logger });

      // The other sinks get the same object afterwards: it is not changed.
      expect(bundle).toEqual(asServed);
      const [check] = await adminQuery(
        `SELECT kreditcheck, problems FROM ${fresh.name}.kreditcheck_checks WHERE kreditcheck_id = 'kc-text'`,
      );
      expect(check?.kreditcheck).toEqual({
        status: "SUCCESSFUL",
        overallVerdict: "GREEN",
        bankConnections: [{ accounts: [{ accountHolderName: "Muster\ufffdGmbH" }] }],
        "note\ufffd": "fine \ud83d\ude00",
        memo: "C:\\u0000 as typed",
      });
      const reports = await adminQuery(
        `SELECT case_id, report FROM ${fresh.name}.kreditcheck_dac_reports WHERE kreditcheck_id = 'kc-text' ORDER BY case_id`,
      );
      expect(reports).toEqual([
        {
          case_id: "c-1",
          report: { caseId: "c-1", reports: { income: { employer: "Firma\ufffd AG" } } },
        },
        { case_id: "c-2", report: { caseId: "c-2", reports: {} } },
      ]);
      // Whoever reads the row learns which parts are not finAPI's text, and where to look.
      expect(check?.problems).toEqual([
        {
          code: "text_replaced",
          message: expect.stringContaining(
            "2 strings of kreditCheck with U+FFFD in place of characters PostgreSQL cannot store",
          ),
          fix: expect.stringContaining("read it from another sink"),
        },
        {
          code: "text_replaced",
          caseId: "c-1",
          message: expect.stringContaining(
            '1 string of dacReports["c-1"] with U+FFFD in place of characters PostgreSQL cannot store (U+0000, or half of a UTF-16 surrogate pair without its other half), one at dacReports["c-1"].reports.income.employer;',
          ),
          fix: expect.any(String),
        },
      ]);
      // Either place, named so that a reader finds it (a key as a JSON escape).
      expect(check?.problems[0].message).toMatch(
        /, one at kreditCheck(\.bankConnections\[0\]\.accounts\[0\]\.accountHolderName|\["note\\ud800"\]);/,
      );
    });
  },
);
