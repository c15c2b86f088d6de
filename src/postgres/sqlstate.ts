/**
 * PostgreSQL failures are recognised by SQLSTATE (and Node's socket error codes), never by
 * the server's message text: messages are localised and change between releases. The one
 * exception is the driver's own words for a connection lost or not opened in time, which
 * have no code (see CONNECTION_LOST).
 */
export function sqlstateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Node's codes for a server certificate it did not accept (OpenSSL's verification
 * results, and its own for a name the certificate does not hold).
 */
const CERTIFICATE_REFUSED = /CERT|^UNABLE_TO_(GET|VERIFY|DECRYPT)|^HOSTNAME_MISMATCH$/;
const CERTIFICATE_FIX =
  "the PostgreSQL server's TLS certificate was not accepted: with sslmode=verify-full or verify-ca in the URL (or PGSSLMODE) it must be signed by the CA in sslrootcert=<file> (or PGSSLROOTCERT; without one, by a CA the system trusts), and with verify-full also name the host the URL connects to (verify-ca does not check the name); sslmode=require encrypts without checking it (unless sslrootcert or PGSSLROOTCERT names a CA: then it checks the chain, as verify-ca does).";

/** pg's words when the URL asks for TLS and the server offers none. No code. */
const NO_TLS = /^The server does not support SSL connections$/;
const NO_TLS_FIX =
  "the PostgreSQL server does not offer TLS, and sslmode in the URL (or PGSSLMODE) requires it: enable ssl on the server, or set sslmode=prefer (TLS when the server offers it) or sslmode=disable.";

/** What to do about a TLS problem of a connection, when it was one. */
export function tlsFix(error: unknown): string | undefined {
  const code = sqlstateOf(error);
  if (code !== undefined) return CERTIFICATE_REFUSED.test(code) ? CERTIFICATE_FIX : undefined;
  return error instanceof Error && NO_TLS.test(error.message) ? NO_TLS_FIX : undefined;
}

const FIXES: readonly [test: (code: string) => boolean, fix: string][] = [
  [(code) => CERTIFICATE_REFUSED.test(code), CERTIFICATE_FIX],
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

/**
 * node-postgres's (and pg-pool's) errors for a connection that closed, or was not opened
 * within connectionTimeoutMillis: English text in the driver, not the server's, and no
 * code. A host that drops packets (a firewall, a wrong address) ends this way.
 */
const CONNECTION_LOST =
  /^(?:Connection terminated(?: unexpectedly| due to connection timeout)?|timeout expired)$/;
const CONNECTION_LOST_FIX =
  "the connection to the PostgreSQL server closed or could not be opened in time: check host and port in the URL, that the server runs, and that no firewall drops the service's packets.";
/**
 * pg-pool's: no connection of a full pool came free in time, either because its
 * statements are held (a lock) or because its connections are still being opened (a
 * server that does not answer).
 */
const POOL_WAIT = /^timeout exceeded when trying to connect$/;
const POOL_WAIT_FIX =
  "every connection of the service's pool stayed busy that long: look for a lock held on the jobs table (CREATE INDEX without CONCURRENTLY, LOCK TABLE, a long ALTER; pg_locks) or a slow server; or its connections were still being opened: check host, port, that the server runs, and the firewall.";

/** A one-line description of a pg error: SQLSTATE, message, and what to do about it. */
export function describePgError(error: unknown): string {
  const code = sqlstateOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const fix = code
    ? FIXES.find(([test]) => test(code))?.[1]
    : CONNECTION_LOST.test(message)
      ? CONNECTION_LOST_FIX
      : POOL_WAIT.test(message)
        ? POOL_WAIT_FIX
        : tlsFix(error);
  return `${code ? `[${code}] ` : ""}${message}${fix ? ` (${fix})` : ""}`;
}
