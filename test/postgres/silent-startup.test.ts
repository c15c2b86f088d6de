import { afterEach, expect, it } from "vitest";
import { openInbox } from "../../src/inbox/open-inbox.js";
import { PostgresSink } from "../../src/sinks/postgres.js";
import { describePostgres, freshSchemaPerTest, testDatabaseUrl } from "../support/postgres.js";
import { startRelayThatGoesSilentAt } from "../support/tcp-relay.js";

/** Short enough for a test; the service waits 15 s for the lock and 10 s more for an answer. */
const TIMEOUTS = { lockTimeoutMs: 200, answerTimeoutMs: 300 };

/** How `promise` settled within `ms`: its error, or "still waiting". */
async function failureWithin(promise: Promise<unknown>, ms: number): Promise<Error | string> {
  let timer: NodeJS.Timeout | undefined;
  const waiting = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("still waiting"), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => "opened",
        (error: unknown) => error as Error,
      ),
      waiting,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describePostgres("PostgreSQL start-up on a connection that goes silent", () => {
  const schema = freshSchemaPerTest("silent");
  const relays: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    // Closing the relay closes the server's side too: its transaction is rolled back.
    await Promise.all(relays.splice(0).map((relay) => relay.close()));
  });

  /** The test database's URL, with a password, through a relay that goes silent at `text`. */
  async function urlSilentAt(text: string): Promise<string> {
    const target = new URL(testDatabaseUrl);
    const relay = await startRelayThatGoesSilentAt(
      { host: target.hostname, port: Number(target.port || 5432) },
      text,
    );
    relays.push(relay);
    const url = new URL(testDatabaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String(relay.port);
    url.password = "s3cret-pw";
    return url.toString();
  }

  for (const [statement, what] of [
    ["BEGIN", "BEGIN"],
    ["pg_advisory_xact_lock", "the migration lock"],
    ["to_regclass", "the look for the migrations ledger"],
    ["max(version)", "the read of the migrations ledger"],
  ] as const) {
    it(`stops the inbox's start-up when ${statement} gets no answer, naming STORE_URL and what happened`, async () => {
      const url = await urlSilentAt(statement);
      const failure = await failureWithin(
        openInbox(
          { kind: "postgres", url, schema: schema.name, sqlitePath: "" },
          { migrationTimeouts: TIMEOUTS },
        ),
        5000,
      );
      expect(failure).toBeInstanceOf(Error);
      const message = (failure as Error).message;
      expect(message).toMatch(
        new RegExp(
          `^STORE_URL=postgres://[^:/]+:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/\\w+: the PostgreSQL inbox could not be opened: no answer from the PostgreSQL server within 500 ms to ${what} \\(migrating schema "${schema.name}"\\): the connection went silent`,
        ),
      );
      expect(message).not.toContain("s3cret-pw");
    });
  }

  for (const [statement, what] of [
    ["current_user", "SELECT current_user"],
    ["pg_advisory_xact_lock", `the migration lock`],
  ] as const) {
    it(`stops the postgres sink's start-up when ${statement} gets no answer, saying what happened`, async () => {
      const url = await urlSilentAt(statement);
      const failure = await failureWithin(
        PostgresSink.open(
          { url, schema: schema.name, variable: "POSTGRES_SINK_URL", timeoutMs: 5000 },
          TIMEOUTS,
        ),
        5000,
      );
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).toMatch(
        new RegExp(
          `^the postgres sink could not be set up: no answer from the PostgreSQL server within \\d+ ms to ${what}.*: the connection went silent`,
        ),
      );
    });
  }
});
