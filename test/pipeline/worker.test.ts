import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ReceiverError } from "../../src/errors.js";
import { type Inbox, StoreUnavailableError } from "../../src/inbox/inbox.js";
import { SqliteInbox } from "../../src/inbox/sqlite/sqlite-inbox.js";
import type { CheckRun } from "../../src/pipeline/process-check.js";
import { Worker, type WorkerOptions } from "../../src/pipeline/worker.js";
import { sleep } from "../../src/sleep.js";
import { makeCallback } from "../support/harness.js";
import { captureLogs } from "../support/log-capture.js";
import { waitFor } from "../support/wait-for.js";

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("Worker", () => {
  let dir: string;
  let now: number;
  let inbox: SqliteInbox;
  let worker: Worker | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-worker-"));
    now = Date.now();
    inbox = new SqliteInbox({ path: join(dir, "inbox.db"), clock: () => now });
  });
  afterEach(async () => {
    await worker?.stop(100);
    await inbox.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A worker on the test's inbox and clock, these options over the defaults; started. */
  function startWorkerWith(options: Partial<WorkerOptions> & Pick<WorkerOptions, "handle">) {
    worker = new Worker({
      inbox,
      logger: captureLogs().logger,
      concurrency: 4,
      leaseMs: 60_000,
      pollMs: 20,
      policy: { maxAttempts: 5, maxAgeMs: 3_600_000, baseMs: 10, maxMs: 20 },
      clock: () => now,
      ...options,
    });
    worker.start();
    return worker;
  }

  function startWorker(
    handle: (run: CheckRun) => Promise<unknown>,
    maxAttempts = 5,
    pressure?: { busy(): boolean },
    busyStartIntervalMs = 0,
    onAttemptFailed?: (code: string, outcome: "retry" | "dead") => void,
  ) {
    return startWorkerWith({
      handle,
      ...(onAttemptFailed ? { onAttemptFailed } : {}),
      ...(pressure ? { pressure } : {}),
      busyStartIntervalMs,
      policy: { maxAttempts, maxAgeMs: 3_600_000, baseMs: 10, maxMs: 20 },
    });
  }

  it("does not run a job twice when its own lease lapsed while it was still running", async () => {
    const runs: string[] = [];
    let finish: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => {
      finish = resolve;
    });
    startWorker(async (run) => {
      runs.push(run.job.id);
      if (runs.length === 1) await blocked;
    });
    const first = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => runs.length === 1, "the first run");
    // The clock jumps past the lease (a blocked event loop, an NTP step...).
    now += 120_000;
    await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => runs.length >= 2, "the second job");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(runs.filter((id) => id === first.id)).toHaveLength(1);
    finish();
    await waitFor(async () => (await inbox.get(first.id))?.state === "done", "the first job done");
    expect(runs.filter((id) => id === first.id)).toHaveLength(1);
  });

  /**
   * A worker whose lease renewals reach the store only once `openGate()` is called (a
   * busy PostgreSQL, say). `renewals` holds the owner each was sent as and when each has
   * settled.
   */
  function startWorkerWithSlowRenewals(
    handle: (run: CheckRun) => Promise<unknown>,
    leaseMs: number,
  ) {
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    const renewals: { owner: string; settled: Promise<unknown> }[] = [];
    const slowRenew: SqliteInbox["renew"] = (id, owner, ms) => {
      const renewal = gate.then(() => inbox.renew(id, owner, ms));
      renewals.push({ owner, settled: renewal.catch(() => undefined) });
      return renewal;
    };
    const logs = captureLogs();
    startWorkerWith({
      inbox: Object.assign(Object.create(inbox) as SqliteInbox, { renew: slowRenew }),
      handle,
      logger: logs.logger,
      leaseMs,
    });
    return { openGate, renewals, logs };
  }

  it("stops a run whose callback a later one replaced, and runs the job again with the new callback", async () => {
    const runs: { status: string; aborted: () => boolean }[] = [];
    let finish: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const outcomes: string[] = [];
    startWorkerWith({
      handle: async (run) => {
        runs.push({ status: run.job.callback.status, aborted: () => run.signal.aborted });
        // The first run (a slow sink, say) holds on until the test lets it end.
        if (runs.length === 1) await blocked;
      },
      onJobFinished: (outcome) => outcomes.push(outcome),
    });
    const sent = makeCallback({ status: "IN_PROGRESS" });
    const { id } = await inbox.enqueue(sent as never, new Date(now));
    await waitFor(() => runs.length === 1, "the first run");
    const replaced = await inbox.enqueue({ ...sent, status: "SUCCESSFUL" } as never, new Date(now));
    expect(replaced).toMatchObject({ id, duplicate: false, replacedStatus: "IN_PROGRESS" });
    // Due once the old attempt's lease is out (its renewal, 20 s away here, would stop it
    // first). This worker claims the job again then: the run on the old callback, still
    // going, is stopped, not adopted.
    now += 61_000;
    await waitFor(() => runs[0]?.aborted(), "the first run stopped");
    finish();
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
    expect(runs.map((run) => run.status)).toEqual(["IN_PROGRESS", "SUCCESSFUL"]);
    expect(outcomes).toEqual(["replaced", "done"]);
  });

  it("stores the outcome again when the store failed it once, instead of running the job again after its lease", async () => {
    const runs: string[] = [];
    const complete = inbox.complete.bind(inbox);
    let failures = 1;
    // The connection that carried the outcome dropped (PostgreSQL terminated it, say).
    inbox.complete = async (...args) => {
      if (failures-- > 0)
        throw new StoreUnavailableError("inbox write failed: connection terminated");
      return complete(...args);
    };
    startWorker(async (run) => {
      runs.push(run.job.id);
    });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
    expect(runs).toEqual([id]);
  });

  it("keeps a run it adopted going when a renewal under the old lease comes back refused", async () => {
    let finish: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let aborted = false;
    const { openGate, renewals } = startWorkerWithSlowRenewals(async (run) => {
      run.signal.addEventListener("abort", () => {
        aborted = true;
      });
      await blocked;
    }, 1500);
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => renewals.length === 1, "a renewal on its way");
    // Meanwhile the lease lapses and this worker claims the job again (the run adopts it).
    now += 120_000;
    await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(
      async () => (await inbox.get(id))?.lockedBy !== renewals[0]?.owner,
      "the job claimed again",
    );
    openGate();
    // The stale renewal has come back refused, and the worker has handled that.
    await renewals[0]?.settled;
    await tick();
    expect(aborted).toBe(false);
    finish();
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
  });

  it("sends one lease renewal at a time while the store holds them, and goes on once it answers", async () => {
    let finish: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => {
      finish = resolve;
    });
    // A renewal every 20 ms; the store answers none until the gate opens.
    const { openGate, renewals } = startWorkerWithSlowRenewals(() => blocked, 60);
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => renewals.length === 1, "a renewal on its way");
    await sleep(200); // ten intervals
    expect(renewals).toHaveLength(1);
    openGate();
    await waitFor(() => renewals.length >= 3, "renewals going on after the store answered");
    finish();
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
  });

  it("does not report a lease lost when a renewal held up by a slow store comes back after the job was done", async () => {
    const { openGate, renewals, logs } = startWorkerWithSlowRenewals(
      // The job ends once a renewal is on its way.
      () => waitFor(() => renewals.length > 0, "a renewal on its way"),
      300,
    );
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
    openGate();
    await renewals[0]?.settled;
    await tick();
    expect(logs.text()).not.toContain("lease lost");
  });

  it("does not stop a job or report a lease lost when a renewal is refused while its stored outcome is being acknowledged", async () => {
    const refused: unknown[] = [];
    const slowAcknowledgement = Object.assign(Object.create(inbox) as SqliteInbox, {
      renew: ((id, owner, ms) =>
        inbox.renew(id, owner, ms).catch((error: unknown) => {
          refused.push(error);
          throw error;
        })) satisfies SqliteInbox["renew"],
      complete: (async (id, owner, progress) => {
        await inbox.complete(id, owner, progress);
        // Stored; the answer comes back late (a busy store), after a renewal was refused.
        await waitFor(() => refused.length > 0, "a renewal refused", 5000);
      }) satisfies SqliteInbox["complete"],
    });
    const logs = captureLogs();
    let aborted = false;
    startWorkerWith({
      inbox: slowAcknowledgement,
      handle: async (run) => {
        run.signal.addEventListener("abort", () => {
          aborted = true;
        });
      },
      logger: logs.logger,
      leaseMs: 300,
    });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => logs.text().includes("check delivered"), "the outcome acknowledged");
    expect((await inbox.get(id))?.state).toBe("done");
    expect({ aborted, leaseLostReported: logs.text().includes("lease lost") }).toEqual({
      aborted: false,
      leaseLostReported: false,
    });
  });

  it("starts the next checks' fetching while slow deliveries finish, holding at most 2 x concurrency jobs", async () => {
    let fetching = 0;
    let maxFetching = 0;
    let active = 0;
    let maxActive = 0;
    let releaseDeliveries: () => void = () => undefined;
    const deliveriesBlocked = new Promise<void>((resolve) => {
      releaseDeliveries = resolve;
    });
    startWorker(async (run) => {
      active += 1;
      maxActive = Math.max(maxActive, active);
      fetching += 1;
      maxFetching = Math.max(maxFetching, fetching);
      await new Promise((resolve) => setTimeout(resolve, 5));
      fetching -= 1;
      run.fetched?.();
      await deliveriesBlocked; // a sink that hangs until released
      active -= 1;
    });
    const jobs = await Promise.all(
      Array.from({ length: 12 }, () => inbox.enqueue(makeCallback() as never, new Date(now))),
    );
    // concurrency 4: four deliveries hang, four more checks are fetched meanwhile.
    await waitFor(() => maxActive === 8, "eight jobs active");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect({ maxActive, maxFetching }).toEqual({ maxActive: 8, maxFetching: 4 });
    releaseDeliveries();
    await waitFor(async () => (await inbox.countByState()).done === jobs.length, "every job done");
    expect({ maxActive, maxFetching }).toEqual({ maxActive: 8, maxFetching: 4 });
  });

  it("renews a long-running job's lease well before it runs out, so no other worker takes it over", async () => {
    const leaseMs = 600;
    const claimedAt: number[] = [];
    const renewedAt: number[] = [];
    startWorkerWith({
      inbox: Object.assign(Object.create(inbox) as SqliteInbox, {
        claim: async (...args: Parameters<SqliteInbox["claim"]>) => {
          const jobs = await inbox.claim(...args);
          if (jobs.length > 0) claimedAt.push(Date.now());
          return jobs;
        },
        renew: (...args: Parameters<SqliteInbox["renew"]>) => {
          renewedAt.push(Date.now());
          return inbox.renew(...args);
        },
      }),
      leaseMs,
      // A check that takes 2.5 leases (a slow finAPI, a slow sink).
      handle: () => new Promise((resolve) => setTimeout(resolve, 1500)),
    });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done", 5000);
    // Each lease was renewed before it ran out: the claim's, then each renewal's.
    expect(claimedAt).toHaveLength(1);
    expect(renewedAt.length).toBeGreaterThanOrEqual(3);
    const leasesFrom = [...claimedAt, ...renewedAt];
    const gaps = renewedAt.map((at, index) => at - (leasesFrom[index] as number));
    expect(gaps.filter((gap) => gap >= leaseMs)).toEqual([]);
  });

  it("counts a job taken over from a worker that died as an interrupted attempt, and runs it", async () => {
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    // Its worker is killed mid-attempt: the lease runs out with nobody at it.
    await inbox.claim("gone:1", 1, 60_000);
    now += 120_000;
    const counted: string[] = [];
    startWorker(
      async () => undefined,
      5,
      undefined,
      0,
      (code, outcome) => counted.push(`${code} ${outcome}`),
    );
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
    expect(counted).toEqual(["attempt_interrupted retry"]);
    expect((await inbox.get(id))?.attempts).toBe(2);
  });

  it("runs the last attempt of a job whose worker died on the one before", async () => {
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    // MAX_ATTEMPTS 2: the first attempt's worker dies; the takeover is attempt 2, the last.
    await inbox.claim("gone:1", 1, 60_000);
    now += 120_000;
    const ran: number[] = [];
    startWorker(async (run) => {
      ran.push(run.job.attempts);
    }, 2);
    await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
    expect(ran).toEqual([2]);
  });

  it("counts a re-queued job's age from its re-queue, so a retryable failure is retried, not final", async () => {
    // Received 2 hours ago, past maxAgeMs (1 hour); an operator re-queued it just now.
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now - 7_200_000));
    await inbox.claim("old:1", 1, 60_000);
    await inbox.fail(
      id,
      (await inbox.get(id))?.lockedBy ?? "",
      { message: "finapi_forbidden: 403" },
      {},
    );
    expect(await inbox.requeue(id)).toEqual({ fellBackToFresh: false });
    const outcomes: string[] = [];
    startWorker(
      async () => {
        throw new ReceiverError("finAPI is unavailable (503).", {
          code: "finapi_unavailable",
          retryable: true,
        });
      },
      5,
      undefined,
      0,
      (code, outcome) => outcomes.push(`${code} ${outcome}`),
    );
    await waitFor(() => outcomes.length > 0, "the attempt's outcome");
    expect(outcomes[0]).toBe("finapi_unavailable retry");
  });

  it("on stop, lets a running check finish within the timeout instead of cutting it off", async () => {
    let finished = false;
    // A check that takes 200 ms and stops when told to, as finAPI calls and sinks do.
    startWorker(async (run) => {
      await sleep(200, run.signal);
      finished = true;
    });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(id))?.state === "running", "the job running");
    await worker?.stop(5000);
    expect(finished).toBe(true);
    expect((await inbox.get(id))?.state).toBe("done");
  });

  it("starts a new callback's job at once, not at the next poll", async () => {
    const startedAt: number[] = [];
    startWorkerWith({
      pollMs: 60_000,
      handle: async () => {
        startedAt.push(Date.now());
      },
    });
    // The worker's first look found nothing; the next poll is a minute away.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const enqueuedAt = Date.now();
    await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => startedAt.length === 1, "the job started", 5000);
    expect((startedAt[0] as number) - enqueuedAt).toBeLessThan(2000);
  });

  it("runs an attempt granted past MAX_ATTEMPTS (a result awaited for its grace window)", async () => {
    const attempts: number[] = [];
    startWorker(async (run) => {
      attempts.push(run.job.attempts);
      if (attempts.length < 4) {
        throw new ReceiverError("the KreditCheck result is not available yet", {
          code: "result_not_ready",
          retryable: true,
          retryUntil: now + 600_000,
        });
      }
    }, 2);
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    // Time passes, so each retry falls due.
    const ticking = setInterval(() => {
      now += 50;
    }, 5);
    try {
      await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
    } finally {
      clearInterval(ticking);
    }
    expect(attempts).toEqual([1, 2, 3, 4]);
  });

  describe("a result awaited past MAX_ATTEMPTS whose worker died", () => {
    const graceMs = 600_000;
    /** Two 404s inside the grace window (MAX_ATTEMPTS=2), then a third attempt whose worker dies. */
    async function awaitedThenOrphaned(): Promise<{ id: string; receivedAt: number }> {
      const receivedAt = now;
      const notReady = () =>
        new ReceiverError("the KreditCheck result is not available yet", {
          code: "result_not_ready",
          retryable: true,
          retryUntil: receivedAt + graceMs,
        });
      const first = startWorker(async () => {
        throw notReady();
      }, 2);
      const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
      // Time passes, so the first retry falls due; the second waits.
      await waitFor(async () => (await inbox.get(id))?.attempts === 1, "the first 404");
      now += 1_000;
      await waitFor(async () => (await inbox.get(id))?.attempts === 2, "the second 404");
      await first.stop(100);
      worker = undefined;
      now += 1_000;
      // The granted third attempt: its worker claims it and is killed.
      expect(await inbox.claim("killed:3", 1, 60_000)).toHaveLength(1);
      now += 120_000;
      return { id, receivedAt };
    }

    it("runs it again while the grace window is open, instead of giving up", async () => {
      const { id } = await awaitedThenOrphaned();
      const ran: number[] = [];
      startWorker(async (run) => {
        ran.push(run.job.attempts);
      }, 2);
      await waitFor(async () => (await inbox.get(id))?.state === "done", "the job done");
      expect(ran).toEqual([4]);
    });

    it("gives up once the window has closed", async () => {
      const { id } = await awaitedThenOrphaned();
      now += graceMs;
      const ran: number[] = [];
      startWorker(async (run) => {
        ran.push(run.job.attempts);
      }, 2);
      await waitFor(async () => (await inbox.get(id))?.state === "dead", "the job given up");
      expect(ran).toEqual([]);
      expect((await inbox.get(id))?.lastErrorCodes).toEqual(["result_not_ready"]);
    });
  });

  it("runs a job again that its next claim took back while the failed run was storing its retry", async () => {
    // A retry due at once (1 ms backoff) and a store clock that moves on at every reading:
    // the claim the failed run's freed slot starts shares the retry's commit and takes the
    // job back while that run is still ending.
    const clock = () => {
      now += 5;
      return now;
    };
    await inbox.close();
    inbox = new SqliteInbox({ path: join(dir, "clocked.db"), clock });
    let runs = 0;
    startWorkerWith({
      concurrency: 1,
      clock,
      policy: { maxAttempts: 5, maxAgeMs: 86_400_000, baseMs: 1, maxMs: 1 },
      handle: async () => {
        runs += 1;
        await sleep(5);
        throw new ReceiverError("finAPI is unavailable (503).", {
          code: "finapi_unavailable",
          retryable: true,
        });
      },
    });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    // Five attempts in well under the 60 s lease: none left running with nobody at it.
    const dead = await waitFor(async () => {
      const job = await inbox.get(id);
      return job?.state === "dead" ? job : undefined;
    }, "the job given up after MAX_ATTEMPTS");
    expect(dead.attempts).toBe(5);
    expect(runs).toBe(5);
  });

  it("logs a retried and a dead attempt's error under the same fields, so one log query finds both", async () => {
    const logs = captureLogs();
    let attempt = 0;
    startWorkerWith({
      logger: logs.logger,
      handle: async () => {
        attempt += 1;
        throw new ReceiverError(`finAPI refused attempt ${attempt}`, {
          code: attempt === 1 ? "finapi_unavailable" : "finapi_rejected",
          retryable: attempt === 1,
        });
      },
    });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(() => logs.text().includes("will retry"), "the first attempt's retry");
    now += 1_000;
    await waitFor(async () => (await inbox.get(id))?.state === "dead", "the job given up");
    const failed = logs
      .lines()
      .filter((line) => line.msg === "attempt failed; will retry" || line.msg === "job is dead");
    expect(failed).toEqual([
      expect.objectContaining({
        code: "finapi_unavailable",
        error: expect.stringContaining("attempt 1"),
      }),
      expect.objectContaining({
        code: "finapi_rejected",
        error: expect.stringContaining("attempt 2"),
      }),
    ]);
  });

  it("gives up on a job whose last attempt's worker died, naming and keeping its last error's codes", async () => {
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await inbox.claim("gone:1", 1, 60_000);
    const failure = { message: "finapi_unavailable: 503", codes: ["finapi_unavailable"] };
    await inbox.retry(id, "gone:1", 0, failure, {});
    // Its second (last) attempt's worker dies: the lease runs out with nobody at it.
    await inbox.claim("gone:2", 1, 60_000);
    now += 120_000;
    const runs: string[] = [];
    const counted: string[] = [];
    startWorker(
      async (run) => {
        runs.push(run.job.id);
      },
      2,
      undefined,
      0,
      (code, outcome) => counted.push(`${code} ${outcome}`),
    );
    await waitFor(async () => (await inbox.get(id))?.state === "dead", "the job given up");
    // For kreditcheck_job_failures_total: the code that kept failing, not a new one.
    await waitFor(() => counted.length > 0, "the failure counted");
    expect(counted).toEqual(["finapi_unavailable dead"]);
    const dead = await inbox.get(id);
    expect(dead?.lastError).toMatch(
      /^gave up after 2 attempts .*stopped before it finished; last error: finapi_unavailable: 503$/,
    );
    expect(dead?.lastErrorCodes).toEqual(["finapi_unavailable"]);
    expect(runs).toEqual([]);
  });

  it("gives a job back on shutdown without spending its attempt", async () => {
    startWorker(
      (run) =>
        new Promise((_resolve, reject) =>
          run.signal.addEventListener("abort", () => reject(run.signal.reason)),
        ),
      1,
    );
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(id))?.state === "running", "the job to run");
    await worker?.stop(50);
    const job = await inbox.get(id);
    expect(job).toMatchObject({ state: "pending", attempts: 0, lockedBy: null });
  });
  it("gives back a job whose run ignores the abort, instead of holding shutdown for it", async () => {
    const logs = captureLogs();
    let release!: () => void;
    const ignoresAbort = new Promise<void>((resolve) => {
      release = resolve;
    });
    startWorkerWith({ handle: () => ignoresAbort, logger: logs.logger });
    const { id } = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(id))?.state === "running", "the job to run");
    const stopping = Date.now();
    await worker?.stop(50);
    // The stop waited for the drain (50 ms) and the abort grace, not for the run.
    expect(Date.now() - stopping).toBeLessThan(5_000);
    expect(await inbox.get(id)).toMatchObject({ state: "pending", attempts: 0, lockedBy: null });
    expect(logs.text()).toContain("job did not stop when shutdown aborted it");
    // The run ends later: its outcome finds the job given back, and changes nothing.
    release();
    await waitFor(
      () => logs.text().includes("lease lost before the outcome was stored"),
      "the late run",
    );
    expect((await inbox.get(id))?.state).toBe("pending");
  });

  it("stores the outcome under the new lease when it re-claimed the job while the outcome was on its way", async () => {
    const runs: string[] = [];
    startWorkerWith({
      handle: async (run: CheckRun) => {
        runs.push(run.job.id);
        // Delivery stalls past the lease (blocked loop, clock step, VM pause)...
        now += 120_000;
        run.fetched?.(); // the loop wakes and claims while this one is still delivering
        await tick();
        await tick();
      },
      concurrency: 1,
    });
    const job = await inbox.enqueue(makeCallback() as never, new Date(now));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stored = await inbox.get(job.id);
    expect({ state: stored?.state, runs: runs.length }).toEqual({ state: "done", runs: 1 });
  });
  it("stores the outcome under the new lease when it re-claimed the job while the outcome was being written", async () => {
    // The outcome's write is held up past the lease (a slow store, a VM pause) and the
    // worker's own loop claims the job again meanwhile: the write goes again under the new
    // lease; the job does not run a second time.
    let reclaimed: () => void = () => undefined;
    const reclaim = new Promise<void>((resolve) => {
      reclaimed = resolve;
    });
    let claims = 0;
    const slowOutcome: Inbox = Object.create(inbox, {
      claim: {
        value: async (...args: Parameters<Inbox["claim"]>) => {
          const jobs = await inbox.claim(...args);
          if (jobs.length > 0 && ++claims === 2) setImmediate(reclaimed);
          return jobs;
        },
      },
      complete: {
        value: async (...args: Parameters<Inbox["complete"]>) => {
          now += 120_000;
          await reclaim;
          return inbox.complete(...args);
        },
      },
    });
    let runs = 0;
    startWorkerWith({
      inbox: slowOutcome,
      concurrency: 1,
      handle: async () => {
        runs += 1;
      },
    });
    const job = await inbox.enqueue(makeCallback() as never, new Date(now));
    await waitFor(async () => (await inbox.get(job.id))?.state === "done", "the job done");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect({ runs, claims }).toEqual({ runs: 1, claims: 2 });
  });

  it("fetches one check at a time while the load gauge reads busy, all four again after", async () => {
    let busy = true;
    let fetching = 0;
    const peaks: number[] = [];
    startWorker(
      async () => {
        fetching += 1;
        peaks.push(fetching);
        await new Promise((resolve) => setTimeout(resolve, 20));
        fetching -= 1;
      },
      5,
      { busy: () => busy },
    );
    const enqueueMany = (count: number) =>
      Promise.all(
        Array.from({ length: count }, () => inbox.enqueue(makeCallback() as never, new Date(now))),
      );
    await enqueueMany(6);
    await waitFor(async () => (await inbox.countByState()).done === 6, "six done under pressure");
    expect(Math.max(...peaks)).toBe(1);
    busy = false;
    peaks.length = 0;
    await enqueueMany(8);
    await waitFor(async () => (await inbox.countByState()).done === 14, "eight more done");
    expect(Math.max(...peaks)).toBe(4);
  });

  it("starts at most one check per interval while the gauge reads busy, at once when it does not", async () => {
    let busy = true;
    const starts: number[] = [];
    startWorker(
      async () => {
        starts.push(performance.now());
      },
      5,
      { busy: () => busy },
      60,
    );
    const enqueueMany = (count: number) =>
      Promise.all(
        Array.from({ length: count }, () => inbox.enqueue(makeCallback() as never, new Date(now))),
      );
    await enqueueMany(4);
    await waitFor(async () => (await inbox.countByState()).done === 4, "four done under pressure");
    const gaps = starts.slice(1).map((start, index) => start - (starts[index] ?? 0));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(55);
    busy = false;
    starts.length = 0;
    await enqueueMany(4);
    await waitFor(async () => (await inbox.countByState()).done === 8, "four more done");
    expect((starts.at(-1) ?? 0) - (starts[0] ?? 0)).toBeLessThan(55);
  });

  it("lets the event loop turn between claims when checks finish without any I/O", async () => {
    // A check that needs no I/O (a failed callback to the stdout sink) settles in
    // microtasks; claiming the next one at once, again and again, would starve HTTP.
    await Promise.all(
      Array.from({ length: 60 }, () => inbox.enqueue(makeCallback() as never, new Date(now))),
    );
    let started = 0;
    let startedWhenTimerRan: number | undefined;
    startWorker(async () => {
      started += 1;
    });
    setTimeout(() => {
      startedWhenTimerRan = started;
    }, 0);
    await waitFor(async () => (await inbox.countByState()).done === 60, "all sixty done");
    expect(startedWhenTimerRan).toBeDefined();
    expect(startedWhenTimerRan).toBeLessThan(60);
  });
});
