import type { MigrationSet } from "../postgres/migrate.js";

/** The postgres sink's tables, migrated at start-up like the inbox (own ledger component). */
export const SINK_MIGRATIONS: MigrationSet = {
  component: "postgres_sink",
  migrations: [
    {
      name: "create kreditcheck_checks, kreditcheck_dac_reports, kreditcheck_documents",
      sql: `CREATE TABLE kreditcheck_checks (
        kreditcheck_id    text        PRIMARY KEY,
        process_token     text        NOT NULL,
        client_reference  text,
        status            text        NOT NULL,
        overall_verdict   text,
        rate_amount       numeric,
        kreditcheck       jsonb,
        callback          jsonb       NOT NULL,
        problems          jsonb       NOT NULL,
        received_at       timestamptz NOT NULL,
        completed_at      timestamptz NOT NULL,
        deliveries        integer     NOT NULL DEFAULT 1
      );
      COMMENT ON COLUMN kreditcheck_checks.deliveries IS
        'how often the bundle was written; above 1 only when a worker stopped between writing and finishing the job';
      CREATE INDEX kreditcheck_checks_verdict_completed ON kreditcheck_checks (overall_verdict, completed_at);
      CREATE TABLE kreditcheck_dac_reports (
        kreditcheck_id  text  NOT NULL REFERENCES kreditcheck_checks ON DELETE CASCADE,
        case_id         text  NOT NULL,
        report          jsonb NOT NULL,
        PRIMARY KEY (kreditcheck_id, case_id)
      );
      CREATE TABLE kreditcheck_documents (
        kreditcheck_id  text  NOT NULL REFERENCES kreditcheck_checks ON DELETE CASCADE,
        name            text  NOT NULL,
        content_type    text  NOT NULL,
        content         bytea NOT NULL,
        PRIMARY KEY (kreditcheck_id, name)
      );`,
    },
    {
      // What an analyst or a support desk looks checks up by: the mandator's own reference
      // (what a customer quotes), the processToken, a time range. Each read the whole table.
      name: "index kreditcheck_checks by client_reference, process_token, completed_at",
      sql: `CREATE INDEX kreditcheck_checks_client_reference ON kreditcheck_checks (client_reference)
              WHERE client_reference IS NOT NULL;
            CREATE INDEX kreditcheck_checks_process_token ON kreditcheck_checks (process_token);
            CREATE INDEX kreditcheck_checks_completed ON kreditcheck_checks (completed_at);
            COMMENT ON COLUMN kreditcheck_checks.deliveries IS
              'how often a bundle for this kreditcheck_id was written: above 1 after a worker stopped between writing and finishing the job, a retry of a done job, a SUCCESSFUL callback that replaced a FAILED one, or the same kreditcheck_id under another process_token';`,
    },
  ],
};

/** Every statement of the postgres sink, with bound parameters. */
export const SINK_SQL = {
  upsertCheck: `INSERT INTO kreditcheck_checks
                  (kreditcheck_id, process_token, client_reference, status, overall_verdict, rate_amount,
                   kreditcheck, callback, problems, received_at, completed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (kreditcheck_id) DO UPDATE SET
                  process_token = EXCLUDED.process_token, client_reference = EXCLUDED.client_reference,
                  status = EXCLUDED.status, overall_verdict = EXCLUDED.overall_verdict,
                  rate_amount = EXCLUDED.rate_amount, kreditcheck = EXCLUDED.kreditcheck,
                  callback = EXCLUDED.callback, problems = EXCLUDED.problems,
                  received_at = EXCLUDED.received_at, completed_at = EXCLUDED.completed_at,
                  deliveries = kreditcheck_checks.deliveries + 1`,
  // A repeated delivery replaces the reports and documents, so the rows match the bundle.
  deleteReports: `DELETE FROM kreditcheck_dac_reports WHERE kreditcheck_id = $1`,
  insertReports: `INSERT INTO kreditcheck_dac_reports (kreditcheck_id, case_id, report)
                  SELECT $1, case_id, report FROM unnest($2::text[], $3::jsonb[]) AS r (case_id, report)`,
  deleteDocuments: `DELETE FROM kreditcheck_documents WHERE kreditcheck_id = $1`,
  insertDocument: `INSERT INTO kreditcheck_documents (kreditcheck_id, name, content_type, content)
                   VALUES ($1, $2, $3, $4)`,
} as const;

/**
 * The privileges SINK_SQL needs, as GRANT statements for `role`: the upsert inserts,
 * updates and reads (ON CONFLICT), the replacements delete by key (which reads) and insert.
 * Start-up reads the migrations ledger too; see PostgresSink.open.
 */
export function sinkGrants(schema: string, role: string): string {
  return [
    `GRANT USAGE ON SCHEMA ${schema} TO ${role};`,
    `GRANT SELECT, INSERT, UPDATE ON ${schema}.kreditcheck_checks TO ${role};`,
    `GRANT SELECT, INSERT, DELETE ON ${schema}.kreditcheck_dac_reports, ${schema}.kreditcheck_documents TO ${role};`,
  ].join(" ");
}
