import type { Inbox } from "./inbox.js";
import { SqliteInbox } from "./sqlite/sqlite-inbox.js";

/** Picks the inbox adapter from STORE_URL. */
export function openInbox(store: { url: string; sqlitePath: string }, clock?: () => number): Inbox {
  if (store.url.startsWith("sqlite:")) return new SqliteInbox({ path: store.sqlitePath, clock });
  throw new Error(`unsupported STORE_URL scheme: ${store.url.split(":")[0]}`);
}
