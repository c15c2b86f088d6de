import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterEach, beforeEach, describe, it } from "vitest";

/** The PostgreSQL server of PostgreSQL-backed tests, e.g. postgres://postgres@127.0.0.1:5432/test. */
export const testDatabaseUrl = process.env.TEST_DATABASE_URL ?? "";

/**
 * Without TEST_DATABASE_URL, PostgreSQL tests are skipped with a note, except in CI
 * (CI=true), where a failing test says they could not run: CI must prove them.
 */
export function describePostgres(name: string, body: () => void): void {
  if (!testDatabaseUrl) {
    if (process.env.CI === "true") {
      describe(name, () => {
        it("needs TEST_DATABASE_URL in CI", () => {
          throw new Error("TEST_DATABASE_URL is not set: CI must run the PostgreSQL tests");
        });
      });
      return;
    }
    console.warn(
      `[skip] ${name}: set TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests`,
    );
  }
  describe.skipIf(!testDatabaseUrl)(name, body);
}

/** A fresh schema name per test, so parallel test files never share tables. */
export function freshSchemaName(prefix: string): string {
  return `t_${prefix}_${process.pid}_${randomBytes(4).toString("hex")}`;
}

/** Runs one statement as the test's administrator (no schema on the search path). */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: testDatabaseUrl });
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** Drops a test schema, unless the test failed: then it stays for inspection. */
export async function dropSchema(schema: string, failed: boolean): Promise<void> {
  if (failed) {
    console.warn(`[keep] schema ${schema} kept for inspection because the test failed`);
    return;
  }
  // Identifiers cannot be bound; escaped instead.
  await adminQuery(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
}

/**
 * A fresh schema for every test of the enclosing describe, dropped afterwards unless the
 * test failed. Register it before the hooks that close inboxes and services: after-hooks
 * run in reverse, so the schema is dropped last.
 */
export function freshSchemaPerTest(prefix: string): { readonly name: string } {
  const state = { name: "", failed: false };
  beforeEach(({ onTestFailed }) => {
    state.failed = false;
    state.name = freshSchemaName(prefix);
    onTestFailed(() => {
      state.failed = true;
    });
  });
  afterEach(() => dropSchema(state.name, state.failed));
  return state;
}
