import { afterEach, expect, it } from "vitest";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import { type ChildScript, freePort, spawnService } from "../support/child-service.js";
import { makeCallback } from "../support/harness.js";
import {
  adminQuery,
  describePostgres,
  freshSchemaPerTest,
  testDatabaseUrl,
} from "../support/postgres.js";
import { waitFor } from "../support/wait-for.js";

type Replica = ChildScript;

/** One service process on a port of its own, configured by env only, as in production. */
async function startReplica(env: Record<string, string>): Promise<Replica> {
  const ports = { PORT: String(await freePort()), ADMIN_PORT: "0" };
  return spawnService(
    { ...env, ...ports, HOST: "127.0.0.1", ALLOWED_CIDRS: "127.0.0.1/32" },
    { captureStdout: true },
  );
}

async function post(
  replica: Replica,
  callback: unknown,
): Promise<{ status: number; duplicate: boolean }> {
  const response = await fetch(`${replica.url}/callbacks/kreditcheck`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(callback),
  });
  const body = (await response.json()) as { duplicate?: boolean };
  return { status: response.status, duplicate: body.duplicate === true };
}

/** Sends every request, at most `limit` at a time. */
async function sendAll<T>(
  items: T[],
  limit: number,
  send: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await send(items[next++] as T);
    }),
  );
}

describePostgres("two replicas on one PostgreSQL database", () => {
  const fresh = freshSchemaPerTest("replicas_e2e");
  let simulator: RunningSimulator | undefined;
  let replicas: Replica[] = [];
  afterEach(async () => {
    await Promise.allSettled(replicas.map((replica) => replica.stop()));
    replicas = [];
    await simulator?.close();
  });

  const start = async (options: { latencyMs: number }) => {
    simulator = await startSimulator({ latencyMs: options.latencyMs, jitterMs: options.latencyMs });
    const env = {
      STORE_URL: testDatabaseUrl,
      PG_SCHEMA: fresh.name,
      SINKS: "postgres",
      FINAPI_TOKEN_URL: simulator.tokenUrl,
      FINAPI_PROCESSCTRL_URL: simulator.processctrlUrl,
      FINAPI_DI_URL: simulator.diUrl,
      FINAPI_CLIENT_ID: simulator.clientId,
      FINAPI_CLIENT_SECRET: simulator.clientSecret,
      WORKER_CONCURRENCY: "8",
      WORKER_POLL_MS: "200",
      LEASE_MS: "2000",
      BACKOFF_BASE_MS: "50",
      BACKOFF_MAX_MS: "500",
      LOG_LEVEL: "info",
    };
    replicas = await Promise.all([startReplica(env), startReplica(env)]);
    return replicas as [Replica, Replica];
  };

  const stored = async () =>
    (
      await adminQuery<{ count: number }>(
        `SELECT count(*)::int AS count FROM ${fresh.name}.kreditcheck_checks`,
      )
    )[0]?.count ?? 0;

  it("delivers 500 callbacks, 10% sent twice across replicas, exactly once and fetches each KreditCheck once", async () => {
    const [first, second] = await start({ latencyMs: 5 });
    const callbacks = Array.from({ length: 500 }, () => makeCallback());
    const sends = callbacks.map((callback, index) => ({
      callback,
      to: index % 2 === 0 ? first : second,
    }));
    // Every tenth callback comes again, to the other replica.
    callbacks.forEach((callback, index) => {
      if (index % 10 === 0) sends.push({ callback, to: index % 2 === 0 ? second : first });
    });
    const answers: { status: number; duplicate: boolean }[] = [];
    await sendAll(sends, 20, async ({ callback, to }) => {
      answers.push(await post(to, callback));
    });
    expect(answers).toHaveLength(550);
    expect(answers.every((answer) => answer.status === 202)).toBe(true);
    expect(answers.filter((answer) => answer.duplicate)).toHaveLength(50);

    await waitFor(
      async () => (await stored()) === 500,
      "500 checks in the postgres sink",
      45_000,
      200,
    );
    const repeated = await adminQuery(
      `SELECT kreditcheck_id, deliveries FROM ${fresh.name}.kreditcheck_checks WHERE deliveries <> 1`,
    );
    expect(repeated).toEqual([]);
    const jobs = await adminQuery(
      `SELECT state, count(*)::int AS count FROM ${fresh.name}.kreditcheck_jobs GROUP BY state`,
    );
    expect(jobs).toEqual([{ state: "done", count: 500 }]);
    expect(simulator?.stats().calls.kreditcheck).toBe(500);
    // Both replicas did part of the work.
    for (const replica of [first, second]) {
      expect(
        replica.lines.filter((line) => line.includes('"msg":"check delivered"')).length,
      ).toBeGreaterThan(0);
    }
  });

  it("loses nothing when one replica is killed with SIGKILL mid-run", async () => {
    const [doomed, survivor] = await start({ latencyMs: 40 });
    const callbacks = Array.from({ length: 200 }, () => makeCallback());
    await sendAll(callbacks, 20, async (callback) => {
      const index = callbacks.indexOf(callback);
      expect((await post(index % 2 === 0 ? doomed : survivor, callback)).status).toBe(202);
    });
    await waitFor(async () => (await stored()) >= 20, "the first deliveries", 20_000, 50);
    doomed.child.kill("SIGKILL");
    await doomed.exited;
    const atKill = await stored();
    expect(atKill).toBeLessThan(200);

    await waitFor(
      async () => (await stored()) === 200,
      "all 200 checks in the postgres sink",
      45_000,
      200,
    );
    const jobs = await adminQuery(
      `SELECT state, count(*)::int AS count FROM ${fresh.name}.kreditcheck_jobs GROUP BY state`,
    );
    expect(jobs).toEqual([{ state: "done", count: 200 }]);
    // The survivor took over jobs the killed replica had leased.
    const takenOver = await adminQuery(
      `SELECT count(*)::int AS count FROM ${fresh.name}.kreditcheck_jobs WHERE attempts > 1`,
    );
    expect(takenOver[0]?.count).toBeGreaterThan(0);
  });
});
