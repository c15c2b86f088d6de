import pg from "pg";
import { afterEach, expect, it, vi } from "vitest";
import type { Callback } from "../../src/callback.js";
import { StoreUnavailableError } from "../../src/inbox/inbox.js";
import { PostgresInbox } from "../../src/inbox/postgres/postgres-inbox.js";
import { INBOX_MIGRATIONS } from "../../src/inbox/postgres/schema.js";
import { SQL } from "../../src/inbox/postgres/statements.js";
import { migrate } from "../../src/postgres/migrate.js";
import { makeCallback } from "../support/harness.js";
import {
  adminQuery,
  describePostgres,
  dropSchema,
  freshSchemaName,
  freshSchemaPerTest,
  testDatabaseUrl,
} from "../support/postgres.js";
import { startTcpRelay } from "../support/tcp-relay.js";
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

  /** Another session holding a lock on the jobs table in `mode` until `end` (COMMIT or ROLLBACK). */
  async function lockJobsTable(mode: "SHARE" | "ACCESS EXCLUSIVE") {
    const locker = new pg.Client({ connectionString: testDatabaseUrl });
    await locker.connect();
    await locker.query("BEGIN");
    await locker.query(`LOCK TABLE ${fresh.name}.kreditcheck_jobs IN ${mode} MODE`);
    let ended = false;
    return {
      async end(how: "COMMIT" | "ROLLBACK" = "ROLLBACK") {
        if (ended) return;
        ended = true;
        await locker.query(how).catch(() => undefined);
        await locker.end();
      },
    };
  }

  it("replaces a stored callback once when two replicas get a SUCCESSFUL one for it at once", async () => {
    for (const second of ["SUCCESSFUL", "IN_PROGRESS", "FAILED"]) {
      const a = await open();
      const b = await open();
      const stored = { ...callback(), status: "FAILED" };
      const { id } = await a.enqueue(stored, new Date());
      // The row held, so both replicas' statements wait for it and run one after the other.
      const holder = new pg.Client({ connectionString: testDatabaseUrl });
      await holder.connect();
      await holder.query("BEGIN");
      await holder.query(`SELECT 1 FROM ${fresh.name}.kreditcheck_jobs WHERE id = $1 FOR UPDATE`, [
        id,
      ]);
      const first = a.enqueue({ ...stored, status: "SUCCESSFUL" }, new Date());
      await waitFor(
        async () => (await adminQuery(`SELECT 1 FROM pg_locks WHERE NOT granted`)).length > 0,
        "the first replace waiting for the row",
      );
      const other = b.enqueue({ ...stored, status: second }, new Date());
      await new Promise((resolve) => setTimeout(resolve, 100));
      await holder.query("COMMIT");
      await holder.end();
      const results = await Promise.all([first, other]);
      expect(
        results.filter((result) => !result.duplicate),
        second,
      ).toHaveLength(1);
      expect((await a.get(id))?.callback.status, second).toBe("SUCCESSFUL");
    }
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
      { component: "inbox", version: 3 },
      { component: "inbox", version: 4 },
    ]);
  });

  it("reads the oldest unfinished job's age (/metrics) from an index, not by scanning the backlog", async () => {
    await open();
    const client = new pg.Client({ connectionString: testDatabaseUrl });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${fresh.name}`);
      // A fresh table is tiny, where a scan is cheapest: ask whether the index can serve it.
      await client.query("SET enable_seqscan = off");
      const { rows } = await client.query<{ "QUERY PLAN": string }>(
        `EXPLAIN ${SQL.oldestUnfinished}`,
      );
      expect(rows.map((row) => row["QUERY PLAN"]).join("\n")).toContain(
        "kreditcheck_jobs_unfinished_received",
      );
    } finally {
      await client.end();
    }
  });

  it("claims without rereading the rows of jobs finished since the last vacuum", async () => {
    const inbox = await open();
    // 1,500 jobs run and finished, each lease already expired when it finished (as any
    // job's is a lease-length later): their dead entries stay in the running-lease index
    // until a vacuum (this machine's PostgreSQL runs none on its own).
    const FINISHED = 1500;
    for (let at = 0; at < FINISHED; at += 100) {
      await Promise.all(Array.from({ length: 100 }, () => inbox.enqueue(callback(), new Date())));
    }
    for (let done = 0; done < FINISHED; done++) {
      const [job] = await inbox.claim("w", 1, 1);
      if (!job?.lockedBy) throw new Error("nothing to claim");
      await inbox.complete(job.id, job.lockedBy, {});
    }
    await inbox.enqueue(callback(), new Date());
    const client = new pg.Client({ connectionString: testDatabaseUrl });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${fresh.name}`);
      const buffersOfClaim = async () => {
        await client.query("BEGIN");
        try {
          const { rows } = await client.query<{ "QUERY PLAN": string }>(
            `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${SQL.claim}`,
            ["w", 1, 30_000],
          );
          const explained = rows[0]?.["QUERY PLAN"] as unknown as
            | { Plan: Record<string, number> }[]
            | undefined;
          const plan = explained?.[0]?.Plan;
          if (!plan) throw new Error("EXPLAIN returned no plan");
          return (plan["Shared Hit Blocks"] ?? 0) + (plan["Shared Read Blocks"] ?? 0);
        } finally {
          await client.query("ROLLBACK");
        }
      };
      // A bitmap scan of that index rereads every finished job's row on every claim (about
      // 80 pages here, growing with each job); a plain scan marks them dead once and skips them.
      // Only once no transaction that began before they finished is open, though, in any
      // database of the server (another test file's, under load): so asked again until then.
      const costs: number[] = [];
      await waitFor(
        async () => {
          costs.push(await buffersOfClaim());
          return costs.length > 1 && (costs.at(-1) ?? 0) < 40;
        },
        "a claim that reads fewer than 40 pages",
        20_000,
        250,
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}; pages read by each claim: ${costs.join(", ")}`);
      });
    } finally {
      await client.end();
    }
  }, 40_000);

  it("refuses to start on a schema that a newer release migrated, saying what to do", async () => {
    await (await open()).close();
    await adminQuery(
      `INSERT INTO ${fresh.name}.kreditcheck_schema_migrations (component, version, name) VALUES ('inbox', 99, 'from the future')`,
    );
    await expect(open()).rejects.toThrow(
      /version 99, newer than this release understands \(4\).*newer kreditcheck-receiver/,
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

  it("counts a retry's delay on the database's clock, not on a replica's clock running ahead", async () => {
    const ahead = await open();
    const other = await open();
    const { id } = await ahead.enqueue(callback(), new Date());
    await ahead.claim("worker-ahead", 1, 30_000);
    // This replica's clock runs an hour fast: a run_at from it would hold the job an hour.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 3_600_000 });
    try {
      await ahead.retry(id, "worker-ahead", 0, { message: "finapi_unavailable: 503" }, {});
    } finally {
      vi.useRealTimers();
    }
    const [claimed] = await other.claim("worker-other", 1, 30_000);
    expect(claimed).toMatchObject({ id, attempts: 2 });
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

  it("upgrades a schema of an earlier release in place and claims its jobs oldest first", async () => {
    // Version 2 exactly as released (its pending index on run_at alone).
    const pool = new pg.Pool({ connectionString: testDatabaseUrl, max: 1 });
    pool.on("connect", (client) => {
      client.query(`SET search_path TO ${fresh.name}`).catch(() => undefined);
    });
    try {
      await migrate(pool, fresh.name, {
        component: INBOX_MIGRATIONS.component,
        migrations: INBOX_MIGRATIONS.migrations.slice(0, 2),
      });
    } finally {
      await pool.end();
    }
    // Three due jobs that tie on run_at, received c, a, b; one expired lease received first.
    const insert = (id: string, state: string, receivedAt: string, lockedUntil: string | null) =>
      adminQuery(
        `INSERT INTO ${fresh.name}.kreditcheck_jobs
           (id, process_token, kreditcheck_id, callback, state, run_at, locked_by, locked_until, received_at, updated_at)
         VALUES ($1::uuid, $1::text, $1::text, '{}', $2, '2026-01-01T00:00:00Z', $3, $4, $5, now())`,
        [id, state, lockedUntil ? "gone-worker" : null, lockedUntil, receivedAt],
      );
    await insert("00000000-0000-4000-8000-00000000000c", "pending", "2026-01-01T00:00:01Z", null);
    await insert("00000000-0000-4000-8000-00000000000a", "pending", "2026-01-01T00:00:02Z", null);
    await insert("00000000-0000-4000-8000-00000000000b", "pending", "2026-01-01T00:00:03Z", null);
    await insert(
      "00000000-0000-4000-8000-0000000000ee",
      "running",
      "2026-01-01T00:00:00Z",
      "2026-01-01T00:05:00Z",
    );
    const inbox = await open();
    const first = await inbox.claim("w:1", 2, 30_000);
    const rest = await inbox.claim("w:2", 5, 30_000);
    // The two oldest first (one claim's jobs start together, in no particular order).
    const ids = (jobs: { id: string }[]) => jobs.map((job) => job.id.slice(-2)).sort();
    expect(ids(first)).toEqual(["0c", "ee"]);
    expect(ids(rest)).toEqual(["0a", "0b"]);
    const indexes = await adminQuery<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'kreditcheck_jobs'",
      [fresh.name],
    );
    const names = indexes.map((row) => row.indexname);
    expect(names).toContain("kreditcheck_jobs_pending_due");
    expect(names).not.toContain("kreditcheck_jobs_pending_run_at");
  });

  it("keeps the migrations before a failed one, and the next start goes on from there", async () => {
    // One transaction per migration: a start that skips releases does not hold an early
    // migration's locks (DROP INDEX blocks reads) through every later index build.
    const pool = new pg.Pool({ connectionString: testDatabaseUrl, max: 1 });
    pool.on("connect", (client) => {
      client.query(`SET search_path TO ${fresh.name}`).catch(() => undefined);
    });
    const steps = [
      { name: "one", sql: "CREATE TABLE step_one (id integer)" },
      { name: "two", sql: "CREATE TABLE step_two (id integer)" },
      { name: "three", sql: "INSERT INTO no_such_table VALUES (1)" },
    ];
    const ledger = () =>
      adminQuery<{ version: number }>(
        `SELECT version FROM ${fresh.name}.kreditcheck_schema_migrations WHERE component = 'steps' ORDER BY version`,
      );
    try {
      await expect(
        migrate(pool, fresh.name, { component: "steps", migrations: steps }),
      ).rejects.toThrow(/no_such_table/);
      expect(await ledger()).toEqual([{ version: 1 }, { version: 2 }]);
      steps[2] = { name: "three", sql: "INSERT INTO step_two VALUES (3)" };
      await migrate(pool, fresh.name, { component: "steps", migrations: steps });
      expect(await ledger()).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
      expect(await adminQuery(`SELECT id FROM ${fresh.name}.step_two`)).toEqual([{ id: 3 }]);
    } finally {
      await pool.end();
    }
  });

  it("retries a dead job whose kept bundle holds a U+0000 afresh, instead of failing the retry", async () => {
    const inbox = await open();
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    await inbox.claim("worker-a", 1, 60_000);
    // The json column takes the escape; reading a field of it later does not (22P05).
    const bundle = { callback: { clientReference: "a\u0000b" }, kreditCheck: null };
    await inbox.fail(id, "worker-a", { message: "postgres_sink_rejected: 0x00" }, { bundle });
    // Said by the requeue itself (the admin API warns with it): a later read could not tell
    // this job from one a worker finished meanwhile.
    expect(await inbox.requeue(id)).toEqual({ fellBackToFresh: true });
    const requeued = await inbox.get(id);
    expect(requeued).toMatchObject({ state: "pending", attempts: 0, lastError: null });
    expect(Object.keys(requeued?.progress ?? {})).toEqual(["requeuedAt"]);
  });

  it("says a retry fell back afresh only for a dead job, and only if asked to keep its bundle", async () => {
    const inbox = await open();
    const ids: string[] = [];
    for (let index = 0; index < 4; index++) {
      ids.push((await inbox.enqueue(makeCallback() as never, new Date())).id);
    }
    await inbox.claim("worker-a", 4, 60_000);
    const [ifDead, fresh, done, retried] = ids as [string, string, string, string];
    const bundle = { callback: { clientReference: "a\u0000b" }, kreditCheck: null };
    const failure = { message: "postgres_sink_rejected: 0x00" };
    for (const id of [ifDead, fresh]) await inbox.fail(id, "worker-a", failure, { bundle });
    // A done job's progress with the escape: fetched anew anyway, nothing was lost.
    await inbox.complete(done, "worker-a", { deliveredSinks: ["a\u0000b"] });
    await inbox.retry(retried, "worker-a", 3_600_000, failure, { bundle });
    expect(await inbox.requeue(ifDead, { onlyIfState: "dead" })).toEqual({
      fellBackToFresh: true,
    });
    expect(await inbox.requeue(fresh, { fresh: true })).toEqual({ fellBackToFresh: false });
    expect(await inbox.requeue(done)).toEqual({ fellBackToFresh: false });
    // A pending job is only made due: it keeps its bundle, unread.
    expect(await inbox.requeue(retried)).toEqual({ fellBackToFresh: false });
    for (const id of ids) expect((await inbox.get(id))?.state).toBe("pending");
    expect(Object.keys((await inbox.get(retried))?.progress ?? {})).toEqual(["bundle"]);
  });

  it("lists a dead job whose kept bundle holds a U+0000 beside the others, without its bundle", async () => {
    const inbox = await open();
    const ids: string[] = [];
    for (let index = 0; index < 2; index++) {
      ids.push((await inbox.enqueue(makeCallback() as never, new Date())).id);
    }
    await inbox.claim("worker-a", 2, 60_000);
    const bundle = { callback: { clientReference: "a\u0000b" }, kreditCheck: null };
    const failure = { message: "postgres_sink_rejected: 0x00" };
    await inbox.fail(String(ids[0]), "worker-a", failure, { bundle, deliveredSinks: ["file"] });
    await inbox.fail(String(ids[1]), "worker-a", failure, { bundle: { kreditCheck: null } });
    const listed = await inbox.list({ state: "dead", limit: 10 });
    expect(listed.map((job) => job.id).sort()).toEqual([...ids].sort());
    for (const job of listed) {
      expect(job.bundleKept).toBe(true);
      expect(job.progress).not.toHaveProperty("bundle");
    }
    expect(listed.find((job) => job.id === ids[0])?.progress.deliveredSinks).toEqual(["file"]);
  });

  it("lets the server cancel a statement that outlasts its timeout, so it never commits after the worker gave up", async () => {
    const inbox = await open({ queryTimeoutMs: 1000 });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    const lock = await lockJobsTable("ACCESS EXCLUSIVE");
    try {
      await expect(inbox.claim("w:1", 1, 60_000)).rejects.toThrow(StoreUnavailableError);
      // Held past the timeout: a claim still waiting on the server would now go through.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await lock.end("COMMIT");
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await inbox.get(id)).toMatchObject({ state: "pending", attempts: 0, lockedBy: null });
    } finally {
      await lock.end();
    }
  });

  it("does not hold a callback for a lock another session holds on the jobs table, but lets the worker's writes wait it out", async () => {
    const lockTimeoutMs = 600;
    const inbox = await open({ lockTimeoutMs });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    await inbox.claim("worker-a", 1, 60_000);
    // As CREATE INDEX without CONCURRENTLY would hold it, for as long as it takes.
    const lock = await lockJobsTable("SHARE");
    try {
      // The job's outcome is being stored meanwhile: it must not fail (the job would run again).
      const completed = inbox.complete(id, "worker-a", { deliveredSinks: ["file"] });
      const first = inbox.enqueue(makeCallback() as never, new Date()).catch((e) => e);
      await new Promise((resolve) => setTimeout(resolve, lockTimeoutMs / 2));
      // Queued behind the first batch, which waits for the lock: its 503 comes with the
      // first's, not after a wait of its own (the lock timeout bounds a callback's wait).
      const startedAt = Date.now();
      const second = await inbox.enqueue(makeCallback() as never, new Date()).catch((e) => e);
      expect(Date.now() - startedAt).toBeLessThan(lockTimeoutMs);
      for (const failure of [await first, second]) {
        expect(failure).toBeInstanceOf(StoreUnavailableError);
        expect(String(failure.message)).toMatch(/55P03.*another session holds one on the table/);
      }
      // Readiness sees it too: its write takes the lock a callback's insert takes.
      await expect(inbox.ping()).rejects.toThrow(/55P03/);
      await lock.end();
      await expect(completed).resolves.toBeUndefined();
      expect((await inbox.get(id))?.state).toBe("done");
      // Once the lock is gone, callbacks go through again.
      await expect(inbox.enqueue(makeCallback() as never, new Date())).resolves.toMatchObject({
        duplicate: false,
      });
    } finally {
      await lock.end();
    }
  });

  it("starts a lease when the claim is written, not when it began, so a claim that waited out a lock is not taken over at once", async () => {
    const leaseMs = 1000;
    const inbox = await open();
    const other = await open();
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    const lock = await lockJobsTable("SHARE");
    let claimed: Awaited<ReturnType<PostgresInbox["claim"]>> = [];
    try {
      const claiming = inbox.claim("replica-a:1", 1, leaseMs);
      // The claim waits for the lock longer than its lease lasts (as behind CREATE INDEX).
      await new Promise((resolve) => setTimeout(resolve, leaseMs + 500));
      await lock.end("COMMIT");
      claimed = await claiming;
    } finally {
      await lock.end();
    }
    expect(claimed.map((job) => job.id)).toEqual([id]);
    expect(claimed[0]?.lockedUntil?.getTime()).toBeGreaterThan(Date.now());
    // Another replica claiming now finds the lease running, not expired.
    expect(await other.claim("replica-b:1", 1, leaseMs)).toEqual([]);
    // And a renewal that waited for a lock extends it from when it was written.
    const renewLock = await lockJobsTable("SHARE");
    try {
      const renewing = inbox.renew(id, "replica-a:1", leaseMs);
      await new Promise((resolve) => setTimeout(resolve, leaseMs + 500));
      await renewLock.end("COMMIT");
      await renewing;
    } finally {
      await renewLock.end();
    }
    expect(await other.claim("replica-b:2", 1, leaseMs)).toEqual([]);
  });

  it("stores a failure whose text holds a U+0000 (quoted from a body), so the job backs off or dies as it should", async () => {
    const inbox = await open();
    const ids: string[] = [];
    for (let index = 0; index < 2; index++) {
      ids.push((await inbox.enqueue(makeCallback() as never, new Date())).id);
    }
    await inbox.claim("worker-a", 2, 60_000);
    const failure = { message: "http_sink_rejected: the receiver answered 400: a\u0000b" };
    await inbox.retry(String(ids[0]), "worker-a", 60_000, failure, {});
    await inbox.fail(String(ids[1]), "worker-a", failure, {});
    for (const [id, state] of [
      [ids[0], "pending"],
      [ids[1], "dead"],
    ] as const) {
      const job = await inbox.get(String(id));
      expect(job?.state).toBe(state);
      expect(job?.lastError).toBe("http_sink_rejected: the receiver answered 400: a\uFFFDb");
    }
  });

  it("survives a listener that throws when the LISTEN connection calls it, not only after a write", async () => {
    const writer = await open();
    const listening = await open();
    let calls = 0;
    listening.onEnqueued(() => {
      calls += 1;
      throw new Error("a listener's own bug");
    });
    // Written by the other replica: this one hears of it only through NOTIFY, from an
    // event of its LISTEN connection, where a throw would end the process.
    await writer.enqueue(makeCallback() as never, new Date());
    await waitFor(() => calls >= 1, "the notification");
    await expect(writer.enqueue(makeCallback() as never, new Date())).resolves.toMatchObject({
      duplicate: false,
    });
    await waitFor(() => calls >= 2, "the second notification");
  });

  it("keeps PG_SCHEMA and its lock timeout when the URL brings options and timeouts of its own", async () => {
    const url = new URL(testDatabaseUrl);
    url.searchParams.set("options", "-c timezone=Pacific/Kiritimati");
    // A lock_timeout of its own (0: none) does not replace the callbacks' bound either.
    url.searchParams.set("lock_timeout", "0");
    const lockTimeoutMs = 300;
    const inbox = await open({ url: url.toString(), lockTimeoutMs });
    await inbox.enqueue(makeCallback() as never, new Date());
    // The tables are in PG_SCHEMA (node-postgres let the URL's options replace ours: public).
    const tables = await adminQuery(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'kreditcheck_jobs'",
      [fresh.name],
    );
    expect(tables).toHaveLength(1);
    // And a callback still gives up on a lock after lockTimeoutMs (55P03), not after the
    // statement timeout.
    const lock = await lockJobsTable("SHARE");
    try {
      await expect(inbox.enqueue(makeCallback() as never, new Date())).rejects.toThrow(/55P03/);
    } finally {
      await lock.end();
    }
  });

  it("fails an operator's reads and retries on a lock held on the jobs table instead of hanging until it goes", async () => {
    const lockTimeoutMs = 1000;
    const inbox = await open({ lockTimeoutMs });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    // As ALTER TABLE, VACUUM FULL or a TRUNCATE would hold it: even reads wait.
    const lock = await lockJobsTable("ACCESS EXCLUSIVE");
    try {
      const startedAt = Date.now();
      const reads = [
        inbox.countByState(),
        inbox.oldestUnfinished(),
        inbox.list({ limit: 10 }),
        inbox.get(id),
        inbox.requeue(id),
      ];
      // They wait on connections of their own, not on the callbacks' (a slow count over a
      // large table would otherwise hold a callback's 202).
      const waiting = `SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND application_name LIKE 'kreditcheck-receiver%'`;
      await waitFor(async () => (await adminQuery(waiting)).length > 0, "the reads waiting");
      expect(new Set((await adminQuery(waiting)).map((row) => row.application_name))).toEqual(
        new Set(["kreditcheck-receiver admin"]),
      );
      const outcomes = await Promise.allSettled(reads);
      // Metrics then report the inbox down, and the admin API answers 503, within the bound.
      expect(Date.now() - startedAt).toBeLessThan(lockTimeoutMs * 6);
      for (const outcome of outcomes) {
        expect(outcome.status).toBe("rejected");
        const reason = (outcome as PromiseRejectedResult).reason;
        expect(reason).toBeInstanceOf(StoreUnavailableError);
        expect(String(reason.message)).toMatch(/55P03/);
      }
    } finally {
      await lock.end();
    }
    expect(await inbox.countByState()).toMatchObject({ pending: 1 });
  });

  it("gives up a statement on a connection that died without a word, and goes on with a new one", async () => {
    const target = new URL(testDatabaseUrl);
    const relay = await startTcpRelay({ host: target.hostname, port: Number(target.port || 5432) });
    try {
      const url = new URL(testDatabaseUrl);
      url.host = `127.0.0.1:${relay.port}`;
      const inbox = await open({ url: url.toString(), queryTimeoutMs: 500, lockTimeoutMs: 200 });
      await inbox.enqueue(callback(), new Date());
      await inbox.ping();
      expect(await inbox.claim("w:1", 0, 30_000)).toEqual([]);
      relay.stall();
      // Each waited forever before: the worker's claim, readiness's probe, a callback.
      const started = Date.now();
      await expect(inbox.claim("w:2", 1, 30_000)).rejects.toThrow(StoreUnavailableError);
      await expect(inbox.ping()).rejects.toThrow(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(5_000);
      // The dead connections were closed, not returned to the pool: the next statements
      // open new ones and succeed.
      const [job] = await inbox.claim("w:3", 1, 30_000);
      expect(job?.state).toBe("running");
      await inbox.ping();
      expect((await inbox.enqueue(callback(), new Date())).duplicate).toBe(false);
    } finally {
      await relay.close();
    }
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
