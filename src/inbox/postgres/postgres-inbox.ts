import type pg from "pg";
import { type Callback, SUCCESSFUL_STATUS } from "../../callback.js";
import { type MigrateOptions, migrate, SchemaTooNewError } from "../../postgres/migrate.js";
import { connectionConfig, createPool, type PostgresTarget } from "../../postgres/pool.js";
import { describePgError, sqlstateOf } from "../../postgres/sqlstate.js";
import {
  type CheckIds,
  countsByState,
  type EnqueueResult,
  type FinishedState,
  type Inbox,
  type Job,
  type JobFailure,
  type JobProgress,
  type JobState,
  type JobSummary,
  LeaseLostError,
  notifyListeners,
  progressWithFailure,
  type Requeued,
  type RequeueOptions,
  StoreUnavailableError,
  summaryOf,
} from "../inbox.js";
import { JOB_ID_PATTERN, newJobId } from "../job-id.js";
import { NotificationListener } from "./listener.js";
import { type JobRow, rowToJob } from "./rows.js";
import { INBOX_MIGRATIONS } from "./schema.js";
import { SQL } from "./statements.js";

export interface PostgresInboxOptions extends PostgresTarget {
  poolSize?: number;
  /** How long a statement waits for a lock (default INBOX_LOCK_TIMEOUT_MS). */
  lockTimeoutMs?: number;
  /** How long a statement may go unanswered (default INBOX_QUERY_TIMEOUT_MS). */
  queryTimeoutMs?: number;
  /** The LISTEN connection dropped; it is being re-established. */
  onListenError?: (error: unknown) => void;
  /** The migration's lock wait and how long its bookkeeping may go unanswered (tests shorten them). */
  migrationTimeouts?: MigrateOptions;
}

/**
 * A table lock held elsewhere (LOCK TABLE, CREATE INDEX without CONCURRENTLY, a long
 * ALTER) must not hold callbacks for as long as it lasts: after this long the write fails,
 * and the sender gets 503 with Retry-After, as with SQLite's BUSY_TIMEOUT_MS.
 */
export const INBOX_LOCK_TIMEOUT_MS = 5000;

/**
 * The longest any inbox statement goes without an answer before its connection is given
 * up (see PoolOptions.queryTimeoutMs). Longer than any healthy statement; callbacks' and
 * operators' statements get less, a migration's SQL (on a connection of its own) no limit.
 */
export const INBOX_QUERY_TIMEOUT_MS = 60_000;

/** Batches are written one at a time (see flush); the probe may need a second connection. */
const INGEST_POOL_SIZE = 2;

/** A scrape's two counts at once; an operator's request waits for a free one. */
const OPERATOR_POOL_SIZE = 2;

/** Channel for "jobs were written"; the payload is the schema, so schemas do not wake each other. */
const CHANNEL = "kreditcheck_jobs";

interface QueuedEnqueue {
  callback: Callback;
  /** The callback as stored, serialised before it joins a batch (see enqueue). */
  text: string;
  receivedAt: Date;
  resolve: (result: EnqueueResult) => void;
  reject: (error: Error) => void;
}

/**
 * The scale-out inbox: many replicas share one PostgreSQL database. Enqueues arriving in
 * one event-loop turn are written by one multi-row INSERT in one transaction (group
 * commit) and acknowledged after COMMIT. Claims use `FOR UPDATE SKIP LOCKED`, and a
 * NOTIFY on commit wakes idle workers on every replica.
 */
export class PostgresInbox implements Inbox {
  private readonly listeners = new Set<() => void>();
  private queue: QueuedEnqueue[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    /** Callbacks' writes and the readiness probe only: their sessions carry lock_timeout. */
    private readonly boundedPool: pg.Pool,
    /** The admin API's and the metrics' statements, with the same lock_timeout. */
    private readonly operatorPool: pg.Pool,
    private readonly schema: string,
    private readonly listener: NotificationListener | undefined,
  ) {}

  /** Connects, migrates the schema (safe with many replicas at once) and starts listening. */
  static async open(options: PostgresInboxOptions): Promise<PostgresInbox> {
    try {
      // A URL pg cannot connect with (sslmode=verify-ca without a CA): said with STORE_URL.
      connectionConfig(options, "kreditcheck-receiver");
    } catch (error) {
      throw new StoreUnavailableError(
        `the PostgreSQL inbox could not be opened: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const queryTimeoutMs = options.queryTimeoutMs ?? INBOX_QUERY_TIMEOUT_MS;
    const pool = createPool(options, "kreditcheck-receiver inbox", {
      max: options.poolSize,
      queryTimeoutMs,
      // The worker's statements wait a lock out (below), each holding a connection while
      // it waits: the ones queued behind them for a connection must wait as long, or an
      // outcome gave up after 10 s and its job ran, and was delivered, twice.
      waitForConnectionMs: queryTimeoutMs,
    });
    // Statements that give up on a lock after INBOX_LOCK_TIMEOUT_MS: callbacks (their sender
    // retries on a 503) and readiness on one pool, an operator's reads and retries (admin
    // API, metrics: a 503 or inbox_up 0 rather than a request that hangs for the lock's
    // duration) on another, so that a slow count over a large table never holds a callback.
    // The worker's writes wait a lock out, up to their query timeout (a minute): a job
    // outcome that failed to be stored would run the job again once its lease expired,
    // delivering it twice.
    const lockTimeoutMs = options.lockTimeoutMs ?? INBOX_LOCK_TIMEOUT_MS;
    // Their statements give up on a lock after lockTimeoutMs; a few seconds more is all
    // a healthy connection needs to answer.
    const boundedQueryTimeoutMs = Math.min(queryTimeoutMs, lockTimeoutMs + 10_000);
    const boundedPool = createPool(options, "kreditcheck-receiver ingest", {
      max: INGEST_POOL_SIZE,
      lockTimeoutMs,
      queryTimeoutMs: boundedQueryTimeoutMs,
    });
    const operatorPool = createPool(options, "kreditcheck-receiver admin", {
      max: OPERATOR_POOL_SIZE,
      lockTimeoutMs,
      queryTimeoutMs: boundedQueryTimeoutMs,
    });
    // On a connection of its own, without the pools' statement timeouts: a migration of a
    // large table may take longer than any statement of the running service should. The
    // migrator bounds its other statements itself.
    const migrationPool = createPool(options, "kreditcheck-receiver migrate", { max: 1 });
    try {
      await migrate(
        migrationPool,
        options.schema,
        INBOX_MIGRATIONS,
        options.migrationTimeouts,
      ).finally(() => migrationPool.end().catch(() => undefined));
    } catch (error) {
      await pool.end().catch(() => undefined);
      await boundedPool.end().catch(() => undefined);
      await operatorPool.end().catch(() => undefined);
      throw error instanceof SchemaTooNewError
        ? error
        : new StoreUnavailableError(
            `the PostgreSQL inbox could not be opened: ${describePgError(error)}`,
            {
              cause: error,
            },
          );
    }
    let inbox: PostgresInbox | undefined;
    const listener = new NotificationListener({
      config: connectionConfig(options, "kreditcheck-receiver listen"),
      channel: CHANNEL,
      payload: options.schema,
      onNotify: () => inbox?.notify(),
      onError: (error) => options.onListenError?.(error),
    });
    inbox = new PostgresInbox(pool, boundedPool, operatorPool, options.schema, listener);
    await listener.start();
    return inbox;
  }

  async enqueue(callback: Callback, receivedAt: Date): Promise<EnqueueResult> {
    if (this.closed) throw new StoreUnavailableError("inbox is closed");
    // Here, not in the batch: a value that cannot be serialised fails alone.
    const text = JSON.stringify(callback);
    return new Promise((resolve, reject) => {
      this.queue.push({ callback, text, receivedAt, resolve, reject });
      if (this.queue.length === 1) setImmediate(() => void this.flush());
    });
  }

  /** One transaction for every enqueue of this turn; each caller is answered after COMMIT. */
  private async flush(): Promise<void> {
    // One flush at a time keeps the batches in arrival order.
    while (this.flushing) await this.flushing;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    // writeBatch answers every callback itself; should it throw all the same, those it had
    // not answered get a 503 (answering one twice changes nothing), and the next batch
    // goes on: a rejected flush left in place would have held every later callback.
    this.flushing = this.writeBatch(batch).catch((error: unknown) => {
      for (const item of batch) item.reject(storeError("write", error));
    });
    await this.flushing;
    this.flushing = undefined;
  }

  private async writeBatch(batch: QueuedEnqueue[]): Promise<void> {
    // A check's callback with another status than one before it in this batch may replace
    // that one (Inbox.enqueue): written after it, in a statement of its own, as it would be
    // had it come a turn later. Rare (a sender that sends two statuses at once).
    const statusOf = new Map<string, string>();
    const now: QueuedEnqueue[] = [];
    const after: QueuedEnqueue[] = [];
    for (const item of batch) {
      const key = keyOf(item.callback);
      const status = statusOf.get(key) ?? item.callback.status;
      statusOf.set(key, status);
      (status === item.callback.status ? now : after).push(item);
    }
    await this.writeRound(now);
    if (after.length > 0) await this.writeBatch(after);
  }

  private async writeRound(batch: QueuedEnqueue[]): Promise<void> {
    // The same callback twice in one batch is inserted once; the second is a duplicate.
    const firsts = new Map<string, QueuedEnqueue & { id: string }>();
    for (const item of batch) {
      const key = keyOf(item.callback);
      if (!firsts.has(key)) firsts.set(key, { ...item, id: newJobId() });
    }
    const rows = [...firsts.values()];
    let ids: Map<string, EnqueueResult>;
    try {
      const inserted = await this.boundedPool.query<{
        id: string;
        process_token: string;
        kreditcheck_id: string;
      }>(SQL.insertMany, [
        rows.map((row) => row.id),
        rows.map((row) => row.callback.processToken),
        rows.map((row) => row.callback.kreditCheckId),
        rows.map((row) => row.text),
        rows.map((row) => row.receivedAt),
        CHANNEL,
        this.schema,
      ]);
      ids = new Map();
      for (const row of inserted.rows) ids.set(keyOfRow(row), { id: row.id, duplicate: false });
      // Rare: callbacks already stored (a replay, or finAPI calling twice). Their ids are
      // read after the insert committed, so a row another replica inserted meanwhile is seen.
      // If this read fails, the batch is answered 503 although its new rows are stored:
      // finAPI's retry of such a callback is then a duplicate (202), and its job runs once.
      let conflicted = rows.filter((row) => !ids.has(keyOf(row.callback)));
      if (conflicted.length > 0) {
        const replaced = await this.boundedPool.query<{
          id: string;
          process_token: string;
          kreditcheck_id: string;
          replaced_status: string;
        }>(SQL.replaceCallbacks, [
          conflicted.map((row) => row.callback.processToken),
          conflicted.map((row) => row.callback.kreditCheckId),
          conflicted.map((row) => row.text),
          conflicted.map((row) => row.receivedAt),
          SUCCESSFUL_STATUS,
          CHANNEL,
          this.schema,
        ]);
        for (const row of replaced.rows) {
          ids.set(keyOfRow(row), {
            id: row.id,
            duplicate: false,
            replacedStatus: row.replaced_status,
          });
        }
        conflicted = conflicted.filter((row) => !ids.has(keyOf(row.callback)));
      }
      if (conflicted.length > 0) {
        const existing = await this.boundedPool.query<{
          id: string;
          process_token: string;
          kreditcheck_id: string;
        }>(SQL.findIdsByKeys, [
          conflicted.map((row) => row.callback.processToken),
          conflicted.map((row) => row.callback.kreditCheckId),
        ]);
        for (const row of existing.rows) ids.set(keyOfRow(row), { id: row.id, duplicate: true });
      }
    } catch (error) {
      const failure = storeError("write", error);
      // A lock not granted in time: the callbacks queued behind this batch have waited for
      // the same lock already, so they get their 503 now rather than after a wait of their
      // own (INBOX_LOCK_TIMEOUT_MS is a callback's longest wait, not its batch's).
      const waitedAlready = sqlstateOf(error) === "55P03" ? this.queue.splice(0) : [];
      for (const item of [...batch, ...waitedAlready]) item.reject(failure);
      return;
    }
    const answered = new Set<string>();
    for (const item of batch) {
      const key = keyOf(item.callback);
      const result = ids.get(key);
      if (!result) {
        item.reject(new StoreUnavailableError("insert conflicted but no existing job was found"));
      } else {
        item.resolve(answered.has(key) ? { id: result.id, duplicate: true } : result);
      }
      answered.add(key);
    }
    if ([...ids.values()].some((result) => !result.duplicate)) this.notify();
  }

  async claim(workerId: string, limit: number, leaseMs: number): Promise<Job[]> {
    const { rows } = await this.query<JobRow>(SQL.claim, [workerId, limit, leaseMs]);
    return rows.map(rowToJob).sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
  }

  renew(jobId: string, workerId: string, leaseMs: number): Promise<void> {
    return this.ownedWrite(jobId, SQL.renew, [jobId, workerId, leaseMs]);
  }

  complete(jobId: string, workerId: string, progress: JobProgress): Promise<void> {
    return this.ownedWrite(jobId, SQL.complete, [jobId, workerId, JSON.stringify(progress)]);
  }

  retry(
    jobId: string,
    workerId: string,
    delayMs: number,
    failure: JobFailure,
    progress: JobProgress,
  ): Promise<void> {
    return this.ownedWrite(jobId, SQL.retry, [
      jobId,
      workerId,
      Math.max(0, Math.round(delayMs)),
      storableText(failure.message),
      progressWithFailure(progress, failure),
    ]);
  }

  fail(jobId: string, workerId: string, failure: JobFailure, progress: JobProgress): Promise<void> {
    return this.ownedWrite(jobId, SQL.fail, [
      jobId,
      workerId,
      storableText(failure.message),
      progressWithFailure(progress, failure),
    ]);
  }

  async release(
    jobId: string,
    workerId: string,
    progress: JobProgress,
    lastFailure?: JobFailure,
  ): Promise<void> {
    await this.ownedWrite(jobId, SQL.release, [
      jobId,
      workerId,
      progressWithFailure(progress, lastFailure),
    ]);
    this.announce();
  }

  async requeue(jobId: string, options: RequeueOptions = {}): Promise<Requeued | null> {
    // The id column is a uuid: PostgreSQL would refuse other text with an error, where
    // SQLite simply finds no row. A mistyped id is no job on both.
    if (!JOB_ID_PATTERN.test(jobId)) return null;
    const { fresh = false, onlyIfState } = options;
    // Two statements, each atomic: a job that turns dead in between is simply not hurried.
    const requeued =
      onlyIfState === "pending"
        ? null
        : await this.requeueFinished(jobId, fresh, onlyIfState ?? null);
    // A fresh start is for finished jobs; a pending one keeps what it fetched.
    if (
      requeued === null &&
      (fresh ||
        onlyIfState === "dead" ||
        (await this.operatorQuery(SQL.runNow, [jobId])).rowCount !== 1)
    ) {
      return null;
    }
    this.notify();
    this.announce();
    return requeued ?? { fellBackToFresh: false };
  }

  /**
   * SQL.requeue for a dead or done job; null if it changed none. Reading a kept bundle
   * parses the stored json, and PostgreSQL refuses a U+0000 escape there (22P05), which the
   * json column accepted when the job died (a callback from before they were refused, or
   * finAPI data with one). Such a job starts afresh instead of staying dead for good, and
   * failing every `retry --all-dead` run at it.
   */
  private async requeueFinished(
    jobId: string,
    fresh: boolean,
    ifState: "dead" | null,
  ): Promise<Requeued | null> {
    try {
      const { rowCount } = await this.operatorQuery(SQL.requeue, [jobId, fresh, ifState]);
      return rowCount === 1 ? { fellBackToFresh: false } : null;
    } catch (error) {
      if (fresh || sqlstateOf((error as { cause?: unknown }).cause) !== "22P05") throw error;
    }
    // Afresh as dead first, then as done: only a dead job loses a bundle it kept (a done
    // one is fetched anew anyway), and the operator is told which it was by this, not by a
    // later read that a worker may have overtaken.
    const dead = await this.operatorQuery(SQL.requeue, [jobId, true, "dead"]);
    if (dead.rowCount === 1) return { fellBackToFresh: true };
    if (ifState === "dead") return null;
    const done = await this.operatorQuery(SQL.requeue, [jobId, true, "done"]);
    return done.rowCount === 1 ? { fellBackToFresh: false } : null;
  }

  async prune(state: FinishedState, finishedBefore: Date, limit: number): Promise<number> {
    const { rowCount } = await this.query(SQL.prune, [state, finishedBefore, limit]);
    return rowCount ?? 0;
  }

  async get(jobId: string): Promise<Job | null> {
    if (!JOB_ID_PATTERN.test(jobId)) return null;
    const { rows } = await this.operatorQuery<JobRow>(SQL.get, [jobId]);
    return rows[0] ? rowToJob(rows[0]) : null;
  }

  async list(filter: { state?: JobState; limit: number; after?: string }): Promise<JobSummary[]> {
    const { state, limit, after } = filter;
    if (after !== undefined) {
      return state
        ? this.summaries(SQL.listByStateAfter, [state, after, limit])
        : this.summaries(SQL.listAllAfter, [after, limit]);
    }
    return state
      ? this.summaries(SQL.listByState, [state, limit])
      : this.summaries(SQL.listAll, [limit]);
  }

  async findByCheck(check: CheckIds, limit: number, state?: JobState): Promise<JobSummary[]> {
    const { processToken, kreditCheckId } = check;
    const inState = state ?? null;
    if (processToken !== undefined && kreditCheckId !== undefined) {
      return this.summaries(SQL.findByBoth, [processToken, kreditCheckId, limit, inState]);
    }
    return processToken !== undefined
      ? this.summaries(SQL.findByProcessToken, [processToken, limit, inState])
      : this.summaries(SQL.findByKreditCheckId, [kreditCheckId, limit, inState]);
  }

  /** Job summaries by an operator's statement that selects SUMMARY (statements.ts). */
  private async summaries(sql: string, values: unknown[]): Promise<JobSummary[]> {
    type SummaryRow = JobRow & { bundle_kept: boolean | null };
    const { rows } = await this.operatorQuery<SummaryRow>(sql, values);
    // bundle_kept NULL: a progress the database could not read as JSON came whole.
    return rows.map((row) =>
      summaryOf(rowToJob(row), row.bundle_kept ?? row.progress.bundle !== undefined),
    );
  }

  async oldestUnfinished(): Promise<Date | null> {
    const { rows } = await this.operatorQuery<{ at: Date | null }>(SQL.oldestUnfinished, []);
    return rows[0]?.at ?? null;
  }

  async countByState(): Promise<Record<JobState, number>> {
    const { rows } = await this.operatorQuery<{ state: JobState; count: number }>(
      SQL.countByState,
      [],
    );
    return countsByState(rows);
  }

  onEnqueued(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A durable write, not a SELECT: a read-only or full database is not healthy. */
  async ping(): Promise<void> {
    // On the callbacks' pool, with their lock timeout, and taking the lock an insert into
    // the jobs table takes: readiness says whether a callback could be stored now, also
    // while another session locks that table (the heartbeat table alone would not see it).
    await this.query(SQL.heartbeat, [], this.boundedPool);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Callers already waiting are answered before the pool goes.
    await this.flush();
    await this.listener?.stop();
    await Promise.all([this.pool.end(), this.boundedPool.end(), this.operatorPool.end()]);
  }

  private notify(): void {
    notifyListeners(this.listeners);
  }

  /**
   * Wakes the idle workers of every replica after a job became due. Only a hurry: the
   * write before it is done, and a failure here must not report it as failed (an admin
   * retry answering 500, a release logged as lost). Workers find the job at their next
   * poll (WORKER_POLL_MS) anyway. Not awaited either: on the worker's pool it may wait
   * for a free connection, and an operator's retry should not.
   */
  private announce(): void {
    this.query(SQL.notify, [CHANNEL, this.schema]).catch(() => undefined);
  }

  private async ownedWrite(jobId: string, sql: string, values: unknown[]): Promise<void> {
    const { rowCount } = await this.query(sql, values);
    if (rowCount !== 1) throw new LeaseLostError(jobId);
  }

  /**
   * An operator's statement (admin API, metrics): on a pool of its own, whose sessions give
   * up on a lock held on the jobs table after INBOX_LOCK_TIMEOUT_MS instead of holding the
   * request, and whose slow reads (a count over millions of rows) hold no callback.
   */
  private operatorQuery<R extends pg.QueryResultRow>(sql: string, values: unknown[]) {
    return this.query<R>(sql, values, this.operatorPool);
  }

  private async query<R extends pg.QueryResultRow>(
    sql: string,
    values: unknown[],
    pool: pg.Pool = this.pool,
  ): Promise<pg.QueryResult<R>> {
    if (this.closed) throw new StoreUnavailableError("inbox is closed");
    try {
      return await pool.query<R>(sql, values);
    } catch (error) {
      throw storeError("query", error);
    }
  }
}

/**
 * An error's text for the `last_error` column. It may quote a body from elsewhere (finAPI's
 * answer, the http sink receiver's, a module's message), and PostgreSQL's text refuses
 * U+0000 (22021), where SQLite takes it: the outcome could not be stored, and the job ran
 * again after every lease, to every sink, without backoff. U+FFFD stands in for it.
 */
function storableText(text: string): string {
  return text.replaceAll("\u0000", "\uFFFD");
}

function storeError(action: "write" | "query", error: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`inbox ${action} failed: ${describePgError(error)}`, {
    cause: error,
  });
}

/** The dedupe key (processToken, kreditCheckId) as one string, for callbacks and rows alike. */
function keyOf(callback: Callback): string {
  return JSON.stringify([callback.processToken, callback.kreditCheckId]);
}

function keyOfRow(row: { process_token: string; kreditcheck_id: string }): string {
  return JSON.stringify([row.process_token, row.kreditcheck_id]);
}
