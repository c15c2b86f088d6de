import { afterEach, expect, it } from "vitest";
import { createPool } from "../../src/postgres/pool.js";
import { describePostgres, testDatabaseUrl } from "../support/postgres.js";

describePostgres("PostgreSQL pool: waiting for a free connection", () => {
  const pools: { end(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.allSettled(pools.splice(0).map((pool) => pool.end()));
  });

  it("lets a statement wait for a busy pool's connection longer than opening one may take", async () => {
    // One connection, held for a second (as by a statement waiting out a lock). Held idle,
    // not by a slow statement: a statement's snapshot would keep other test files' dead
    // rows from being cleaned up meanwhile.
    const pool = createPool({ url: testDatabaseUrl, schema: "public" }, "kcr pool test", {
      max: 1,
      connectionTimeoutMs: 300,
      waitForConnectionMs: 5000,
    });
    pools.push(pool);
    const held = await pool.connect();
    setTimeout(() => held.release(), 1000);
    await expect(pool.query("SELECT 1 AS one")).resolves.toMatchObject({ rows: [{ one: 1 }] });
  });

  it("gives up waiting for one at connectionTimeoutMs when no longer wait was asked for", async () => {
    const pool = createPool({ url: testDatabaseUrl, schema: "public" }, "kcr pool test", {
      max: 1,
      connectionTimeoutMs: 300,
    });
    pools.push(pool);
    const held = await pool.connect();
    try {
      await expect(pool.query("SELECT 1")).rejects.toThrow(
        "timeout exceeded when trying to connect",
      );
    } finally {
      held.release();
    }
  });
});
