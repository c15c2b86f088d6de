import { afterEach, expect, it } from "vitest";
import type { Callback } from "../../src/callback.js";
import { StoreUnavailableError } from "../../src/inbox/inbox.js";
import { PostgresInbox } from "../../src/inbox/postgres/postgres-inbox.js";
import {
  adminQuery,
  describePostgres,
  dropSchema,
  freshSchemaName,
  freshSchemaPerTest,
  testDatabaseUrl,
} from "../support/postgres.js";
import { waitFor } from "../support/wait-for.js";
import { defineInboxContract } from "./inbox-contract.js";

let counter = 0;
function callback(): Callback {
  counter += 1;
  const suffix = `${process.pid}-${counter}`;
  return {
    processToken: `pt-${suffix}`,
    kreditCheckId: `kc-${suffix}`,
    status: "SUCCESSFUL",
    clientReference: null,
    errorMessage: null,
  };
}

describePostgres("PostgreSQL inbox", () => {
  defineInboxContract("PostgreSQL", async () => {
    const schema = freshSchemaName("inbox");
    return {
      open: () => PostgresInbox.open({ url: testDatabaseUrl, schema }),
      // The database's clock cannot be moved: move the jobs' timestamps back instead.
      advance: async (ms) => {
        await adminQuery(
          `UPDATE ${schema}.kreditcheck_jobs
           SET run_at = run_at - $1 * interval '1 millisecond',
               locked_until = locked_until - $1 * interval '1 millisecond',
               updated_at = updated_at - $1 * interval '1 millisecond',
               finished_at = finished_at - $1 * interval '1 millisecond'`,
          [ms],
        );
      },
      now: Date.now,
      dispose: (failed) => dropSchema(schema, failed),
    };
  });
});

describePostgres("PostgreSQL inbox: replicas", () => {
  const fresh = freshSchemaPerTest("replicas");
  const opened: PostgresInbox[] = [];
  const open = async (options: Partial<Parameters<typeof PostgresInbox.open>[0]> = {}) => {
    const inbox = await PostgresInbox.open({
      url: testDatabaseUrl,
      schema: fresh.name,
      ...options,
    });
    opened.push(inbox);
    return inbox;
  };
  afterEach(async () => {
    await Promise.allSettled(opened.splice(0).map((inbox) => inbox.close()));
  });

  it("migrates once when ten replicas start at the same moment on a fresh schema", async () => {
    const inboxes = await Promise.all(Array.from({ length: 10 }, () => open()));
    expect(inboxes).toHaveLength(10);
    const ledger = await adminQuery(
      `SELECT component, version FROM ${fresh.name}.kreditcheck_schema_migrations`,
    );
    expect(ledger).toEqual([
      { component: "inbox", version: 1 },
      { component: "inbox", version: 2 },
    ]);
  });

  it("refuses to start on a schema that a newer release migrated, saying what to do", async () => {
    await (await open()).close();
    await adminQuery(
      `INSERT INTO ${fresh.name}.kreditcheck_schema_migrations (component, version, name) VALUES ('inbox', 99, 'from the future')`,
    );
    await expect(open()).rejects.toThrow(
      /version 99, newer than this release understands \(2\).*newer kreditcheck-receiver/,
    );
  });

  it("wakes a replica when another replica stores a job, also after its LISTEN connection dropped", async () => {
    const idle = await open({ onListenError: () => undefined });
    const busy = await open();
    let wakeups = 0;
    idle.onEnqueued(() => {
      wakeups += 1;
    });
    await busy.enqueue(callback(), new Date());
    await waitFor(() => wakeups >= 1, "a notification from the other replica", 5000);

    await adminQuery(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kreditcheck-receiver listen' AND query ILIKE 'LISTEN%' AND datname = current_database()",
    );
    // Reconnecting reports one wake-up (a notification may have been missed meanwhile) …
    await waitFor(() => wakeups >= 2, "a wake-up after reconnecting", 5000);
    const before = wakeups;
    // … and later notifications arrive again.
    await busy.enqueue(callback(), new Date());
    await waitFor(() => wakeups > before, "a notification after reconnecting", 5000);
  });

  it("never hands one job to two replicas claiming at the same time", async () => {
    const replicas = await Promise.all([open(), open(), open()]);
    const first = replicas[0] as PostgresInbox;
    await Promise.all(Array.from({ length: 150 }, () => first.enqueue(callback(), new Date())));
    const claimedBy = new Map<string, string>();
    const duplicates: string[] = [];
    await Promise.all(
      replicas.map(async (replica, index) => {
        for (;;) {
          const jobs = await replica.claim(`worker-${index}`, 7, 30_000);
          if (jobs.length === 0) return;
          for (const job of jobs) {
            if (claimedBy.has(job.id)) duplicates.push(job.id);
            claimedBy.set(job.id, `worker-${index}`);
          }
        }
      }),
    );
    expect(duplicates).toEqual([]);
    expect(claimedBy.size).toBe(150);
    expect(new Set(claimedBy.values()).size).toBeGreaterThan(1);
  });

  it("answers ping with a durable write, so a database that cannot be written is not ready", async () => {
    const inbox = await open();
    await inbox.ping();
    const [first] = await adminQuery(`SELECT at FROM ${fresh.name}.kreditcheck_heartbeat`);
    expect(first?.at).toBeInstanceOf(Date);
    // Reads still work, writes are refused: ping must notice.
    await adminQuery(`DELETE FROM ${fresh.name}.kreditcheck_heartbeat`);
    await adminQuery(
      `ALTER TABLE ${fresh.name}.kreditcheck_heartbeat ADD CHECK (at < '2000-01-01')`,
    );
    await expect(inbox.countByState()).resolves.toMatchObject({ pending: 0 });
    await expect(inbox.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it("reports an unreachable server as StoreUnavailableError naming the SQLSTATE or socket code", async () => {
    const error = await PostgresInbox.open({
      url: "postgres://postgres@127.0.0.1:1/test",
      schema: fresh.name,
    }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(String((error as Error).message)).toContain("ECONNREFUSED");
  });

  it("reports a missing database as StoreUnavailableError with SQLSTATE 3D000 and the fix", async () => {
    const url = new URL(testDatabaseUrl);
    url.pathname = "/no_such_database_kcr";
    const error = await PostgresInbox.open({ url: url.toString(), schema: fresh.name }).catch(
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(String((error as Error).message)).toMatch(/\[3D000\].*does not exist: create it/);
  });
});
