import pg from "pg";
import { SCHEMA_NAME_PATTERN } from "./identifier.js";

export interface PostgresTarget {
  /** `postgres://` or `postgresql://` connection URL. */
  url: string;
  /** Schema holding the service's tables; created by the migrator when missing. */
  schema: string;
}

/**
 * Connection settings for one schema. `search_path` goes in the startup packet (`options`),
 * so every connection of a pool, and the LISTEN client, sees the schema from its first
 * query: no `SET` that a reconnect could forget, and statements stay unqualified.
 */
export function connectionConfig(target: PostgresTarget, applicationName: string): pg.ClientConfig {
  if (!SCHEMA_NAME_PATTERN.test(target.schema)) {
    throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(target.schema)}`);
  }
  return {
    connectionString: target.url,
    options: `-c search_path=${target.schema}`,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
  };
}

/**
 * `connectionTimeoutMs` bounds both opening a connection and waiting for a free one when
 * all `max` are in use (10 s unless given).
 */
export function createPool(
  target: PostgresTarget,
  applicationName: string,
  max = 10,
  connectionTimeoutMs?: number,
  lockTimeoutMs?: number,
): pg.Pool {
  const config = connectionConfig(target, applicationName);
  if (connectionTimeoutMs !== undefined) config.connectionTimeoutMillis = connectionTimeoutMs;
  // Every statement of the pool's sessions waits at most this long for a lock; a
  // transaction may still set its own (SET LOCAL), as the migrator does.
  if (lockTimeoutMs !== undefined) config.options += ` -c lock_timeout=${lockTimeoutMs}`;
  const pool = new pg.Pool({ ...config, max });
  // An idle client that loses its connection emits here; without a listener the process
  // would crash. The next query gets a fresh connection, and its error is handled there.
  pool.on("error", () => undefined);
  // A client checked out with pool.connect() has no pool listener (pg-pool removes it):
  // a connection cut mid-transaction (failover, pg_terminate_backend) would emit 'error'
  // with nobody listening, an uncaught exception that ends the process. The statement in
  // flight fails with the same error, and that is where it is handled.
  pool.on("connect", (client) => client.on("error", () => undefined));
  return pool;
}

/** Runs `work` in one transaction on one pooled client; rolls back when it throws. */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
