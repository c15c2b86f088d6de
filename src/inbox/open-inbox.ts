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
  return new SqliteInbox({ path: store.sqlitePath, clock: options.clock });
}
