import type Database from "better-sqlite3";

/**
 * Ordered migrations; index + 1 is the schema version kept in `PRAGMA user_version`.
 * Append only: a released migration is never edited.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE jobs (
     id              TEXT PRIMARY KEY,
     process_token   TEXT NOT NULL,
     kreditcheck_id  TEXT NOT NULL,
     callback        TEXT NOT NULL,
     state           TEXT NOT NULL CHECK (state IN ('pending','running','done','dead')),
     attempts        INTEGER NOT NULL DEFAULT 0,
     run_at          INTEGER NOT NULL,
     locked_by       TEXT,
     locked_until    INTEGER,
     last_error      TEXT,
     progress        TEXT NOT NULL DEFAULT '{}',
     received_at     INTEGER NOT NULL,
     updated_at      INTEGER NOT NULL,
     finished_at     INTEGER,
     UNIQUE (process_token, kreditcheck_id)
   );
   CREATE INDEX jobs_pending_run_at ON jobs (run_at) WHERE state = 'pending';
   CREATE INDEX jobs_running_locked_until ON jobs (locked_until) WHERE state = 'running';
   CREATE INDEX jobs_state_updated ON jobs (state, updated_at);`,
  // Readiness writes here: a store that can be read but not written is not ready.
  `CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);`,
  // The claim orders by (run_at, received_at). On run_at alone, every job enqueued in one
  // group commit ties on run_at, so a claim of one job read and sorted all of them (20 us
  // for its select with 3,500 due, growing with the backlog). Both columns: it reads what
  // it takes. jobs_pending_run_at stays for now: a process of the previous release still
  // running on this file names it in its claim (INDEXED BY) and would fail without it.
  `CREATE INDEX jobs_pending_due ON jobs (run_at, received_at) WHERE state = 'pending';`,
  // Finished jobs per state, kept by triggers in the transaction that changes them.
  // COUNT(*) over a week of done jobs (a million rows) took 120 ms, on the event loop that
  // answers callbacks, at every /metrics scrape and every admin list. Pending and running
  // jobs are counted on their partial indexes (a backlog, not a week); no trigger on
  // INSERT, so a callback's write costs nothing more. The triggers live in the file: a
  // process of the previous release on it keeps the counts right too.
  `CREATE TABLE finished_counts (state TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
   INSERT INTO finished_counts (state, count)
     SELECT s.state, (SELECT COUNT(*) FROM jobs WHERE jobs.state = s.state)
     FROM (SELECT 'done' AS state UNION ALL SELECT 'dead') AS s;
   CREATE TRIGGER jobs_count_finished AFTER UPDATE OF state ON jobs
     WHEN NEW.state IS NOT OLD.state
      AND (NEW.state IN ('done', 'dead') OR OLD.state IN ('done', 'dead')) BEGIN
     UPDATE finished_counts SET count = count - 1 WHERE state = OLD.state;
     UPDATE finished_counts SET count = count + 1 WHERE state = NEW.state;
   END;
   CREATE TRIGGER jobs_count_deleted AFTER DELETE ON jobs
     WHEN OLD.state IN ('done', 'dead') BEGIN
     UPDATE finished_counts SET count = count - 1 WHERE state = OLD.state;
   END;`,
  // The age of the oldest unfinished job (/metrics) from an index: MIN(received_at) over a
  // backlog of 500,000 pending jobs scanned them all, 110-140 ms on the event loop at every
  // scrape, while the backlog is the time the endpoint most needs it. With the index it is
  // one lookup; a job pays one more index entry from its callback to its end.
  `CREATE INDEX jobs_unfinished_received ON jobs (received_at) WHERE state IN ('pending', 'running');`,
  // A page of one state after an id (GET /admin/jobs?state=…&after=…, retry --all-dead)
  // read in id order: through jobs_state_updated it read and sorted every job of that
  // state, 0.3-0.4 s per page on the event loop for a week of done jobs (1,000,000).
  `CREATE INDEX jobs_state_id ON jobs (state, id);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function migrate(db: Database.Database): void {
  // One immediate transaction: two processes starting on one file migrate once. The
  // version is read inside it: a release that waited for the lock while a newer one
  // migrated must refuse the schema it then finds, not write its own version over it.
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(
        `the inbox database has schema version ${version}, newer than this release understands (${SCHEMA_VERSION}): run a newer kreditcheck-receiver or point STORE_URL at another file`,
      );
    }
    for (let index = version; index < SCHEMA_VERSION; index++) {
      db.exec(MIGRATIONS[index] as string);
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
