import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { describePostgres, freshSchemaPerTest, testDatabaseUrl } from "../support/postgres.js";
import { startSwitchableRelay } from "../support/tcp-relay.js";
import { waitFor } from "../support/wait-for.js";

/**
 * How the inbox is made unwritable, for real: a second connection takes SQLite's write
 * lock on the inbox file and keeps it, as a backup tool, a stuck admin session or a
 * second process on the same file would. The service's own write transaction then fails
 * inside the driver (SQLITE_BUSY after its busy_timeout of 5 s), the same path a full disk
 * or an I/O error takes. Making the file read-only would not do: the service's open file
 * descriptors keep their write access.
 */
function holdWriteLock(path: string): { release(): void } {
  const blocker = new Database(path);
  blocker.exec("BEGIN IMMEDIATE");
  return {
    release() {
      blocker.exec("ROLLBACK");
      blocker.close();
    },
  };
}

describe("store failure: the inbox cannot be written", () => {
  let harness: Harness | undefined;
  let lock: { release(): void } | undefined;
  afterEach(async () => {
    lock?.release();
    lock = undefined;
    await harness?.close();
    harness = undefined;
  });

  it("answers 503 with Retry-After (never 4xx, never 202) and recovers without a restart once the store is back", async () => {
    // Each write attempt blocks for the driver's busy_timeout (5 s); an idle worker that
    // polls only every 10 s keeps its claims from adding more of them while the lock is held.
    harness = await startHarness({ env: { WORKER_POLL_MS: "10000" } });
    const h = harness;
    const warmUp = makeCallback();
    expect((await h.post(warmUp)).status).toBe(202);
    await h.waitForBundle(String(warmUp.kreditCheckId));

    lock = holdWriteLock(h.config.store.sqlitePath);
    const refused = Array.from({ length: 2 }, () => makeCallback());
    const readinessWhileLocked = fetch(`${h.service.adminUrl}/readyz`);
    const answers = await Promise.all(
      refused.map((callback) =>
        fetch(`${h.service.url}${h.config.http.callbackPath}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(callback),
        }),
      ),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await answer.json()).toMatchObject({ error: "store_unavailable" });
    }
    expect(h.logs.lines().some((line) => String(line.msg).includes("callback NOT accepted"))).toBe(
      true,
    );
    // Readiness writes too, so a load balancer stops sending while the store is stuck.
    const notReady = await readinessWhileLocked;
    expect(notReady.status).toBe(503);
    expect(((await notReady.json()) as { checks: { inbox: string } }).checks.inbox).toMatch(
      /cannot write/,
    );

    lock.release();
    lock = undefined;
    expect((await fetch(`${h.service.adminUrl}/readyz`)).status).toBe(200);

    // The same service, not restarted: the refused callbacks are sent again, as a
    // retrying sender would, and everything is stored and delivered.
    for (const callback of refused) expect((await h.post(callback)).status).toBe(202);
    for (const callback of refused) await h.waitForBundle(String(callback.kreditCheckId));
    // The bundle file is written just before the job is marked done.
    await waitFor(async () => (await h.service.inbox.countByState()).done === 3, "three jobs done");
    expect(await h.service.inbox.countByState()).toMatchObject({
      done: 3,
      pending: 0,
      running: 0,
      dead: 0,
    });
  });

  it("keeps the process answering while the lock is held: /readyz says 503 at once, /healthz stays alive", async () => {
    // The worker polls as it does by default, only faster: every poll claims (a write).
    harness = await startHarness({ env: { WORKER_POLL_MS: "100" } });
    const h = harness;
    const probe = async (path: string) => (await fetch(`${h.service.adminUrl}${path}`)).status;
    // Idle, so nothing but the probes and the worker's claims writes. A claim commits
    // without fsync, so the FULL commit that makes it durable (BOOKKEEPING_SYNC_MS later)
    // falls while the lock is held too.
    lock = holdWriteLock(h.config.store.sqlitePath);
    // Probes as an orchestrator sends them, over a few of the worker's polls. Each round is
    // timed whole, its pause too: better-sqlite3 waits for a lock on the event loop's
    // thread, and a wait that began between two probes delays the next one as much.
    const until = performance.now() + 2000;
    while (performance.now() < until) {
      const startedAt = performance.now();
      expect(await Promise.all([probe("/readyz"), probe("/healthz")])).toEqual([503, 200]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Far from the 5 s busy_timeout a write waited before (and the HEALTHCHECK's 3 s).
      // A round takes 0.7-0.8 s on an idle machine: the probe's write and each of the
      // worker's claims wait SHORT_LOCK_WAIT_MS (200 ms) on the loop; 2 s leaves room for a
      // loaded CI host without letting a 5 s wait through.
      expect(performance.now() - startedAt).toBeLessThan(2000);
    }

    lock.release();
    lock = undefined;
    expect(await probe("/readyz")).toBe(200);
  });
});

describePostgres("store failure: the PostgreSQL inbox cannot be reached", () => {
  const fresh = freshSchemaPerTest("storefail");
  let harness: Harness | undefined;
  let relay: Awaited<ReturnType<typeof startSwitchableRelay>> | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
    await relay?.close();
    relay = undefined;
  });

  it.each([
    ["dropped", "drop"],
    ["refused", "refuse"],
  ] as const)(
    "answers 503 with Retry-After (never 4xx, never 202) while connections are %s, and recovers without a restart",
    async (_, how) => {
      const database = new URL(testDatabaseUrl);
      relay = await startSwitchableRelay({
        host: database.hostname,
        port: Number(database.port || 5432),
      });
      const viaRelay = new URL(testDatabaseUrl);
      viaRelay.hostname = "127.0.0.1";
      viaRelay.port = String(relay.port);
      harness = await startHarness({
        env: { STORE_URL: viaRelay.href, PG_SCHEMA: fresh.name, WORKER_POLL_MS: "200" },
      });
      const h = harness;
      const warmUp = makeCallback();
      expect((await h.post(warmUp)).status).toBe(202);
      await h.waitForBundle(String(warmUp.kreditCheckId));

      // PostgreSQL goes away: open connections die, new ones are dropped at once or refused.
      await relay.cut(how);
      const refused = Array.from({ length: 3 }, () => makeCallback());
      for (const callback of refused) {
        const answer = await fetch(`${h.service.url}${h.config.http.callbackPath}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(callback),
        });
        expect(answer.status).toBe(503);
        expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
        expect(await answer.json()).toMatchObject({ error: "store_unavailable" });
        // A load balancer is told to stop sending.
        expect((await fetch(`${h.service.adminUrl}/readyz`)).status).toBe(503);
      }
      // The store was really tried, not answered from a cached verdict.
      if (how === "drop") expect(relay.dropped).toBeGreaterThan(0);
      expect(
        h.logs.lines().some((line) => String(line.msg).includes("callback NOT accepted")),
      ).toBe(true);

      // PostgreSQL is back; the same service, not restarted, takes callbacks again.
      await relay.restore();
      await waitFor(
        async () => (await fetch(`${h.service.adminUrl}/readyz`)).status === 200,
        "ready again",
      );
      for (const callback of refused) expect((await h.post(callback)).status).toBe(202);
      for (const callback of refused) await h.waitForBundle(String(callback.kreditCheckId));
      await waitFor(
        async () => (await h.service.inbox.countByState()).done === 4,
        "four jobs done",
      );
      expect(await h.service.inbox.countByState()).toMatchObject({
        done: 4,
        pending: 0,
        running: 0,
        dead: 0,
      });
    },
  );
});
