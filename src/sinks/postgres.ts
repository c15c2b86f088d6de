import pg from "pg";
import { untilAborted } from "../abortable.js";
import { redactUrl } from "../config.js";
import { ReceiverError } from "../errors.js";
import { type MigrateOptions, migrate } from "../postgres/migrate.js";
import { createPool, NoAnswerError, type PostgresTarget, queryAnswered } from "../postgres/pool.js";
import { describePgError, sqlstateOf, tlsFix } from "../postgres/sqlstate.js";
import { SINK_MIGRATIONS, SINK_SQL, sinkGrants } from "./postgres-schema.js";
import { storableJson, storableText, textReplacedProblem } from "./postgres-text.js";
import type { Bundle, DeliveryContext, Problem, Sink } from "./sink.js";

export interface PostgresSinkTarget extends PostgresTarget {
  /** The variable the URL came from: POSTGRES_SINK_URL, or STORE_URL without it. */
  variable: "POSTGRES_SINK_URL" | "STORE_URL";
  /** POSTGRES_SINK_TIMEOUT_MS: longest one delivery may take, connecting included. */
  timeoutMs: number;
}

/** Connections of the sink's pool; deliveries beyond it wait for one (within their time limit). */
const POOL_SIZE = 4;

/** Why a delivery was abandoned when its own time limit ran out (not the job's signal). */
class DeliveryDeadline extends Error {}

/** Where a delivery was when it failed. */
type Phase = "waiting" | "connecting" | "writing";

/**
 * Upserts each bundle into plain tables for SQL queries: one row per check in
 * kreditcheck_checks (the full KreditCheck as jsonb, verdict and rate as columns), one
 * per DAC case in kreditcheck_dac_reports, one per document (bytea) in
 * kreditcheck_documents. One transaction per bundle; writing it again converges.
 *
 * Each delivery is bounded by POSTGRES_SINK_TIMEOUT_MS and by the job's signal (shutdown,
 * a lost lease): a lock another session holds on a table would otherwise keep it waiting
 * forever, its lease renewed and shutdown waiting for it.
 */
export class PostgresSink implements Sink {
  readonly name = "postgres";

  private constructor(
    private readonly pool: pg.Pool,
    private readonly target: PostgresSinkTarget,
    /** The database user it writes as, named in the GRANTs of a missing privilege's fix. */
    private readonly role: string,
  ) {}

  /**
   * Connects and creates or migrates the tables (safe with many replicas at once).
   * `timeouts`: the migration's lock wait, and how long a statement of start-up may go
   * unanswered (tests shorten them).
   */
  static async open(
    target: PostgresSinkTarget,
    timeouts: MigrateOptions = {},
  ): Promise<PostgresSink> {
    // No query timeout: a delivery's own deadline closes its connection (see write).
    const pool = createPool(target, "kreditcheck-receiver postgres sink", {
      max: POOL_SIZE,
      connectionTimeoutMs: target.timeoutMs,
    });
    let role: string | undefined;
    try {
      // The first contact: a failure without a server's answer means it was not reached.
      // Bounded, as the migrator's statements are: a connection that went silent right
      // after it was opened would hold start-up until TCP keepalive gave up.
      const { rows } = await queryAnswered<{ role: string }>(
        pool,
        "SELECT current_user",
        timeouts.answerTimeoutMs ?? 10_000,
        "SELECT current_user AS role",
      );
      role = rows[0]?.role ?? "<the user in the URL>";
      await migrate(pool, target.schema, SINK_MIGRATIONS, timeouts);
    } catch (error) {
      await pool.end().catch(() => undefined);
      const problem =
        role === undefined &&
        !(error instanceof pg.DatabaseError) &&
        !(error instanceof NoAnswerError)
          ? `${pgErrorText(error)} (${connectFix(error, target)})`
          : setupProblem(error, target, role ?? "<the user in the URL>");
      throw new Error(`the postgres sink could not be set up: ${problem}`, { cause: error });
    }
    return new PostgresSink(pool, target, role);
  }

  async deliver(bundle: Bundle, ctx: DeliveryContext): Promise<void> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new DeliveryDeadline()), this.target.timeoutMs);
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, deadline.signal]) : deadline.signal;
    // Every connection busy: this delivery waits for one before it can connect or write.
    let phase: Phase =
      this.pool.idleCount === 0 && this.pool.totalCount >= POOL_SIZE ? "waiting" : "connecting";
    try {
      signal.throwIfAborted();
      // A connection that arrives after the delivery gave up is handed straight back.
      const client = await untilAborted(this.pool.connect(), signal, (late) => late.release());
      phase = "writing";
      await this.write(client, bundle, signal);
    } catch (error) {
      // Shutdown or a lost lease: the worker knows why, and gives the job back or drops it.
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      throw this.failure(error, phase);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /**
   * One transaction on `client`. When `signal` aborts, the connection is closed, never
   * returned to the pool with a statement still running: the server rolls the transaction
   * back, and its statement_timeout ends a statement still waiting for a lock.
   */
  private async write(client: pg.PoolClient, bundle: Bundle, signal: AbortSignal): Promise<void> {
    let destroy = false;
    try {
      await untilAborted(this.transaction(client, bundle), signal);
    } catch (error) {
      if (signal.aborted) destroy = true;
      else {
        await untilAborted(client.query("ROLLBACK"), signal).catch(() => {
          destroy = true;
        });
      }
      throw error;
    } finally {
      client.release(destroy);
    }
  }

  private async transaction(client: pg.PoolClient, bundle: Bundle): Promise<void> {
    const { callback, kreditCheck } = bundle;
    const kreditCheckId = callback.kreditCheckId;
    const caseIds = Object.keys(bundle.dacReports);
    const stored = storableBundle(bundle);
    // Bounded on the server too, for this transaction only (a whole number from the config).
    const ms = this.target.timeoutMs;
    await client.query(
      `BEGIN; SET LOCAL statement_timeout = ${ms}; SET LOCAL lock_timeout = ${ms}`,
    );
    // kreditcheck_id, process_token and the caseIds are safe ids (checked at the door and
    // before fetching); the other text columns may come from finAPI's data.
    await client.query(SINK_SQL.upsertCheck, [
      kreditCheckId,
      callback.processToken,
      nullableText(callback.clientReference ?? null),
      storableText(callback.status),
      nullableText(textOrNull(kreditCheck?.overallVerdict)),
      numberOrNull(kreditCheck?.rateAmount),
      stored.kreditCheck,
      stored.callback,
      stored.problems,
      bundle.receivedAt,
      bundle.completedAt,
    ]);
    await client.query(SINK_SQL.deleteReports, [kreditCheckId]);
    if (caseIds.length > 0) {
      await client.query(SINK_SQL.insertReports, [
        kreditCheckId,
        caseIds,
        caseIds.map((caseId) => stored.dacReports[caseId]),
      ]);
    }
    await client.query(SINK_SQL.deleteDocuments, [kreditCheckId]);
    for (const document of bundle.documents ?? []) {
      await client.query(SINK_SQL.insertDocument, [
        kreditCheckId,
        document.name,
        document.contentType,
        document.data,
      ]);
    }
    await client.query("COMMIT");
  }

  private failure(error: unknown, phase: Phase): ReceiverError {
    const timedOut = error instanceof DeliveryDeadline;
    if (timedOut && phase === "connecting") return this.unreachable(undefined);
    if (!timedOut && phase !== "writing") {
      // Before any statement ran: no answer from a server, or its refusal to let us in.
      return error instanceof pg.DatabaseError ? this.refused(error) : this.unreachable(error);
    }
    const code = sqlstateOf(error) ?? "";
    // 55P03: lock_timeout; 57014: statement_timeout (both set by transaction()).
    if (timedOut || code === "55P03" || code === "57014") {
      return this.timeout(phase, timedOut ? undefined : error);
    }
    // A missing privilege stays missing until someone grants it: retrying cannot help.
    if (code === "42501") {
      const { schema } = this.target;
      return new ReceiverError(`the postgres sink may not write: ${pgErrorText(error)}`, {
        code: "postgres_sink_forbidden",
        retryable: false,
        fix: `the database user ${identifier(this.role)} lacks a privilege on the postgres sink's tables; as their owner or a superuser, run: ${sinkGrants(schema, identifier(this.role))} then npm run cli -- retry --all-dead --code postgres_sink_forbidden.`,
        cause: error,
      });
    }
    // Data the database refuses (22xxx, 23xxx) will be refused again: stop retrying.
    const permanent = code.startsWith("22") || code.startsWith("23");
    return new ReceiverError(`the postgres sink could not write: ${describePgError(error)}`, {
      code: permanent ? "postgres_sink_rejected" : "postgres_sink_unavailable",
      retryable: !permanent,
      fix: permanent
        ? "the database refused the bundle's data; report it with the job's last error, then retry the dead job."
        : undefined,
      cause: error,
    });
  }

  /** No connection: a wrong host or port, a server that is down, or a network in the way. */
  private unreachable(error: unknown): ReceiverError {
    const { variable, url, timeoutMs } = this.target;
    const why =
      error === undefined
        ? ` within POSTGRES_SINK_TIMEOUT_MS=${timeoutMs} ms`
        : `: ${pgErrorText(error)}`;
    return new ReceiverError(
      `the postgres sink could not connect to ${variable} (${redactUrl(url)})${why}.`,
      {
        code: "postgres_sink_unreachable",
        retryable: true,
        fix: `${connectFix(error, this.target)}; the job is retried.`,
        cause: error,
      },
    );
  }

  /** The server answered, and would not let us in (login, database, too many connections). */
  private refused(error: unknown): ReceiverError {
    const { variable, url } = this.target;
    return new ReceiverError(
      `the postgres sink could not connect to ${variable} (${redactUrl(url)}): ${describePgError(error)}`,
      { code: "postgres_sink_unavailable", retryable: true, cause: error },
    );
  }

  private timeout(phase: Phase, serverError: unknown): ReceiverError {
    const { schema, timeoutMs } = this.target;
    const detail =
      serverError !== undefined
        ? ` (${pgErrorText(serverError)})`
        : phase === "waiting"
          ? ` (all ${POOL_SIZE} of its connections were busy with earlier writes)`
          : "";
    return new ReceiverError(
      `the postgres sink did not finish writing within POSTGRES_SINK_TIMEOUT_MS=${timeoutMs} ms${detail}: most likely another session holds a lock on its tables in schema ${schema} (LOCK TABLE, ALTER TABLE, VACUUM FULL, or a transaction left open), or the server is overloaded.`,
      {
        code: "postgres_sink_timeout",
        retryable: true,
        fix: `find the session holding the lock: SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE relation = '${schema}.kreditcheck_checks'::regclass AND granted); end its transaction (or SELECT pg_terminate_backend(<pid>)); the job is retried. Raise POSTGRES_SINK_TIMEOUT_MS only if writes are merely slow.`,
        cause: serverError,
      },
    );
  }
}

/**
 * The bundle's JSON columns as jsonb accepts them: U+0000 and lone surrogates replaced by
 * U+FFFD, each part that had some named in a `problems` entry of the stored row. PostgreSQL
 * refuses them (22P05, 22P02) and would refuse them on every retry, so the check would
 * never reach the table; finAPI's data may hold them. `bundle` itself is left as it is:
 * the other sinks deliver finAPI's text unchanged.
 */
function storableBundle(bundle: Bundle): {
  kreditCheck: string | null;
  callback: string;
  problems: string;
  dacReports: Record<string, string>;
} {
  const added: Problem[] = [];
  const store = (at: (string | number)[], value: unknown, caseId?: string): string => {
    const { json, replaced } = storableJson(value);
    if (replaced > 0) added.push(textReplacedProblem(at, value, replaced, caseId));
    return json;
  };
  const kreditCheck =
    bundle.kreditCheck === null ? null : store(["kreditCheck"], bundle.kreditCheck);
  // The door refuses callbacks holding these; one accepted by an older release may not.
  const callback = store(["callback"], bundle.callback);
  const dacReports: Record<string, string> = {};
  for (const [caseId, report] of Object.entries(bundle.dacReports)) {
    dacReports[caseId] = store(["dacReports", caseId], report, caseId);
  }
  // The service's own problems may quote finAPI's text; the added entries hold none (their
  // paths are written as JSON escapes).
  const problems = storableJson([...bundle.problems, ...added]).json;
  return { kreditCheck, callback, problems, dacReports };
}

function nullableText(text: string | null): string | null {
  return text === null ? null : storableText(text);
}

/** What to check when the sink's server cannot be reached, naming the variable that was set. */
function unreachableFix({ variable }: PostgresSinkTarget): string {
  const which =
    variable === "STORE_URL"
      ? "STORE_URL (the postgres sink's database while POSTGRES_SINK_URL is unset)"
      : variable;
  return `the PostgreSQL server cannot be reached: check host and port in ${which}, that PostgreSQL runs there, and that this machine can reach it (DNS, firewall, listen_addresses)`;
}

/** What to check when no connection came about: its TLS, or else whether the server is reached. */
function connectFix(error: unknown, target: PostgresSinkTarget): string {
  return tlsFix(error)?.replace(/\.$/, "") ?? unreachableFix(target);
}

/**
 * Start-up needs CREATE on the schema only for what is missing (the schema itself needs
 * CREATE on the database); with every table there, the sink's grants and SELECT on the
 * migrations ledger are enough. A refusal says both ways.
 */
function setupProblem(error: unknown, target: PostgresSinkTarget, role: string): string {
  if (sqlstateOf(error) !== "42501") return describePgError(error);
  const { schema } = target;
  const user = identifier(role);
  return `${pgErrorText(error)} (the database user ${user} lacks a privilege: to create the postgres sink's tables it needs CREATE on schema ${schema}, and CREATE on the database while the schema does not exist; to use tables created by someone else, run as their owner or a superuser: ${sinkGrants(schema, user)} GRANT SELECT ON ${schema}.kreditcheck_schema_migrations TO ${user};)`;
}

/** `[SQLSTATE] message`, without describePgError's generic fix. */
function pgErrorText(error: unknown): string {
  const code = sqlstateOf(error);
  const message = error instanceof Error ? error.message : String(error);
  return code ? `[${code}] ${message}` : message;
}

/** A role name as GRANT takes it: quoted unless it is a plain lower-case identifier. */
function identifier(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : pg.escapeIdentifier(name);
}

function textOrNull(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/** finAPI sends rateAmount as a number; anything else is kept only in the jsonb column. */
function numberOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
