import { type Config, redactUrl } from "../config.js";
import type { MigrateOptions } from "../postgres/migrate.js";
import { type Inbox, StoreUnavailableError } from "./inbox.js";
import { PostgresInbox } from "./postgres/postgres-inbox.js";
import { SqliteInbox } from "./sqlite/sqlite-inbox.js";

/** Picks the inbox adapter from STORE_URL; PostgreSQL connects and migrates first. */
export async function openInbox(
  store: Config["store"],
  options: {
    clock?: () => number;
    onListenError?: (error: unknown) => void;
    migrationTimeouts?: MigrateOptions;
  } = {},
): Promise<Inbox> {
  if (store.kind === "postgres") {
    try {
      return await PostgresInbox.open({
        url: store.url,
        schema: store.schema,
        onListenError: options.onListenError,
        migrationTimeouts: options.migrationTimeouts,
      });
    } catch (error) {
      // Named like the SQLite case: the operator sees which variable to fix.
      if (!(error instanceof StoreUnavailableError)) throw error;
      throw new StoreUnavailableError(`STORE_URL=${redactUrl(store.url)}: ${error.message}`, {
        cause: error,
      });
    }
  }
  try {
    return new SqliteInbox({ path: store.sqlitePath, clock: options.clock });
  } catch (error) {
    const fix = sqliteOpenFix((error as { code?: unknown }).code);
    throw new Error(
      `STORE_URL=${store.url}: the SQLite inbox cannot be opened (${(error as Error).message})${fix ? `; ${fix}` : ""}`,
      { cause: error },
    );
  }
}

/** A hint for the errors whose cause is the file or its folder; others explain themselves. */
function sqliteOpenFix(code: unknown): string | undefined {
  if (typeof code !== "string") return undefined;
  if (code === "SQLITE_NOTADB")
    return "the file is not a SQLite database: point STORE_URL at another file";
  if (/^E[A-Z]+$/.test(code) || /^SQLITE_(CANTOPEN|READONLY|PERM)/.test(code)) {
    return "point it at a file in a folder the service can create and write";
  }
  return undefined;
}
