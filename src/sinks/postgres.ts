import type pg from "pg";
import { ReceiverError } from "../errors.js";
import { migrate } from "../postgres/migrate.js";
import { createPool, inTransaction, type PostgresTarget } from "../postgres/pool.js";
import { describePgError, sqlstateOf } from "../postgres/sqlstate.js";
import { SINK_MIGRATIONS, SINK_SQL } from "./postgres-schema.js";
import type { Bundle, Sink } from "./sink.js";

/**
 * Upserts each bundle into plain tables for SQL queries: one row per check in
 * kreditcheck_checks (the full KreditCheck as jsonb, verdict and rate as columns), one
 * per DAC case in kreditcheck_dac_reports, one per document (bytea) in
 * kreditcheck_documents. One transaction per bundle; writing it again converges.
 */
export class PostgresSink implements Sink {
  readonly name = "postgres";

  private constructor(private readonly pool: pg.Pool) {}

  /** Connects and creates or migrates the tables (safe with many replicas at once). */
  static async open(target: PostgresTarget): Promise<PostgresSink> {
    const pool = createPool(target, "kreditcheck-receiver postgres sink", 4);
    try {
      await migrate(pool, target.schema, SINK_MIGRATIONS);
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw new Error(`the postgres sink could not be set up: ${describePgError(error)}`, {
        cause: error,
      });
    }
    return new PostgresSink(pool);
  }

  async deliver(bundle: Bundle): Promise<void> {
    const { callback, kreditCheck } = bundle;
    const kreditCheckId = callback.kreditCheckId;
    const caseIds = Object.keys(bundle.dacReports);
    try {
      await inTransaction(this.pool, async (client) => {
        await client.query(SINK_SQL.upsertCheck, [
          kreditCheckId,
          callback.processToken,
          callback.clientReference ?? null,
          callback.status,
          textOrNull(kreditCheck?.overallVerdict),
          numberOrNull(kreditCheck?.rateAmount),
          kreditCheck === null ? null : JSON.stringify(kreditCheck),
          JSON.stringify(callback),
          JSON.stringify(bundle.problems),
          bundle.receivedAt,
          bundle.completedAt,
        ]);
        await client.query(SINK_SQL.deleteReports, [kreditCheckId]);
        if (caseIds.length > 0) {
          await client.query(SINK_SQL.insertReports, [
            kreditCheckId,
            caseIds,
            caseIds.map((caseId) => JSON.stringify(bundle.dacReports[caseId])),
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
      });
    } catch (error) {
      const code = sqlstateOf(error) ?? "";
      // Data the database refuses (22xxx, 23xxx) will be refused again: stop retrying.
      const permanent = code.startsWith("22") || code.startsWith("23");
      throw new ReceiverError(`the postgres sink could not write: ${describePgError(error)}`, {
        code: permanent ? "postgres_sink_rejected" : "postgres_sink_unavailable",
        retryable: !permanent,
        fix: permanent
          ? "the database refused the bundle's data; report it with the job's last error, then retry the dead job."
          : undefined,
        cause: error,
      });
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

function textOrNull(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/** finAPI sends rateAmount as a number; anything else is kept only in the jsonb column. */
function numberOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
