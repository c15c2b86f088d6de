/**
 * PostgreSQL failures are recognised by SQLSTATE (and Node's socket error codes), never by
 * message text: messages are localised and change between releases.
 */
export function sqlstateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

const FIXES: readonly [test: (code: string) => boolean, fix: string][] = [
  [
    (code) => code.startsWith("28"),
    "the server refused the login: check user and password in the PostgreSQL URL.",
  ],
  [(code) => code === "3D000", "the database in the PostgreSQL URL does not exist: create it."],
  [
    (code) => code === "42501",
    "the database user lacks a privilege: the message names on what. Creating the tables needs CREATE on the database (for a new schema) and on the schema; using them needs USAGE on the schema and SELECT, INSERT, UPDATE, DELETE on its tables.",
  ],
  [
    (code) => code === "55P03",
    "a lock was not granted in time: another session holds one on the table (a replica migrating at start-up, LOCK TABLE, CREATE INDEX without CONCURRENTLY, a long transaction); find it in pg_locks and pg_stat_activity.",
  ],
  [
    (code) =>
      code.startsWith("08") ||
      ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND"].includes(code),
    "the PostgreSQL server cannot be reached: check host and port in the URL and that it runs.",
  ],
  [
    (code) => code.startsWith("57P") || code.startsWith("53"),
    "the PostgreSQL server is shutting down or out of resources; it is retried.",
  ],
];

/** A one-line description of a pg error: SQLSTATE, message, and what to do about it. */
export function describePgError(error: unknown): string {
  const code = sqlstateOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const fix = code ? FIXES.find(([test]) => test(code))?.[1] : undefined;
  return `${code ? `[${code}] ` : ""}${message}${fix ? ` (${fix})` : ""}`;
}
