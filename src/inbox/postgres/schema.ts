import type { MigrationSet } from "../../postgres/migrate.js";

/**
 * The inbox's tables. `callback` and `progress` are `json`, not `jsonb`: json keeps the
 * text as written, so a bundle resumed from progress keeps finAPI's key order.
 */
export const INBOX_MIGRATIONS: MigrationSet = {
  component: "inbox",
  migrations: [
    {
      name: "create kreditcheck_jobs",
      sql: `CREATE TABLE kreditcheck_jobs (
        id              uuid        PRIMARY KEY,
        process_token   text        NOT NULL,
        kreditcheck_id  text        NOT NULL,
        callback        json        NOT NULL,
        state           text        NOT NULL CHECK (state IN ('pending','running','done','dead')),
        attempts        integer     NOT NULL DEFAULT 0,
        run_at          timestamptz NOT NULL,
        locked_by       text,
        locked_until    timestamptz,
        last_error      text,
        progress        json        NOT NULL DEFAULT '{}',
        received_at     timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL,
        finished_at     timestamptz,
        UNIQUE (process_token, kreditcheck_id)
      );
      CREATE INDEX kreditcheck_jobs_pending_run_at ON kreditcheck_jobs (run_at) WHERE state = 'pending';
      CREATE INDEX kreditcheck_jobs_running_locked_until ON kreditcheck_jobs (locked_until) WHERE state = 'running';
      CREATE INDEX kreditcheck_jobs_state_updated ON kreditcheck_jobs (state, updated_at);`,
    },
    {
      // ping writes here: a database that answers but cannot be written (a read-only
      // standby after a failover, a full disk) must not look healthy.
      name: "create kreditcheck_heartbeat",
      sql: `CREATE TABLE kreditcheck_heartbeat (
        id  integer     PRIMARY KEY CHECK (id = 1),
        at  timestamptz NOT NULL
      );`,
    },
    {
      // The claim's order, (run_at, received_at), straight from the index: the claim reads
      // the rows it takes instead of sorting the whole backlog (see statements.ts).
      name: "index pending kreditcheck_jobs by (run_at, received_at)",
      sql: `CREATE INDEX kreditcheck_jobs_pending_due ON kreditcheck_jobs (run_at, received_at) WHERE state = 'pending';
      DROP INDEX IF EXISTS kreditcheck_jobs_pending_run_at;`,
    },
    {
      // The age of the oldest unfinished job (/metrics) from an index instead of a scan
      // of the whole backlog at every scrape (see the SQLite inbox's schema).
      name: "index unfinished kreditcheck_jobs by received_at",
      sql: `CREATE INDEX kreditcheck_jobs_unfinished_received ON kreditcheck_jobs (received_at) WHERE state IN ('pending', 'running');`,
    },
  ],
};
