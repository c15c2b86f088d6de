import type pg from "pg";
import { inTransaction } from "./pool.js";

/** An ordered, append-only list of migrations of one component (inbox, sink, …). */
export interface MigrationSet {
  component: string;
  /** Index + 1 is the version; a released migration is never edited. */
  migrations: readonly { name: string; sql: string }[];
}

export class SchemaTooNewError extends Error {
  readonly code = "schema_too_new";
  constructor(component: string, found: number, known: number, schema: string) {
    super(
      `the PostgreSQL schema "${schema}" has ${component} version ${found}, newer than this release understands (${known}): run a newer kreditcheck-receiver, or point it at another schema or database`,
    );
    this.name = "SchemaTooNewError";
  }
}

const LEDGER = `CREATE TABLE IF NOT EXISTS kreditcheck_schema_migrations (
  component   text        NOT NULL,
  version     integer     NOT NULL,
  name        text        NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
)`;

/**
 * Brings `schema` up to date, one migration per transaction, each under a
 * transaction-scoped advisory lock, so that any number of replicas starting together
 * migrate once: the first applies, the others wait for the lock and then find nothing to
 * do. One transaction per migration: the locks a migration takes (an index build blocks
 * writes to its table, a DROP INDEX reads too) end with it instead of lasting through
 * every later migration when a start skips several releases; a failed migration keeps the
 * ones before it, and the next start goes on from there. `lock_timeout` bounds each wait,
 * so a stuck migration fails start-up instead of hanging it. A ledger row records each
 * applied version; a database newer than the code stops start-up. Nothing is created that
 * exists already, so a role without CREATE on the schema starts against an up-to-date one.
 */
export async function migrate(
  pool: pg.Pool,
  schema: string,
  set: MigrationSet,
  lockTimeoutMs = 15_000,
): Promise<void> {
  // Each step re-reads the version under the lock: another replica may have gone on.
  while (await applyNextMigration(pool, schema, set, lockTimeoutMs)) {
    // applied one; look again
  }
}

/** Applies the first migration `schema` lacks, in one transaction; false when none. */
async function applyNextMigration(
  pool: pg.Pool,
  schema: string,
  set: MigrationSet,
  lockTimeoutMs: number,
): Promise<boolean> {
  const known = set.migrations.length;
  return inTransaction(pool, async (client) => {
    await client.query("SELECT set_config('lock_timeout', $1, true)", [`${lockTimeoutMs}ms`]);
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [
      `kreditcheck-receiver:migrate:${schema}`,
    ]);
    const existing = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
    // Only when missing: CREATE SCHEMA needs CREATE on the database even with IF NOT EXISTS.
    // Identifiers cannot be bound; the name was checked against SCHEMA_NAME_PATTERN.
    if (existing.rowCount === 0) {
      await client.query(`CREATE SCHEMA ${client.escapeIdentifier(schema)}`);
    }
    // Only when missing, like the schema: CREATE TABLE IF NOT EXISTS still needs CREATE on
    // the schema, which a role that only uses tables an administrator made does not have.
    const ledger = await client.query("SELECT to_regclass($1) IS NOT NULL AS present", [
      `${client.escapeIdentifier(schema)}.kreditcheck_schema_migrations`,
    ]);
    if (ledger.rows[0]?.present !== true) await client.query(LEDGER);
    const { rows } = await client.query<{ version: number | null }>(
      "SELECT max(version) AS version FROM kreditcheck_schema_migrations WHERE component = $1",
      [set.component],
    );
    const current = rows[0]?.version ?? 0;
    if (current > known) throw new SchemaTooNewError(set.component, current, known, schema);
    const migration = set.migrations[current];
    if (migration === undefined) return false;
    await client.query(migration.sql);
    await client.query(
      "INSERT INTO kreditcheck_schema_migrations (component, version, name) VALUES ($1, $2, $3)",
      [set.component, current + 1, migration.name],
    );
    return true;
  });
}
