/**
 * Every SQL statement that touches the jobs table, in one place, always with bound
 * parameters. Owner-checked statements match `locked_by` and `state = 'running'`; zero
 * changed rows means the lease was lost.
 */
/** A listed job's columns (JobSummary): its progress without the bundle, and whether it has one. */
const SUMMARY = `id, process_token, kreditcheck_id, callback, state, attempts, run_at, locked_by,
  locked_until, last_error, json_remove(progress, '$.bundle') AS progress,
  json_type(progress, '$.bundle') IS NOT NULL AS bundle_kept, received_at, updated_at, finished_at`;

import { JOB_STATES } from "../inbox.js";

export const SQL = {
  insert: `INSERT INTO jobs (id, process_token, kreditcheck_id, callback, state, attempts, run_at, received_at, updated_at)
           VALUES (@id, @processToken, @kreditCheckId, @callback, 'pending', 0, @now, @receivedAt, @now)
           ON CONFLICT (process_token, kreditcheck_id) DO NOTHING`,
  findIdByKey: `SELECT id, callback ->> '$.status' AS status FROM jobs WHERE process_token = ? AND kreditcheck_id = ?`,
  /** See Inbox.enqueue: the job runs again, from the start, with the new callback. */
  replaceCallback: `UPDATE jobs SET callback = @callback, state = 'pending', attempts = 0,
                          run_at = CASE WHEN state = 'running' THEN MAX(@now, locked_until) ELSE @now END,
                          locked_by = NULL, locked_until = NULL, last_error = NULL, progress = '{}',
                          received_at = @receivedAt, updated_at = @now, finished_at = NULL
                    WHERE id = @id`,
  /**
   * A claim is these three in one write transaction: the due pending jobs (the first @limit
   * by run_at, received_at, read in that order from their partial index) and the expired
   * leases (found through theirs, sorted, the first @limit), then one UPDATE by id for each
   * of the first @limit of both. One UPDATE ... WHERE id IN (those two as a UNION)
   * RETURNING * did the same for about three times the CPU (a one-job claim, transaction
   * included: 479 against 150 µs); its claims were 6.7 % of the service's main thread at
   * WORKER_CONCURRENCY 64 (bench:pipeline, issue 7).
   */
  claimablePending: `SELECT id, run_at, received_at, NULL AS locked_by FROM jobs INDEXED BY jobs_pending_due
                     WHERE state = 'pending' AND run_at <= @now
                     ORDER BY run_at, received_at LIMIT @limit`,
  /** Expired leases; locked_by says whose lease the claim takes over. */
  claimableExpired: `SELECT id, run_at, received_at, locked_by FROM jobs INDEXED BY jobs_running_locked_until
                     WHERE state = 'running' AND locked_until <= @now
                     ORDER BY run_at, received_at LIMIT @limit`,
  claimOne: `UPDATE jobs
             SET state = 'running', locked_by = @workerId, locked_until = @lockedUntil,
                 attempts = attempts + 1, updated_at = @now
             WHERE id = @id
             RETURNING *`,
  renew: `UPDATE jobs SET locked_until = @lockedUntil, updated_at = @now
          WHERE id = @id AND locked_by = @workerId AND state = 'running'`,
  complete: `UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, last_error = NULL, progress = @progress,
                    updated_at = @now, finished_at = @now
             WHERE id = @id AND locked_by = @workerId AND state = 'running'`,
  retry: `UPDATE jobs SET state = 'pending', locked_by = NULL, locked_until = NULL, run_at = @runAt,
                 last_error = @error, progress = @progress, updated_at = @now
          WHERE id = @id AND locked_by = @workerId AND state = 'running'`,
  fail: `UPDATE jobs SET state = 'dead', locked_by = NULL, locked_until = NULL, last_error = @error,
                progress = @progress, updated_at = @now, finished_at = @now
         WHERE id = @id AND locked_by = @workerId AND state = 'running'`,
  release: `UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), locked_by = NULL,
                   locked_until = NULL, run_at = @now, progress = @progress, updated_at = @now
            WHERE id = @id AND locked_by = @workerId AND state = 'running'`,
  /**
   * See Inbox.requeue; `->` hands the bundle on as JSON text, its key order kept. @fresh
   * (1 or 0) keeps nothing; CASE tries its branches in order, so the bundle is not read then.
   * @ifState ('dead', or NULL for dead or done): the job only in that state, checked here.
   */
  requeue: `UPDATE jobs SET state = 'pending', attempts = 0, run_at = @now, locked_by = NULL, locked_until = NULL,
                   last_error = NULL,
                   progress = COALESCE(CASE
                     WHEN @fresh THEN NULL
                     WHEN state = 'dead' AND json_type(progress, '$.bundle') = 'object'
                     THEN json_object('bundle', progress -> '$.bundle',
                                      'deliveredSinks', json(COALESCE(progress -> '$.deliveredSinks', '[]')),
                                      'requeuedAt', @now) END,
                     json_object('requeuedAt', @now)),
                   updated_at = @now, finished_at = NULL
            WHERE id = @id AND state IN ('dead', 'done') AND (@ifState IS NULL OR state = @ifState)`,
  runNow: `UPDATE jobs SET run_at = MIN(run_at, @now), updated_at = @now WHERE id = @id AND state = 'pending'`,
  /**
   * For a done or dead row updated_at equals finished_at (complete and fail set both, and
   * only requeue, which makes it pending, changes a finished row), so the updated_at bound
   * walks the existing (state, updated_at) index oldest first; the finished_at bound is the
   * rule itself. The state list keeps pending and running rows out whatever is bound.
   */
  prune: `DELETE FROM jobs WHERE id IN (
            SELECT id FROM jobs INDEXED BY jobs_state_updated
            WHERE state = @state AND state IN ('done', 'dead')
              AND updated_at < @before AND finished_at < @before
            ORDER BY updated_at LIMIT @limit)`,
  get: `SELECT * FROM jobs WHERE id = ?`,
  listByState: `SELECT ${SUMMARY} FROM jobs WHERE state = @state ORDER BY updated_at DESC LIMIT @limit`,
  /**
   * The latest of each state from jobs_state_updated, then the latest of those: ordered by
   * updated_at alone, SQLite read and sorted the whole table (2 s on the event loop for a
   * week of done jobs, 1,000,000) at every GET /admin/jobs without a state.
   */
  listAll: `SELECT ${SUMMARY} FROM jobs WHERE id IN (
              SELECT id FROM (${JOB_STATES.map(
                (state) =>
                  `SELECT * FROM (SELECT id, updated_at FROM jobs INDEXED BY jobs_state_updated
                     WHERE state = '${state}' ORDER BY updated_at DESC LIMIT @limit)`,
              ).join(" UNION ALL ")})
              ORDER BY updated_at DESC LIMIT @limit)
            ORDER BY updated_at DESC`,
  listByStateAfter: `SELECT ${SUMMARY} FROM jobs INDEXED BY jobs_state_id
                       WHERE state = @state AND id > @after ORDER BY id LIMIT @limit`,
  listAllAfter: `SELECT ${SUMMARY} FROM jobs WHERE id > @after ORDER BY id LIMIT @limit`,
  // By the dedupe key's index (a kreditCheckId alone reads the table: an operator's lookup).
  findByBoth: `SELECT ${SUMMARY} FROM jobs WHERE process_token = @processToken AND kreditcheck_id = @kreditCheckId
                 AND (@state IS NULL OR state = @state) LIMIT @limit`,
  findByProcessToken: `SELECT ${SUMMARY} FROM jobs WHERE process_token = @processToken AND (@state IS NULL OR state = @state)
                         ORDER BY received_at DESC LIMIT @limit`,
  findByKreditCheckId: `SELECT ${SUMMARY} FROM jobs WHERE kreditcheck_id = @kreditCheckId AND (@state IS NULL OR state = @state)
                          ORDER BY received_at DESC LIMIT @limit`,
  /**
   * Pending and running on their partial indexes; done and dead kept by triggers
   * (schema.ts): two rows to read, however many finished jobs a week holds.
   */
  countByState: `SELECT 'pending' AS state, COUNT(*) AS count FROM jobs INDEXED BY jobs_pending_due
                   WHERE state = 'pending'
                 UNION ALL
                 SELECT 'running', COUNT(*) FROM jobs INDEXED BY jobs_running_locked_until
                   WHERE state = 'running'
                 UNION ALL
                 SELECT state, count FROM finished_counts`,
  // Named: without statistics SQLite picks jobs_state_updated for the state filter and reads
  // every unfinished job; its own index answers MIN in one lookup.
  oldestUnfinished: `SELECT MIN(received_at) AS at FROM jobs INDEXED BY jobs_unfinished_received WHERE state IN ('pending', 'running')`,
  heartbeat: `INSERT INTO heartbeat (id, at) VALUES (1, @now) ON CONFLICT (id) DO UPDATE SET at = excluded.at`,
} as const;
