import { afterEach, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import {
  adminQuery,
  describePostgres,
  freshSchemaPerTest,
  testDatabaseUrl,
} from "../support/postgres.js";

describePostgres("the callback route on a PostgreSQL inbox", () => {
  const fresh = freshSchemaPerTest("route");
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("answers 202 once the callback is committed, and 503 with Retry-After when PostgreSQL refuses the write", async () => {
    harness = await startHarness({
      env: { STORE_URL: testDatabaseUrl, PG_SCHEMA: fresh.name },
      service: { worker: false },
    });
    // The start-up line names the schema the tables are in.
    const started = harness.startupLine();
    expect(started?.pgSchema).toBe(fresh.name);
    const accepted = await harness.post(makeCallback());
    expect(accepted.status).toBe(202);
    const [row] = await adminQuery(
      `SELECT state FROM ${fresh.name}.kreditcheck_jobs WHERE id = $1`,
      [accepted.body.id],
    );
    expect(row).toEqual({ state: "pending" });

    // The database answers, but every new row is refused.
    await adminQuery(
      `ALTER TABLE ${fresh.name}.kreditcheck_jobs ADD CONSTRAINT refuse_new CHECK (received_at < '2000-01-01') NOT VALID`,
    );
    const refused = await fetch(`${harness.service.url}/callbacks/kreditcheck`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(makeCallback()),
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("5");
    expect(await refused.json()).toMatchObject({ error: "store_unavailable" });
    expect(harness.logs.text()).toContain("[23514]");
  });

  it("says so when a dead job's kept bundle cannot be read back and the retry starts afresh", async () => {
    harness = await startHarness({
      env: { STORE_URL: testDatabaseUrl, PG_SCHEMA: fresh.name },
      service: { worker: false },
    });
    const inbox = harness.service.inbox;
    const id = String((await harness.post(makeCallback())).body.id);
    await inbox.claim("worker:1", 1, 60_000);
    // The json column took the escape; reading the bundle out of it does not (22P05).
    const bundle = { callback: { clientReference: "a\u0000b" }, kreditCheck: null };
    await inbox.fail(id, "worker:1", { message: "postgres_sink_rejected: 0x00" }, { bundle });
    const retried = await fetch(`${harness.service.adminUrl}/admin/jobs/${id}/retry`, {
      method: "POST",
    });
    expect(retried.status).toBe(200);
    expect(await retried.json()).toEqual({
      requeued: true,
      id,
      previousState: "dead",
      fresh: true,
    });
    const line = harness.logs
      .lines()
      .find((entry) => String(entry.msg).startsWith("job re-queued"));
    expect(line).toMatchObject({
      jobId: id,
      level: 40,
      fresh: true,
      msg: expect.stringContaining("could not be read back"),
    });
  });
});
