import type { Config } from "../config.js";
import type { Inbox } from "./inbox.js";
import { PostgresInbox } from "./postgres/postgres-inbox.js";
import { SqliteInbox } from "./sqlite/sqlite-inbox.js";

/** Picks the inbox adapter from STORE_URL; PostgreSQL connects and migrates first. */
export async function openInbox(
  store: Config["store"],
  options: { clock?: () => number; onListenError?: (error: unknown) => void } = {},
): Promise<Inbox> {
  if (store.kind === "postgres") {
    return PostgresInbox.open({
      url: store.url,
      schema: store.schema,
      onListenError: options.onListenError,
    });
  }
  try {
    return new SqliteInbox({ path: store.sqlitePath, clock: options.clock });
  } catch (error) {
    throw new Error(
      `STORE_URL=${store.url}: the SQLite inbox cannot be opened (${(error as Error).message}); point it at a file in a folder the service can create and write`,
      { cause: error },
    );
  }
}
