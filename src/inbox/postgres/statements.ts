/**
 * Every SQL statement that touches kreditcheck_jobs, in one place, always with bound
 * parameters. Time is the database's `now()`: all replicas share one clock, so a lease
 * taken on one host expires at the same instant for every other. Owner-checked statements
 * match `locked_by` and `state = 'running'`; zero changed rows means the lease was lost.
 */
/**
 * A listed job's columns (JobSummary): its progress without the bundle (as jsonb: the keys
 * left need no order), and whether it has one; the bundle's text stays in the database.
 * Except where the progress holds a `\u0000` escape (finAPI data may): PostgreSQL refuses
 * every JSON operator on such text (22P05), which failed the whole page, so that row's
 * progress comes whole and bundle_kept NULL, and the caller leaves the bundle out.
 */
const NUL_ESCAPE = `strpos(progress::text, '\\u0000') > 0`;
const SUMMARY = `id, process_token, kreditcheck_id, callback, state, attempts, run_at, locked_by,
  locked_until, last_error,
  CASE WHEN ${NUL_ESCAPE} THEN progress ELSE (progress::jsonb - 'bundle')::json END AS progress,
  CASE WHEN ${NUL_ESCAPE} THEN NULL ELSE (progress -> 'bundle') IS NOT NULL END AS bundle_kept,
  received_at, updated_at, finished_at`;

import { JOB_STATES } from "../inbox.js";

export const SQL = {
  /**
   * Many callbacks in one statement (group commit): parallel arrays, unnested. One
   * statement, so one round trip and its own transaction: the rows, and a wake-up for idle
   * workers of every replica sent when it commits (PostgreSQL delivers identical
   * notifications of one transaction once).
   */
  insertMany: `INSERT INTO kreditcheck_jobs
                 (id, process_token, kreditcheck_id, callback, state, attempts, run_at, received_at, updated_at)
               SELECT id, process_token, kreditcheck_id, callback, 'pending', 0, now(), received_at, now()
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::json[], $5::timestamptz[])
                 AS batch (id, process_token, kreditcheck_id, callback, received_at)
               ON CONFLICT (process_token, kreditcheck_id) DO NOTHING
               RETURNING id, process_token, kreditcheck_id, pg_notify($6, $7)`,
  /**
   * See Inbox.enqueue and replacesStored ($5 is 'SUCCESSFUL'): a SUCCESSFUL callback
   * replaces a stored one that is not, and its job runs again from the start (once the
   * lease of an attempt still running has run out). The rows are locked first, so a replica
   * replacing the same one at once waits and then finds it SUCCESSFUL (a duplicate). Wakes
   * idle workers on commit.
   */
  replaceCallbacks: `WITH batch AS (
                       SELECT * FROM unnest($1::text[], $2::text[], $3::json[], $4::timestamptz[])
                         AS b (process_token, kreditcheck_id, callback, received_at)),
                     stored AS (
                       SELECT j.id, j.callback ->> 'status' AS status, batch.callback, batch.received_at
                       FROM kreditcheck_jobs j
                       JOIN batch USING (process_token, kreditcheck_id)
                       WHERE batch.callback ->> 'status' = $5::text
                         AND j.callback ->> 'status' IS DISTINCT FROM $5::text
                       FOR UPDATE OF j)
                     UPDATE kreditcheck_jobs j
                     SET callback = stored.callback, state = 'pending', attempts = 0,
                         run_at = CASE WHEN j.state = 'running' THEN GREATEST(now(), j.locked_until) ELSE now() END,
                         locked_by = NULL, locked_until = NULL, last_error = NULL, progress = '{}',
                         received_at = stored.received_at, updated_at = now(), finished_at = NULL
                     FROM stored WHERE j.id = stored.id
                     RETURNING j.id, j.process_token, j.kreditcheck_id, stored.status AS replaced_status,
                               pg_notify($6, $7)`,
  findIdsByKeys: `SELECT id, process_token, kreditcheck_id FROM kreditcheck_jobs
                  WHERE (process_token, kreditcheck_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
  /** Wakes idle workers of every replica once the transaction commits. */
  notify: `SELECT pg_notify($1, $2)`,
  /**
   * Due jobs: pending ones whose time has come and running ones whose lease expired,
   * oldest first. Pending jobs, the backlog, come from their partial index in the claim's
   * order, so a claim reads the rows it takes: one query with OR over both kinds sorted
   * every due row on each claim (4.5 ms with 10,000 pending, growing with them). Expired
   * leases (few: a replica stopped) come from theirs, earliest expiry first, in the
   * index's order: its dead entries (every finished job's, until vacuum) all have an
   * expiry in the past, and a plain index scan marks each dead once and then skips it.
   * Sorting by run_at instead made the planner read them by bitmap, which never marks
   * them: every claim rechecked the heap of every job finished since the last vacuum
   * (807 buffers and 0.75 ms after 20,000 jobs, against 96 and 0.09 ms).
   * A CTE with FOR UPDATE is evaluated once; SKIP LOCKED lets replicas claim side by side.
   * Up to $2 rows of each kind are locked and the oldest $2 taken; the others are free
   * again when the statement commits. A replica claiming in that instant skips them and,
   * if nothing else is due, finds them at its next poll.
   *
   * A lease runs from the row's write, clock_timestamp(), not now(): now() is when the
   * statement began, and one that waited out a table lock (CREATE INDEX, LOCK TABLE) for
   * longer than the lease wrote a lease already over, which another replica then took at
   * once while this one ran the job too. Renewals and retries' run_at alike. Expiry is
   * still judged by now(): an earlier clock only makes a claim more cautious.
   */
  claim: `WITH pending AS (
            SELECT id, run_at, received_at, NULL::text AS taken_over_from FROM kreditcheck_jobs
            WHERE state = 'pending' AND run_at <= now()
            ORDER BY run_at, received_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED),
          expired AS (
            SELECT id, run_at, received_at, locked_by AS taken_over_from FROM kreditcheck_jobs
            WHERE state = 'running' AND locked_until <= now()
            ORDER BY locked_until
            LIMIT $2
            FOR UPDATE SKIP LOCKED),
          due AS (
            SELECT id, taken_over_from FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS candidates
            ORDER BY run_at, received_at
            LIMIT $2)
          UPDATE kreditcheck_jobs AS jobs
          SET state = 'running', locked_by = $1, locked_until = clock_timestamp() + $3 * interval '1 millisecond',
              attempts = jobs.attempts + 1, updated_at = now()
          FROM due WHERE jobs.id = due.id
          RETURNING jobs.*, due.taken_over_from`,
  renew: `UPDATE kreditcheck_jobs SET locked_until = clock_timestamp() + $3 * interval '1 millisecond', updated_at = now()
          WHERE id = $1 AND locked_by = $2 AND state = 'running'`,
  complete: `UPDATE kreditcheck_jobs SET state = 'done', locked_by = NULL, locked_until = NULL, last_error = NULL,
                    progress = $3, updated_at = now(), finished_at = now()
             WHERE id = $1 AND locked_by = $2 AND state = 'running'`,
  retry: `UPDATE kreditcheck_jobs SET state = 'pending', locked_by = NULL, locked_until = NULL, run_at = clock_timestamp() + $3 * interval '1 millisecond',
                 last_error = $4, progress = $5, updated_at = now()
          WHERE id = $1 AND locked_by = $2 AND state = 'running'`,
  fail: `UPDATE kreditcheck_jobs SET state = 'dead', locked_by = NULL, locked_until = NULL, last_error = $3,
                progress = $4, updated_at = now(), finished_at = now()
         WHERE id = $1 AND locked_by = $2 AND state = 'running'`,
  release: `UPDATE kreditcheck_jobs SET state = 'pending', attempts = GREATEST(attempts - 1, 0), locked_by = NULL,
                   locked_until = NULL, run_at = now(), progress = $3, updated_at = now()
            WHERE id = $1 AND locked_by = $2 AND state = 'running'`,
  /**
   * See Inbox.requeue; json (not jsonb) values are handed on as written, key order kept.
   * $2 (fresh) keeps nothing; CASE tries its branches in order, so the bundle is not read
   * then (see PostgresInbox.requeueFinished for why that matters). $3 ('dead' or 'done',
   * or NULL for either): the job only in that state, checked here.
   */
  requeue: `UPDATE kreditcheck_jobs SET state = 'pending', attempts = 0, run_at = now(), locked_by = NULL,
                   locked_until = NULL, last_error = NULL,
                   -- JOB_MAX_AGE_MS counts from now (epoch ms)
                   progress = COALESCE(CASE
                     WHEN $2::boolean THEN NULL
                     WHEN state = 'dead' AND json_typeof(progress -> 'bundle') = 'object'
                     THEN json_build_object('bundle', progress -> 'bundle',
                                            'deliveredSinks', COALESCE(progress -> 'deliveredSinks', '[]'::json),
                                            'requeuedAt', floor(extract(epoch from now()) * 1000)::bigint) END,
                     json_build_object('requeuedAt', floor(extract(epoch from now()) * 1000)::bigint)),
                   updated_at = now(), finished_at = NULL
            WHERE id = $1 AND state IN ('dead', 'done') AND ($3::text IS NULL OR state = $3::text)`,
  runNow: `UPDATE kreditcheck_jobs SET run_at = LEAST(run_at, now()), updated_at = now()
           WHERE id = $1 AND state = 'pending'`,
  /**
   * For a done or dead row updated_at equals finished_at (complete and fail set both, and
   * only requeue, which makes it pending, changes a finished row), so the updated_at bound
   * walks the existing (state, updated_at) index oldest first; the finished_at bound is the
   * rule itself. SKIP LOCKED: replicas pruning at once, or a requeue in flight, never wait.
   * `= ANY (ARRAY(…))` deletes by primary key; a join with the batch was planned as a
   * sequential scan of the whole table.
   */
  prune: `DELETE FROM kreditcheck_jobs
          WHERE id = ANY (ARRAY(
            SELECT id FROM kreditcheck_jobs
            WHERE state = $1 AND state IN ('done', 'dead') AND updated_at < $2 AND finished_at < $2
            ORDER BY updated_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED))`,
  get: `SELECT * FROM kreditcheck_jobs WHERE id = $1`,
  listByState: `SELECT ${SUMMARY} FROM kreditcheck_jobs WHERE state = $1 ORDER BY updated_at DESC LIMIT $2`,
  /**
   * The latest of each state from kreditcheck_jobs_state_updated, then the latest of
   * those: ordered by updated_at alone, every job was read and sorted (a week of done jobs
   * at every GET /admin/jobs without a state).
   */
  listAll: `SELECT ${SUMMARY} FROM kreditcheck_jobs WHERE id IN (
              SELECT id FROM (${JOB_STATES.map(
                (state) =>
                  `(SELECT id, updated_at FROM kreditcheck_jobs WHERE state = '${state}'
                    ORDER BY updated_at DESC LIMIT $1)`,
              ).join(" UNION ALL ")}) AS latest
              ORDER BY updated_at DESC LIMIT $1)
            ORDER BY updated_at DESC`,
  listByStateAfter: `SELECT ${SUMMARY} FROM kreditcheck_jobs WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3`,
  listAllAfter: `SELECT ${SUMMARY} FROM kreditcheck_jobs WHERE id > $1 ORDER BY id LIMIT $2`,
  // By the dedupe key's index (a kreditCheckId alone reads the table: an operator's lookup).
  // The state is filtered outside (OFFSET 0 keeps it there): as a condition beside the
  // ids, a state the statistics think rare (dead) made the planner read every job in it
  // by the (state, updated_at) index instead.
  // (The summary outside too: inside, it read every kept bundle of the token first.)
  findByBoth: `SELECT ${SUMMARY} FROM (SELECT * FROM kreditcheck_jobs WHERE process_token = $1 AND kreditcheck_id = $2 OFFSET 0)
               AS kreditcheck_jobs WHERE $4::text IS NULL OR state = $4 LIMIT $3`,
  findByProcessToken: `SELECT ${SUMMARY} FROM (SELECT * FROM kreditcheck_jobs WHERE process_token = $1 OFFSET 0)
                       AS kreditcheck_jobs WHERE $3::text IS NULL OR state = $3 ORDER BY received_at DESC LIMIT $2`,
  findByKreditCheckId: `SELECT ${SUMMARY} FROM (SELECT * FROM kreditcheck_jobs WHERE kreditcheck_id = $1 OFFSET 0)
                        AS kreditcheck_jobs WHERE $3::text IS NULL OR state = $3 ORDER BY received_at DESC LIMIT $2`,
  countByState: `SELECT state, count(*)::integer AS count FROM kreditcheck_jobs GROUP BY state`,
  oldestUnfinished: `SELECT min(received_at) AS at FROM kreditcheck_jobs WHERE state IN ('pending', 'running')`,
  /**
   * A real write for ping: one row, upserted. The CTE inserts no row, but takes the jobs
   * table's ROW EXCLUSIVE lock as a callback's insert does, so a ping waits for (and times
   * out on) the same locks as callbacks.
   */
  heartbeat: `WITH jobs_writable AS (INSERT INTO kreditcheck_jobs SELECT * FROM kreditcheck_jobs WHERE false)
              INSERT INTO kreditcheck_heartbeat (id, at) VALUES (1, now())
              ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at`,
} as const;
