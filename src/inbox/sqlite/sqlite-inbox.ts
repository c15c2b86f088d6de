import { closeSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Callback } from "../../callback.js";
import { makeFolders } from "../../make-folders.js";
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
  replacesStored,
  StoreUnavailableError,
  summaryOf,
} from "../inbox.js";
import { newJobId } from "../job-id.js";
import { DatabaseFiles } from "./database-files.js";
import { type JobRow, rowToJob } from "./rows.js";
import { migrate } from "./schema.js";
import { SQL } from "./statements.js";

/** Longest time a NORMAL (unsynced) commit waits for a FULL one to make it durable. */
export const BOOKKEEPING_SYNC_MS = 1000;

/** How long a write waits for another connection's lock on the file (SQLite busy_timeout). */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * After a write waited the whole BUSY_TIMEOUT_MS in vain, writes in the next this many ms
 * wait only SHORT_LOCK_WAIT_MS. better-sqlite3 waits on the event loop's thread: each commit
 * that waited again would hold every request for another 5 s, and a callback queued behind
 * two or three of them would get Node's 408 instead of our 503.
 */
export const NO_WAIT_AFTER_BUSY_MS = 1000;

/**
 * How long the writes that are simply tried again (claims, the readiness probe, the
 * bookkeeping sync) wait for another connection's lock: long enough for another process's
 * commit on the same file (README: several processes may share one), short enough that a
 * lock held for long does not hold the event loop (and /healthz) for BUSY_TIMEOUT_MS.
 */
export const SHORT_LOCK_WAIT_MS = 200;

export interface SqliteInboxOptions {
  path: string;
  clock?: () => number;
}

/**
 * A write waiting for the next group commit. If one `apply` throws, the transaction rolls
 * back and every write of that batch is rejected (they fail for the same reason: the
 * database), so no caller is told "stored" for a row that is not.
 */
interface QueuedWrite {
  apply: () => unknown;
  /** Must survive power loss before it resolves (an acknowledged callback). */
  durable: boolean;
  /**
   * Worth waiting BUSY_TIMEOUT_MS for another connection's lock (a callback's write); a
   * commit waits that long if one is, else SHORT_LOCK_WAIT_MS.
   */
  waitsForLock: boolean;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/**
 * The embedded inbox, in WAL mode. Every write that arrives within one event-loop turn
 * (enqueues from many requests, claims, completions) goes into one transaction (group
 * commit).
 *
 * A transaction that holds an enqueue (or a requeue, or the readiness probe) commits with
 * `synchronous = FULL`: its fsync makes the acknowledged callback survive power loss, not
 * only a crash. The worker's own bookkeeping (claims, lease renewals, outcomes) commits
 * with `NORMAL`: it survives a crash of the process, and reaches the disk with the next
 * FULL commit (which fsyncs the whole WAL) or checkpoint; if none comes within
 * `BOOKKEEPING_SYNC_MS`, a heartbeat write is committed FULL. So power loss can undo at
 * most about a second of bookkeeping: those jobs run again (delivery is at least once
 * anyway, and sinks are idempotent); it never loses a callback. The fsync this saves was
 * the worker's biggest cost on the event loop.
 */
export class SqliteInbox implements Inbox {
  private readonly db: Database.Database;
  private readonly clock: () => number;
  private readonly statements;
  private readonly listeners = new Set<() => void>();
  private queue: QueuedWrite[] = [];
  private flushScheduled = false;
  private closed = false;
  /** The connection's current `synchronous` level: FULL (true) or NORMAL (false). */
  private fullSync: boolean;
  /** Pending FULL commit that makes recent NORMAL commits durable. */
  private bookkeepingSync: NodeJS.Timeout | undefined;
  /** The connection's busy_timeout: how long it waits for another connection's lock. */
  private lockWaitMs = BUSY_TIMEOUT_MS;
  /** performance.now() until which writes do not wait for a lock (see NO_WAIT_AFTER_BUSY_MS). */
  private noWaitUntil = 0;
  /** The database's files as opened; none for an in-memory database. */
  private readonly files: DatabaseFiles | undefined;

  constructor(options: SqliteInboxOptions) {
    this.clock = options.clock ?? Date.now;
    if (options.path !== ":memory:") createPrivately(options.path);
    this.db = new Database(options.path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.fullSync = true;
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    migrate(this.db);
    this.files = options.path === ":memory:" ? undefined : new DatabaseFiles(options.path);
    const prepare = (sql: string) => this.db.prepare(sql);
    this.statements = {
      insert: prepare(SQL.insert),
      findIdByKey: prepare(SQL.findIdByKey),
      replaceCallback: prepare(SQL.replaceCallback),
      claimablePending: prepare(SQL.claimablePending),
      claimableExpired: prepare(SQL.claimableExpired),
      claimOne: prepare(SQL.claimOne),
      renew: prepare(SQL.renew),
      complete: prepare(SQL.complete),
      retry: prepare(SQL.retry),
      fail: prepare(SQL.fail),
      release: prepare(SQL.release),
      requeue: prepare(SQL.requeue),
      runNow: prepare(SQL.runNow),
      prune: prepare(SQL.prune),
      get: prepare(SQL.get),
      listByState: prepare(SQL.listByState),
      listAll: prepare(SQL.listAll),
      listByStateAfter: prepare(SQL.listByStateAfter),
      listAllAfter: prepare(SQL.listAllAfter),
      findByBoth: prepare(SQL.findByBoth),
      findByProcessToken: prepare(SQL.findByProcessToken),
      findByKreditCheckId: prepare(SQL.findByKreditCheckId),
      countByState: prepare(SQL.countByState),
      oldestUnfinished: prepare(SQL.oldestUnfinished),
      heartbeat: prepare(SQL.heartbeat),
      savepoint: prepare("SAVEPOINT write"),
      releaseSavepoint: prepare("RELEASE write"),
      rollbackToSavepoint: prepare("ROLLBACK TO write"),
    };
  }

  async enqueue(callback: Callback, receivedAt: Date): Promise<EnqueueResult> {
    // Serialised here, not in the group commit: a value that cannot be must fail alone
    // instead of rolling back every callback of its batch.
    const text = JSON.stringify(callback);
    const result = await this.write(() => this.insertOne(callback, text, receivedAt), {
      durable: true,
    });
    if (!result.duplicate) this.notify();
    return result;
  }

  private insertOne(callback: Callback, text: string, receivedAt: Date): EnqueueResult {
    const id = newJobId();
    const now = this.clock();
    const info = this.statements.insert.run({
      id,
      processToken: callback.processToken,
      kreditCheckId: callback.kreditCheckId,
      callback: text,
      receivedAt: receivedAt.getTime(),
      now,
    });
    if (info.changes === 1) return { id, duplicate: false };
    const existing = this.statements.findIdByKey.get(
      callback.processToken,
      callback.kreditCheckId,
    ) as { id: string; status: unknown } | undefined;
    if (!existing) throw new Error("insert conflicted but no existing job was found");
    if (!replacesStored(existing.status, callback.status)) {
      return { id: existing.id, duplicate: true };
    }
    this.statements.replaceCallback.run({
      id: existing.id,
      callback: text,
      receivedAt: receivedAt.getTime(),
      now,
    });
    return { id: existing.id, duplicate: false, replacedStatus: String(existing.status) };
  }

  async claim(workerId: string, limit: number, leaseMs: number): Promise<Job[]> {
    // Committed at once (with whatever else is queued): a free worker slot should not wait
    // for the end of the event-loop turn. Waiting SHORT_LOCK_WAIT_MS at most for another
    // connection's lock (unless a write queued with it waits longer): a claim that fails
    // costs nothing, the worker claims again at its next poll, but BUSY_TIMEOUT_MS held the
    // event loop, every callback and /healthz, at every poll while the lock was held.
    const claimed = await this.write(
      () => {
        const now = this.clock();
        const candidates = [
          ...(this.statements.claimablePending.all({ now, limit }) as ClaimCandidate[]),
          ...(this.statements.claimableExpired.all({ now, limit }) as ClaimCandidate[]),
        ]
          .sort((a, b) => a.run_at - b.run_at || a.received_at - b.received_at)
          .slice(0, limit);
        const lockedUntil = now + leaseMs;
        return candidates.map((candidate) => ({
          row: this.statements.claimOne.get({
            id: candidate.id,
            workerId,
            lockedUntil,
            now,
          }) as JobRow,
          previousOwner: candidate.locked_by,
        }));
      },
      { now: true, waitsForLock: false },
    );
    return claimed.map(({ row, previousOwner }) => {
      const job = rowToJob(row);
      // An expired lease: the job's previous attempt ended without a word.
      return previousOwner ? { ...job, takenOverFrom: previousOwner } : job;
    });
  }

  renew(jobId: string, workerId: string, leaseMs: number): Promise<void> {
    return this.ownedWrite(jobId, () => {
      const now = this.clock();
      return this.statements.renew.run({ id: jobId, workerId, lockedUntil: now + leaseMs, now });
    });
  }

  complete(jobId: string, workerId: string, progress: JobProgress): Promise<void> {
    return this.ownedWrite(jobId, () =>
      this.statements.complete.run({
        id: jobId,
        workerId,
        progress: JSON.stringify(progress),
        now: this.clock(),
      }),
    );
  }

  retry(
    jobId: string,
    workerId: string,
    delayMs: number,
    failure: JobFailure,
    progress: JobProgress,
  ): Promise<void> {
    return this.ownedWrite(jobId, () => {
      const now = this.clock();
      return this.statements.retry.run({
        id: jobId,
        workerId,
        runAt: now + Math.max(0, Math.round(delayMs)),
        error: failure.message,
        progress: progressWithFailure(progress, failure),
        now,
      });
    });
  }

  fail(jobId: string, workerId: string, failure: JobFailure, progress: JobProgress): Promise<void> {
    return this.ownedWrite(jobId, () =>
      this.statements.fail.run({
        id: jobId,
        workerId,
        error: failure.message,
        progress: progressWithFailure(progress, failure),
        now: this.clock(),
      }),
    );
  }

  release(
    jobId: string,
    workerId: string,
    progress: JobProgress,
    lastFailure?: JobFailure,
  ): Promise<void> {
    return this.ownedWrite(jobId, () =>
      this.statements.release.run({
        id: jobId,
        workerId,
        progress: progressWithFailure(progress, lastFailure),
        now: this.clock(),
      }),
    );
  }

  async requeue(jobId: string, options: RequeueOptions = {}): Promise<Requeued | null> {
    const changes = await this.write(
      () => {
        const now = this.clock();
        const { requeue, runNow } = this.statements;
        const { fresh, onlyIfState } = options;
        if (onlyIfState === "pending") return fresh ? 0 : runNow.run({ id: jobId, now }).changes;
        const ifState = onlyIfState ?? null;
        const requeued = requeue.run({ id: jobId, now, fresh: fresh ? 1 : 0, ifState }).changes;
        // A fresh start is for finished jobs; a pending one keeps what it fetched.
        return requeued || (fresh || onlyIfState ? 0 : runNow.run({ id: jobId, now }).changes);
      },
      { durable: true },
    );
    if (changes !== 1) return null;
    this.notify();
    // SQLite hands a kept bundle on as the text it stored: it never needs to start afresh.
    return { fellBackToFresh: false };
  }

  /** Worker bookkeeping, not an acknowledgement: it commits without a full fsync. */
  prune(state: FinishedState, finishedBefore: Date, limit: number): Promise<number> {
    return this.write(
      () => this.statements.prune.run({ state, before: finishedBefore.getTime(), limit }).changes,
    );
  }

  async get(jobId: string): Promise<Job | null> {
    return this.read(() => {
      const row = this.statements.get.get(jobId) as JobRow | undefined;
      return row ? rowToJob(row) : null;
    });
  }

  async list(filter: { state?: JobState; limit: number; after?: string }): Promise<JobSummary[]> {
    return this.read(() => {
      const { state, limit, after } = filter;
      const rows =
        after !== undefined
          ? state
            ? this.statements.listByStateAfter.all({ state, after, limit })
            : this.statements.listAllAfter.all({ after, limit })
          : state
            ? this.statements.listByState.all({ state, limit })
            : this.statements.listAll.all({ limit });
      return summaries(rows);
    });
  }

  async findByCheck(check: CheckIds, limit: number, state?: JobState): Promise<JobSummary[]> {
    return this.read(() => {
      const { processToken, kreditCheckId } = check;
      const filter = { limit, state: state ?? null };
      const rows =
        processToken !== undefined && kreditCheckId !== undefined
          ? this.statements.findByBoth.all({ processToken, kreditCheckId, ...filter })
          : processToken !== undefined
            ? this.statements.findByProcessToken.all({ processToken, ...filter })
            : this.statements.findByKreditCheckId.all({ kreditCheckId, ...filter });
      return summaries(rows);
    });
  }

  async countByState(): Promise<Record<JobState, number>> {
    return this.read(() =>
      countsByState(this.statements.countByState.all() as { state: JobState; count: number }[]),
    );
  }

  async oldestUnfinished(): Promise<Date | null> {
    return this.read(() => {
      const { at } = this.statements.oldestUnfinished.get() as { at: number | null };
      return at === null ? null : new Date(at);
    });
  }

  onEnqueued(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Durable: readiness must prove that an acknowledgement could be written right now. In a
   * commit of its own, at once, waiting SHORT_LOCK_WAIT_MS at most for another connection's
   * lock (another process's commit on the same file): BUSY_TIMEOUT_MS is spent on the event
   * loop's thread, so every probe froze the process for 5 s, /healthz too (the Docker
   * HEALTHCHECK gives it 3 s). A lock held longer already means "not ready".
   */
  ping(): Promise<void> {
    if (this.closed) return Promise.reject(new StoreUnavailableError("inbox is closed"));
    return new Promise<void>((resolve, reject) => {
      const apply = () => this.heartbeat();
      const ping = { apply, durable: true, waitsForLock: false, resolve: () => resolve(), reject };
      this.commit([ping], false);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.bookkeepingSync);
    // The last commit is FULL, so the bookkeeping before it is on disk too.
    this.commitHeartbeat().catch(() => undefined);
    this.flush();
    this.closed = true;
    this.db.close();
  }

  private notify(): void {
    notifyListeners(this.listeners);
  }

  /**
   * A tiny durable write (FULL commit) in the next group commit: it fsyncs the whole WAL,
   * so the bookkeeping committed before it is on disk too.
   */
  private commitHeartbeat(waitsForLock = true): Promise<unknown> {
    return this.write(() => this.heartbeat(), { durable: true, waitsForLock });
  }

  private heartbeat(): unknown {
    return this.statements.heartbeat.run({ now: this.clock() });
  }

  /**
   * Queues a write for the next group commit (or, with `now`, commits the queue at once);
   * resolves once it is committed. `durable` and `waitsForLock` are QueuedWrite's.
   */
  private write<T>(
    apply: () => T,
    { durable = false, now = false, waitsForLock = true } = {},
  ): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError("inbox is closed"));
    return new Promise<T>((resolve, reject) => {
      const settle = { resolve: resolve as (value: unknown) => void, reject };
      this.queue.push({ apply, durable, waitsForLock, ...settle });
      if (now) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** A write that must change exactly the one row this worker leases. */
  private async ownedWrite(jobId: string, apply: () => { changes: number }): Promise<void> {
    const changes = await this.write(() => apply().changes);
    if (changes !== 1) throw new LeaseLostError(jobId);
  }

  private flush(): void {
    const queue = this.queue;
    this.queue = [];
    this.flushScheduled = false;
    this.commit(queue, performance.now() >= this.noWaitUntil);
  }

  /**
   * Commits `writes` in one transaction and settles each. `mayWait`: whether it may wait up
   * to BUSY_TIMEOUT_MS for another connection's lock (else SHORT_LOCK_WAIT_MS); it does only
   * for a write that asks to.
   */
  private commit(writes: QueuedWrite[], mayWait: boolean): void {
    let queue = writes;
    if (queue.length === 0) return;
    let results: unknown[];
    let durable = queue.some((item) => item.durable);
    // An acknowledgement written to a deleted file would be lost at the next start: those
    // writes fail (503, readiness too). The worker's bookkeeping goes on, so the jobs the
    // open file holds are still worked off.
    const changed = durable ? this.files?.changed() : undefined;
    if (changed !== undefined) {
      const failure = new StoreUnavailableError(
        `the inbox file ${changed} while the service ran, and SQLite would go on writing to the file it opened: nothing is acknowledged any more. The jobs it holds are still worked off; restart the service to open the file at STORE_URL (jobs not finished by then are lost with the old file)`,
      );
      for (const item of queue) if (item.durable) item.reject(failure);
      queue = queue.filter((item) => !item.durable);
      durable = false;
      if (queue.length === 0) return;
    }
    try {
      this.setFullSync(durable);
      this.setLockWait(
        mayWait && queue.some((item) => item.waitsForLock) ? BUSY_TIMEOUT_MS : SHORT_LOCK_WAIT_MS,
      );
      results = this.db.transaction(() => queue.map((item) => this.applyAlone(item))).immediate();
      this.noWaitUntil = 0;
    } catch (error) {
      if (isBusy(error) && this.lockWaitMs === BUSY_TIMEOUT_MS) {
        this.noWaitUntil = performance.now() + NO_WAIT_AFTER_BUSY_MS;
      }
      const failure = new StoreUnavailableError(`inbox write failed: ${messageOf(error)}`, {
        cause: error,
      });
      for (const item of queue) item.reject(failure);
      return;
    }
    this.scheduleBookkeepingSync(durable);
    queue.forEach((item, index) => {
      const result = results[index];
      if (result instanceof WriteFailed) {
        item.reject(
          new StoreUnavailableError(`inbox write failed: ${messageOf(result.error)}`, {
            cause: result.error,
          }),
        );
      } else item.resolve(result);
    });
  }

  /**
   * One write of a group commit, in a savepoint of its own: a write that fails by itself
   * (a job's progress that cannot be serialised, JSON that SQLite's json functions refuse)
   * is undone and fails alone, instead of failing every callback committed with it. A
   * failure that ended the transaction (a full disk) still fails them all.
   */
  private applyAlone(item: QueuedWrite): unknown {
    const { savepoint, releaseSavepoint, rollbackToSavepoint } = this.statements;
    savepoint.run();
    try {
      const result = item.apply();
      releaseSavepoint.run();
      return result;
    } catch (error) {
      if (!this.db.inTransaction) throw error;
      rollbackToSavepoint.run();
      releaseSavepoint.run();
      return new WriteFailed(error);
    }
  }

  /** Switching costs no I/O; it applies from the next commit on this connection. */
  private setLockWait(ms: number): void {
    if (this.lockWaitMs === ms) return;
    // Not a prepared statement: SQLite applies busy_timeout when the PRAGMA is compiled.
    this.db.pragma(`busy_timeout = ${ms}`);
    this.lockWaitMs = ms;
  }

  private setFullSync(full: boolean): void {
    if (this.fullSync === full) return;
    // Not a prepared statement, as for busy_timeout: SQLite applies `synchronous` when the
    // PRAGMA is compiled, so preparing both levels up front left the connection at the
    // last one prepared (NORMAL) and running a prepared one later changed nothing: the
    // first callbacks after a start were acknowledged without an fsync.
    this.db.pragma(`synchronous = ${full ? "FULL" : "NORMAL"}`);
    this.fullSync = full;
  }

  /** After a NORMAL commit, a FULL one follows within BOOKKEEPING_SYNC_MS (see above). */
  private scheduleBookkeepingSync(committedFull: boolean): void {
    if (committedFull) {
      clearTimeout(this.bookkeepingSync);
      this.bookkeepingSync = undefined;
      return;
    }
    if (this.bookkeepingSync) return;
    this.bookkeepingSync = setTimeout(() => {
      this.bookkeepingSync = undefined;
      if (this.closed) return;
      // Not worth holding the event loop long for another connection's lock: if this fails,
      // the next commit (the worker's next claim, a callback) makes the bookkeeping durable.
      this.commitHeartbeat(false).catch(() => undefined);
    }, BOOKKEEPING_SYNC_MS);
    this.bookkeepingSync.unref();
  }

  private read<T>(operation: () => T): T {
    if (this.closed) throw new StoreUnavailableError("inbox is closed");
    try {
      return operation();
    } catch (error) {
      throw new StoreUnavailableError(`inbox read failed: ${messageOf(error)}`, { cause: error });
    }
  }
}

/**
 * The inbox holds callbacks and, for jobs whose delivery failed, whole bundles (bank data):
 * a folder it makes is 0750 and a new file 0600 (SQLite gives its -wal and -shm files the
 * database file's mode). An existing file keeps the mode the operator gave it.
 */
function createPrivately(path: string): void {
  makeFolders(dirname(path), 0o750);
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/** SQLITE_BUSY and its extended codes: another connection holds the lock. */
function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Job summaries from rows of a statement that selects SUMMARY (statements.ts). */
function summaries(rows: unknown[]): JobSummary[] {
  return (rows as (JobRow & { bundle_kept: number })[]).map((row) =>
    summaryOf(rowToJob(row), row.bundle_kept === 1),
  );
}

/** A job a claim may take: due and pending, or running under an expired lease. */
interface ClaimCandidate {
  id: string;
  run_at: number;
  received_at: number;
  locked_by: string | null;
}

/** A write of a group commit that failed alone (see applyAlone). */
class WriteFailed {
  constructor(readonly error: unknown) {}
}
