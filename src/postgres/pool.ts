import pg from "pg";
import { SCHEMA_NAME_PATTERN } from "./identifier.js";
import { libpqSslSettings } from "./ssl-mode.js";

export interface PostgresTarget {
  /** `postgres://` or `postgresql://` connection URL. */
  url: string;
  /** Schema holding the service's tables; created by the migrator when missing. */
  schema: string;
}

/** How long opening a connection may take. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Connection settings for one schema. `search_path` goes in the startup packet (`options`),
 * so every connection of a pool, and the LISTEN client, sees the schema from its first
 * query: no `SET` that a reconnect could forget, and statements stay unqualified.
 *
 * node-postgres lets each parameter of the URL replace the setting of the same name, so a
 * URL with `?options=…` (some hosted servers require one) dropped the schema and the
 * timeouts below, silently: the tables went to `public`, shared by every PG_SCHEMA; a
 * `lock_timeout` or `query_timeout` in it replaced the pools' own. Those parameters are
 * taken out of the URL (splitUrlSettings) and put before ours (ours win for the same
 * setting); the rest of the URL stays a connection string, which node-postgres reads
 * anew for each connection: the password, and certificate files a rotation replaces.
 * An `application_name` in the URL is the operator's and is kept. `sslmode` (and
 * PGSSLMODE) means what it means to libpq (see libpqSslSettings); `env` is where libpq's
 * variables are read.
 */
export function connectionConfig(
  target: PostgresTarget,
  applicationName: string,
  env: NodeJS.ProcessEnv = process.env,
): pg.ClientConfig {
  if (!SCHEMA_NAME_PATTERN.test(target.schema)) {
    throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(target.schema)}`);
  }
  const { url, options: urlOptions, queryTimeoutMs } = splitUrlSettings(target.url);
  const tls = libpqSslSettings(url, env);
  return {
    connectionString: tls.url,
    ...(tls.ssl === undefined ? {} : { ssl: tls.ssl }),
    ...(tls.stream === undefined ? {} : { stream: tls.stream }),
    options: [urlOptions, `-c search_path=${target.schema}`].filter(Boolean).join(" "),
    ...(queryTimeoutMs === undefined ? {} : { query_timeout: queryTimeoutMs }),
    application_name: applicationName,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    // TCP keepalive: a connection that died silently (failover, a NAT or firewall that
    // dropped it) is found out by the kernel instead of looking idle for hours; the LISTEN
    // connection, which only waits, depends on it.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

/** Server settings the service sets per pool: a URL's own go before ours in `options`. */
const SERVER_SETTINGS = [
  "statement_timeout",
  "lock_timeout",
  "idle_in_transaction_session_timeout",
];

/**
 * The URL without the parameters that would replace the service's own settings, and those
 * settings: its `options`, with `statement_timeout`, `lock_timeout` and
 * `idle_in_transaction_session_timeout` as `-c` settings after them (so the service's,
 * which follow, win where it sets one), and its `query_timeout` (used where the service
 * sets none, if it is a number of ms). The rest of the URL is left byte for byte; its
 * query is what lies between the first `?` and a `#` (a `?` in a password has to be
 * percent-encoded).
 */
export function splitUrlSettings(url: string): {
  url: string;
  options?: string;
  queryTimeoutMs?: number;
} {
  const fragmentStart = url.indexOf("#");
  const beforeFragment = fragmentStart < 0 ? url : url.slice(0, fragmentStart);
  const queryStart = beforeFragment.indexOf("?");
  if (queryStart < 0) return { url };
  const query = beforeFragment.slice(queryStart + 1);
  const parameters = new URLSearchParams(query);
  // Always taken out: left in, pg would put it over every pool's own. Used only as a
  // whole number of ms that a timer can hold; anything else ("30s", empty) would make
  // every statement time out at once, or none ever.
  const queryTimeout = parameters.get("query_timeout");
  const usableQueryTimeout =
    queryTimeout !== null && /^\d+$/.test(queryTimeout) && Number(queryTimeout) <= 2_147_483_647;
  const taken = new Set(["options", "query_timeout", ...SERVER_SETTINGS]);
  if (![...parameters.keys()].some((key) => taken.has(key))) return { url };
  const settings = [
    ...parameters.getAll("options"),
    ...SERVER_SETTINGS.flatMap((name) =>
      parameters
        .getAll(name)
        // An empty value was ignored by pg; sent, the server would refuse every connection.
        .filter((value) => value !== "")
        .map((value) => `-c ${name}=${value.replace(/[\\\s]/g, "\\$&")}`),
    ),
  ].filter((setting) => setting !== "");
  // An empty part (`&&`) has no key and goes too: it meant nothing to pg either.
  const kept = query.split("&").filter((part) => {
    const [key] = [...new URLSearchParams(part).keys()];
    return key !== undefined && !taken.has(key);
  });
  return {
    url: `${beforeFragment.slice(0, queryStart)}${kept.length > 0 ? `?${kept.join("&")}` : ""}${url.slice(beforeFragment.length)}`,
    ...(settings.length > 0 ? { options: settings.join(" ") } : {}),
    ...(usableQueryTimeout ? { queryTimeoutMs: Number(queryTimeout) } : {}),
  };
}

export interface PoolOptions {
  /** Most connections at once (10 unless given). */
  max?: number;
  /**
   * Bounds both opening a connection and waiting for a free one when all `max` are in
   * use (10 s unless given).
   */
  connectionTimeoutMs?: number;
  /**
   * Bounds only the wait for a free connection, when it should be longer than opening
   * one may take (see the worker's pool).
   */
  waitForConnectionMs?: number;
  /** Every statement of the pool's sessions waits at most this long for a lock. */
  lockTimeoutMs?: number;
  /**
   * The longest a statement may go without an answer; then it fails and its connection is
   * closed. Without it a statement sent on a connection that died without a word (no RST:
   * a failover, a dropped NAT entry) waits forever: the worker's claim did, and with it
   * the worker, while readiness kept answering 200. The server cancels the statement a
   * little earlier (statement_timeout): a client that gave up alone would leave it waiting
   * on the server, where it could still commit (a claim for a worker that was told it
   * failed, an outcome its worker had given up on).
   */
  queryTimeoutMs?: number;
}

export function createPool(
  target: PostgresTarget,
  applicationName: string,
  options: PoolOptions = {},
): pg.Pool {
  const {
    max = 10,
    connectionTimeoutMs,
    waitForConnectionMs,
    lockTimeoutMs,
    queryTimeoutMs,
  } = options;
  const config = connectionConfig(target, applicationName);
  if (connectionTimeoutMs !== undefined) config.connectionTimeoutMillis = connectionTimeoutMs;
  // A transaction may still set its own (SET LOCAL), as the migrator does.
  if (lockTimeoutMs !== undefined) config.options += ` -c lock_timeout=${lockTimeoutMs}`;
  if (queryTimeoutMs !== undefined) {
    config.query_timeout = queryTimeoutMs;
    const serverMs = Math.max(1, queryTimeoutMs - Math.min(1000, Math.floor(queryTimeoutMs / 2)));
    config.options += ` -c statement_timeout=${serverMs}`;
  }
  const pool = new pg.Pool({
    ...config,
    max,
    ...(waitForConnectionMs === undefined
      ? {}
      : waitLongerThanConnect(config, waitForConnectionMs)),
  });
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

/**
 * pg-pool reads one setting, connectionTimeoutMillis, for both the wait for a free
 * connection and the opening of a new one. The pool gets the wait; its clients keep their
 * own connect timeout, so a server that does not answer is still given up on in time.
 */
function waitLongerThanConnect(
  config: pg.ClientConfig,
  waitMs: number,
): { connectionTimeoutMillis: number; Client: typeof pg.Client } {
  const connectMs = config.connectionTimeoutMillis ?? CONNECT_TIMEOUT_MS;
  class ConnectBoundedClient extends pg.Client {
    constructor(clientConfig: pg.ClientConfig) {
      // pg-pool hides a password it was given (not enumerable): a spread would drop it.
      super({
        ...clientConfig,
        password: clientConfig.password,
        connectionTimeoutMillis: connectMs,
      });
    }
  }
  return { connectionTimeoutMillis: Math.max(waitMs, connectMs), Client: ConnectBoundedClient };
}

/**
 * A statement's answer took longer than it may: the connection went silent (a failover,
 * a firewall or NAT that dropped it without a word) or the server is overloaded.
 */
export class NoAnswerError extends Error {
  constructor(what: string, timeoutMs: number, options: { cause: unknown }) {
    super(
      `no answer from the PostgreSQL server within ${timeoutMs} ms to ${what}: the connection went silent (a failover, or a firewall or NAT that dropped it) or the server is overloaded; it was closed`,
      options,
    );
    this.name = "NoAnswerError";
  }
}

/**
 * `text` on `on`, given up after `timeoutMs` without an answer, with a NoAnswerError that
 * names `what`. For statements that a service with no query timeout of its own must not
 * wait on for as long as TCP keepalive takes to find a dead connection (some 11 minutes).
 * A pool closes the connection of a statement given up on; a client checked out of one
 * must be released as broken.
 */
export async function queryAnswered<R extends pg.QueryResultRow = pg.QueryResultRow>(
  on: pg.Pool | pg.ClientBase,
  what: string,
  timeoutMs: number,
  text: string,
  values: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  // pg reads a query's own query_timeout; its types do not list it.
  const query = { text, values, query_timeout: timeoutMs } as pg.QueryConfig;
  try {
    return await on.query<R>(query);
  } catch (error) {
    // pg's words for it; no code.
    if (error instanceof Error && error.message === "Query read timeout") {
      throw new NoAnswerError(what, timeoutMs, { cause: error });
    }
    throw error;
  }
}
