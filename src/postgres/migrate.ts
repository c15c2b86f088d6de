import pg from "pg";
import { queryAnswered } from "./pool.js";

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

export interface MigrateOptions {
  /** How long the migration lock, and each lock a migration needs, is waited for (15 s). */
  lockTimeoutMs?: number;
  /**
   * How long a bookkeeping statement may go unanswered beyond lockTimeoutMs (10 s), as the
   * LISTEN statement may: then start-up fails, saying so, instead of hanging.
   */
  answerTimeoutMs?: number;
}

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
 *
 * The pool has no query timeout: a migration of a large table may take longer than any
 * statement of the running service should. Every other statement here (BEGIN, the lock,
 * the ledger's reads and writes, the COMMIT of a transaction that migrated nothing) is
 * given up after lockTimeoutMs + answerTimeoutMs: on a connection that went silent
 * (a failover, a dropped NAT entry) it waited, with start-up and without a word, until TCP
 * keepalive gave up some 11 minutes later.
 */
export async function migrate(
  pool: pg.Pool,
  schema: string,
  set: MigrationSet,
  options: MigrateOptions = {},
): Promise<void> {
  const { lockTimeoutMs = 15_000, answerTimeoutMs = 10_000 } = options;
  // Each step re-reads the version under the lock: another replica may have gone on.
  while (await applyNextMigration(pool, schema, set, lockTimeoutMs, answerTimeoutMs)) {
    // applied one; look again
  }
}

/**
 * Applies the first migration `schema` lacks, in one transaction; false when none. After
 * an error the server did not send (a statement given up on, a lost connection, our own),
 * the connection is closed instead of rolled back: a ROLLBACK would queue behind the
 * statement still waiting there, and the server rolls back a closed session's transaction.
 */
async function applyNextMigration(
  pool: pg.Pool,
  schema: string,
  set: MigrationSet,
  lockTimeoutMs: number,
  answerTimeoutMs: number,
): Promise<boolean> {
  const known = set.migrations.length;
  const boundMs = lockTimeoutMs + answerTimeoutMs;
  const client = await pool.connect();
  const bounded = <R extends pg.QueryResultRow>(what: string, text: string, values?: unknown[]) =>
    queryAnswered<R>(client, `${what} (migrating schema "${schema}")`, boundMs, text, values);
  let broken = false;
  try {
    await bounded("BEGIN", "BEGIN");
    await bounded("SET lock_timeout", "SELECT set_config('lock_timeout', $1, true)", [
      `${lockTimeoutMs}ms`,
    ]);
    await bounded("the migration lock", "SELECT pg_advisory_xact_lock(hashtext($1))", [
      `kreditcheck-receiver:migrate:${schema}`,
    ]);
    const existing = await bounded(
      "the look for the schema",
      "SELECT 1 FROM pg_namespace WHERE nspname = $1",
      [schema],
    );
    // Only when missing: CREATE SCHEMA needs CREATE on the database even with IF NOT EXISTS.
    // Identifiers cannot be bound; the name was checked against SCHEMA_NAME_PATTERN.
    if (existing.rowCount === 0) {
      await bounded("CREATE SCHEMA", `CREATE SCHEMA ${client.escapeIdentifier(schema)}`);
    }
    // Only when missing, like the schema: CREATE TABLE IF NOT EXISTS still needs CREATE on
    // the schema, which a role that only uses tables an administrator made does not have.
    const ledger = await bounded<{ present: boolean }>(
      "the look for the migrations ledger",
      "SELECT to_regclass($1) IS NOT NULL AS present",
      [`${client.escapeIdentifier(schema)}.kreditcheck_schema_migrations`],
    );
    if (ledger.rows[0]?.present !== true) {
      await bounded("the creation of the migrations ledger", LEDGER);
    }
    const { rows } = await bounded<{ version: number | null }>(
      "the read of the migrations ledger",
      "SELECT max(version) AS version FROM kreditcheck_schema_migrations WHERE component = $1",
      [set.component],
    );
    const current = rows[0]?.version ?? 0;
    if (current > known) throw new SchemaTooNewError(set.component, current, known, schema);
    const migration = set.migrations[current];
    if (migration === undefined) {
      await bounded("COMMIT", "COMMIT");
      return false;
    }
    // The migration itself, and its COMMIT (which may wait for a synchronous standby to
    // take all it wrote), take as long as they take.
    await client.query(migration.sql);
    await bounded(
      "the migrations ledger's new row",
      "INSERT INTO kreditcheck_schema_migrations (component, version, name) VALUES ($1, $2, $3)",
      [set.component, current + 1, migration.name],
    );
    await client.query("COMMIT");
    return true;
  } catch (error) {
    if (error instanceof pg.DatabaseError) {
      await bounded("ROLLBACK", "ROLLBACK").catch(() => {
        broken = true;
      });
    } else broken = true;
    throw error;
  } finally {
    client.release(broken);
  }
}
