import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { settledWithin } from "../abortable.js";
import { toReceiverError } from "../errors.js";
import {
  type Inbox,
  type Job,
  type JobFailure,
  type JobProgress,
  LeaseLostError,
  StoreUnavailableError,
} from "../inbox/inbox.js";
import type { Logger } from "../logger.js";
import { sleep } from "../sleep.js";
import type { LoadGauge } from "./ingest-pressure.js";
import type { CheckRun } from "./process-check.js";
import { attemptsText, decideRetry, type RetryPolicy } from "./retry.js";

export const JOB_OUTCOMES = [
  "done",
  "retry",
  "dead",
  "released",
  "lease_lost",
  "replaced",
  "store_error",
] as const;
export type JobOutcome = (typeof JOB_OUTCOMES)[number];

export interface WorkerOptions {
  inbox: Inbox;
  /** The domain work for one job; throws to ask for a retry or to give up. */
  handle: (run: CheckRun) => Promise<unknown>;
  logger: Logger;
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  policy: RetryPolicy;
  clock?: () => number;
  workerId?: string;
  onJobFinished?: (outcome: JobOutcome, durationMs: number) => void;
  /** An attempt failed with this error code: to be retried, or the job is dead. */
  onAttemptFailed?: (code: string, outcome: "retry" | "dead") => void;
  /** While it reads busy, one check fetches at a time (callbacks come first). */
  pressure?: LoadGauge;
  /**
   * While the gauge reads busy, at most one check starts per this many ms (default 100):
   * the CPU goes to acknowledging callbacks, and the backlog still moves.
   */
  busyStartIntervalMs?: number;
}

interface ActiveJob {
  job: Job;
  /**
   * The lease token of the latest claim. Each claim gets its own (`workerId:n`), so a job
   * this worker claims again after its lease lapsed (blocked loop, clock jump) is adopted
   * by the run already in progress instead of running twice.
   */
  owner: string;
  controller: AbortController;
  task: Promise<void>;
  /** Counted in `busy` until its handler settles. */
  holdsSlot: boolean;
  /**
   * Its outcome is on its way to the store, stored, or given up on: a renewal refused from
   * now on may have come after the outcome's write (the job no longer runs), and a lease
   * truly lost fails that write itself.
   */
  ending: boolean;
}

class ShutdownSignal extends Error {
  constructor() {
    super("the worker is shutting down");
  }
}

class CallbackReplacedSignal extends Error {
  constructor() {
    super("a later callback replaced this job's callback; the job runs again with it");
  }
}

/** Whether two claims of one job carry the same callback (one replaced it otherwise). */
function sameCallback(a: Job, b: Job): boolean {
  return (
    a.receivedAt.getTime() === b.receivedAt.getTime() && a.callback.status === b.callback.status
  );
}

/** Waits before each new try of an outcome write the store failed (see asOwner). */
const OUTCOME_WRITE_RETRY_DELAYS_MS = [100, 500, 2000];

/** How long jobs get to end after shutdown aborted them, before they are given back anyway. */
export const ABORT_GRACE_MS = 1000;

/**
 * Claims due jobs with bounded concurrency and runs them under a lease it renews every
 * third of its length. A job whose lease is lost is aborted; its result is not written.
 */
export class Worker {
  readonly workerId: string;
  private readonly active = new Map<string, ActiveJob>();
  /**
   * Jobs still fetching from finAPI: at most `concurrency`. A slot is free again once the
   * handler reports everything fetched (or settles), so the next check's calls overlap
   * this one's delivery and the commit of its outcome (which then shares a group commit
   * with the next claim). At most twice `concurrency` jobs are active in all, which bounds
   * the bundles held in memory when sinks are slow.
   */
  private busy = 0;
  private readonly clock: () => number;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private wakePending = false;
  private claims = 0;
  /**
   * False from a claim until the event loop has turned once (a setImmediate). A check
   * that needs no I/O settles in microtasks; claiming again before the loop turned could
   * go on until the inbox is empty, with HTTP, timers and the store's commits waiting.
   */
  private loopTurned = true;
  /** performance.now() of the last claim that got a job while the gauge read busy. */
  private lastBusyStart = Number.NEGATIVE_INFINITY;
  private wakeUp: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly options: WorkerOptions) {
    this.clock = options.clock ?? Date.now;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  get running(): boolean {
    return this.loopDone !== undefined && !this.stopping;
  }

  get activeCount(): number {
    return this.active.size;
  }

  start(): void {
    if (this.loopDone) return;
    this.unsubscribe = this.options.inbox.onEnqueued(() => this.wake());
    this.loopDone = this.loop();
  }

  /**
   * Stops claiming, lets running jobs finish for up to `timeoutMs`, then aborts the rest
   * and gives their jobs back to the inbox so another worker can take them at once. A job
   * still running ABORT_GRACE_MS after its abort (a module sink that ignores its signal)
   * is given back by the worker itself: waiting for it held shutdown until the process was
   * killed, and its job stayed leased until LEASE_MS ran out.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (!this.loopDone) return;
    this.stopping = true;
    this.unsubscribe?.();
    this.wake();
    await this.loopDone;
    await this.settledWithin(timeoutMs);
    for (const active of this.active.values()) active.controller.abort(new ShutdownSignal());
    await this.settledWithin(ABORT_GRACE_MS);
    await Promise.allSettled([...this.active.values()].map((active) => this.giveBack(active)));
  }

  /** Waits for the active jobs' tasks to settle, at most `ms`. */
  private async settledWithin(ms: number): Promise<void> {
    const tasks = [...this.active.values()].map((active) => active.task);
    if (tasks.length === 0) return;
    await settledWithin(Promise.allSettled(tasks), ms);
  }

  /** A job whose run did not end when aborted: released under its lease, its run left behind. */
  private async giveBack(active: ActiveJob): Promise<void> {
    if (active.ending) return; // its outcome is being stored
    const { job } = active;
    const logger = this.options.logger.child({ jobId: job.id });
    try {
      await this.asOwner(active, (owner) =>
        this.options.inbox.release(job.id, owner, job.progress, lastFailureOf(job)),
      );
      logger.warn(
        "job did not stop when shutdown aborted it (a sink or module that ignores its signal?); given back unfinished",
      );
    } catch (error) {
      logger.warn(
        { err: error },
        "could not give back a job that did not stop; it runs again after LEASE_MS",
      );
    }
  }

  private wake(): void {
    this.wakePending = true;
    this.wakeUp?.();
  }

  private async waitForWake(ms: number): Promise<void> {
    if (!this.wakePending) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
    this.wakePending = false;
  }

  private async loop(): Promise<void> {
    const { inbox, concurrency, leaseMs, pollMs, logger } = this.options;
    const busyIntervalMs = this.options.busyStartIntervalMs ?? 100;
    while (!this.stopping) {
      // Usually the loop has turned since the last claim (its jobs did I/O): no wait.
      if (!this.loopTurned) {
        await new Promise((resolve) => setImmediate(resolve));
        if (this.stopping) break;
      }
      const busy = this.options.pressure?.busy() ?? false;
      const limit = busy ? 1 : concurrency;
      const free = Math.min(limit - this.busy, 2 * concurrency - this.active.size);
      // Real time, not the injectable clock: this spaces out CPU work.
      const holdMs = busy ? this.lastBusyStart + busyIntervalMs - performance.now() : 0;
      if (free > 0 && holdMs <= 0) {
        this.loopTurned = false;
        setImmediate(() => {
          this.loopTurned = true;
        });
        try {
          this.claims += 1;
          const jobs = await inbox.claim(`${this.workerId}:${this.claims}`, free, leaseMs);
          if (busy && jobs.length > 0) this.lastBusyStart = performance.now();
          for (const job of jobs) this.run(job);
        } catch (error) {
          logger.error({ err: error }, "claiming jobs failed; trying again shortly");
        }
      }
      if (this.stopping) break;
      await this.waitForWake(holdMs > 0 ? Math.min(pollMs, holdMs) : pollMs);
    }
  }

  private run(job: Job): void {
    const { inbox, leaseMs, logger: rootLogger } = this.options;
    const owner = job.lockedBy ?? this.workerId;
    const running = this.active.get(job.id);
    // Our own lease lapsed and we claimed the job again: the run keeps it, under the new
    // lease, while it goes on, and also while it stores its outcome if the claim took the
    // job over from that lapsed lease (the write under the old one then fails, and asOwner
    // repeats it under this one).
    const goesOn = running && !running.ending && !running.controller.signal.aborted;
    const stillStoring = running?.ending === true && job.takenOverFrom !== undefined;
    // A callback that replaced the job's own (Inbox.enqueue) made it pending again while it
    // ran: that run works on the old callback, so it is stopped (its lease is gone anyway)
    // and the job runs again once it has ended.
    const replaced = running !== undefined && !sameCallback(running.job, job);
    if (running && replaced) running.controller.abort(new CallbackReplacedSignal());
    else if (running && (goesOn || stillStoring)) {
      running.owner = owner;
      return;
    }
    if (running) {
      // The run stored its outcome, and this claim took the job that outcome made due (a
      // retry due at once, in the same commit), or the run was stopped: adopted, it stayed
      // running with nobody at it until its lease ran out. It runs once that run is gone;
      // during shutdown it is given back instead.
      void running.task.finally(() => {
        if (!this.stopping) return this.run(job);
        inbox.release(job.id, owner, job.progress, lastFailureOf(job)).catch((error: unknown) => {
          rootLogger.warn(
            { err: error, jobId: job.id },
            "could not give back a job claimed while stopping; it runs again after LEASE_MS",
          );
        });
      });
      return;
    }
    const controller = new AbortController();
    const logger = rootLogger.child({
      jobId: job.id,
      processToken: job.processToken,
      kreditCheckId: job.kreditCheckId,
      attempt: job.attempts,
    });
    const startedAt = this.clock();
    const entry: ActiveJob = {
      job,
      owner,
      controller,
      task: Promise.resolve(),
      holdsSlot: true,
      ending: false,
    };
    this.busy += 1;
    // One renewal at a time: a store that holds them (a PostgreSQL table lock) would
    // otherwise collect one more per interval, each holding a connection the job's outcome
    // then has to wait for. The next one goes out at the first interval after it answers.
    let renewing = false;
    const renewal = setInterval(
      () => {
        if (renewing) return;
        renewing = true;
        const renewedAs = entry.owner;
        inbox
          .renew(job.id, renewedAs, leaseMs)
          .catch((error: unknown) => {
            // Refused because the run stores or has stored its outcome meanwhile (a renewal
            // held up by a slow store, or one that reached the store after the outcome's
            // write): nothing was lost.
            if (controller.signal.aborted || entry.ending) return;
            // This worker re-claimed the job while the renewal was on its way (the run adopted
            // the new lease): the old token is gone, the job is not lost.
            if (error instanceof LeaseLostError && renewedAs !== entry.owner) return;
            if (error instanceof LeaseLostError) {
              logger.warn("lease lost while the job was running; stopping this attempt");
              controller.abort(error);
            } else logger.warn({ err: error }, "lease renewal failed; will try again");
          })
          .finally(() => {
            renewing = false;
          });
      },
      Math.max(10, Math.floor(leaseMs / 3)),
    );
    // A fresh object from the store: the run may update it in place.
    const progress: JobProgress = job.progress;
    entry.task = this.execute(entry, progress, logger)
      .catch((error: unknown): JobOutcome => {
        if (
          error instanceof LeaseLostError &&
          controller.signal.reason instanceof CallbackReplacedSignal
        ) {
          logger.info(
            "a later callback replaced this job's callback while its outcome was stored: not stored, the job runs again",
          );
          return "replaced";
        }
        if (error instanceof LeaseLostError) {
          logger.warn(
            "lease lost before the outcome was stored (it ran out and another worker took the job, or a later SUCCESSFUL callback replaced this one): the job is not finished here and runs again",
          );
          return "lease_lost";
        }
        logger.error(
          { err: error },
          "could not store the job's outcome; it runs again after its lease expires",
        );
        return "store_error";
      })
      .then((outcome) => {
        this.options.onJobFinished?.(outcome, this.clock() - startedAt);
      })
      .finally(() => {
        entry.ending = true;
        this.freeSlot(entry);
        clearInterval(renewal);
        if (this.active.get(job.id) === entry) this.active.delete(job.id);
        this.wake();
      });
    this.active.set(job.id, entry);
  }

  /**
   * Stores an outcome under the job's current lease token. If this worker re-claimed the
   * job meanwhile (its lease lapsed while the outcome was on its way; the run adopted the
   * new lease), the write under the old token finds nothing and is repeated under the new
   * one, so the job is not left running with nobody at it.
   */
  private async asOwner(entry: ActiveJob, write: (owner: string) => Promise<void>): Promise<void> {
    entry.ending = true;
    let failedWrites = 0;
    for (;;) {
      const owner = entry.owner;
      try {
        return await write(owner);
      } catch (error) {
        if (error instanceof LeaseLostError) {
          if (entry.owner === owner) throw error;
          continue;
        }
        // A store that failed this once (a dropped connection, a lock held a moment): the
        // outcome is written again within seconds. Left to the lease, the job ran again in
        // full after LEASE_MS, its sinks given the bundle a second time. The write is safe
        // to repeat: it needs the lease, which a stored outcome no longer holds.
        const delayMs = OUTCOME_WRITE_RETRY_DELAYS_MS[failedWrites];
        if (!(error instanceof StoreUnavailableError) || delayMs === undefined) throw error;
        failedWrites += 1;
        this.options.logger.warn(
          { err: error, jobId: entry.job.id, delayMs },
          "could not store the job's outcome; trying again shortly",
        );
        await sleep(delayMs);
      }
    }
  }

  private freeSlot(entry: ActiveJob): void {
    if (!entry.holdsSlot) return;
    entry.holdsSlot = false;
    this.busy -= 1;
    this.wake();
  }

  private async execute(
    entry: ActiveJob,
    progress: JobProgress,
    logger: Logger,
  ): Promise<JobOutcome> {
    const { inbox, policy, handle } = this.options;
    const { job, controller } = entry;
    // Past MAX_ATTEMPTS only when the previous owner died (or lost its lease) on the last
    // attempt, or when a retry was granted past it (a result awaited for its grace window,
    // see ReceiverError.retryUntil): that one runs, also when the granted attempt's worker
    // died while the window is still open; the window bounds a job that kills its workers.
    const granted = progress.retryUntil !== undefined && this.clock() < progress.retryUntil;
    if (job.attempts > policy.maxAttempts && job.takenOverFrom !== undefined && !granted) {
      const reason = `gave up after ${attemptsText(job.attempts - 1)} (MAX_ATTEMPTS=${policy.maxAttempts}); the last attempt's worker stopped before it finished; last error: ${job.lastError ?? "none recorded"}`;
      // The codes are the last error's, when this release wrote it.
      const failure = { message: reason, codes: job.lastErrorCodes ?? undefined };
      await this.asOwner(entry, (owner) => inbox.fail(job.id, owner, failure, progress));
      // No error of its own: the last one recorded, if any, says what kept failing.
      this.options.onAttemptFailed?.(job.lastErrorCodes?.[0] ?? "attempt_interrupted", "dead");
      logger.error(
        { code: job.lastErrorCodes?.[0], error: job.lastError ?? undefined, reason },
        "job is dead",
      );
      return "dead";
    }
    if (job.takenOverFrom !== undefined) {
      // The attempt before this one ended without a word (its worker was killed, crashed
      // or lost its host); its lease ran out. Say so: it is the only trace it leaves.
      this.options.onAttemptFailed?.("attempt_interrupted", "retry");
      logger.warn(
        { previousOwner: job.takenOverFrom },
        "took over a job whose worker stopped before finishing it (its lease expired); running it again",
      );
    }
    try {
      try {
        await handle({
          job,
          logger,
          signal: controller.signal,
          progress,
          fetched: () => this.freeSlot(entry),
        });
      } finally {
        this.freeSlot(entry);
      }
    } catch (thrown) {
      const reason: unknown = controller.signal.reason;
      if (controller.signal.aborted && reason instanceof ShutdownSignal) {
        // With what this attempt got done: the bundle and the sinks that have it.
        await this.asOwner(entry, (owner) =>
          inbox.release(job.id, owner, progress, lastFailureOf(job)),
        );
        logger.info(
          {
            deliveredSinks: progress.deliveredSinks ?? [],
            bundleKept: progress.bundle !== undefined,
          },
          "job given back unfinished because of shutdown",
        );
        return "released";
      }
      if (controller.signal.aborted && reason instanceof LeaseLostError) return "lease_lost";
      if (controller.signal.aborted && reason instanceof CallbackReplacedSignal) {
        logger.info(
          "a later callback replaced this job's callback: this run stopped, the job runs again",
        );
        return "replaced";
      }
      const error = toReceiverError(thrown);
      const ageFrom = new Date(progress.requeuedAt ?? job.receivedAt.getTime());
      const decision = decideRetry(
        error,
        { attempts: job.attempts, receivedAt: ageFrom },
        policy,
        this.clock(),
      );
      if (decision.action === "retry") {
        if (error.retryUntil !== undefined) progress.retryUntil = error.retryUntil;
        else delete progress.retryUntil;
        await this.asOwner(entry, (owner) =>
          inbox.retry(
            job.id,
            owner,
            decision.delayMs,
            { message: error.describe(), codes: error.codes },
            progress,
          ),
        );
        this.options.onAttemptFailed?.(error.code, "retry");
        logger.warn(
          {
            code: error.code,
            error: error.describe(),
            delayMs: decision.delayMs,
            runAt: decision.runAt.toISOString(),
          },
          "attempt failed; will retry",
        );
        return "retry";
      }
      const failure = { message: decision.reason, codes: error.codes };
      await this.asOwner(entry, (owner) => inbox.fail(job.id, owner, failure, progress));
      this.options.onAttemptFailed?.(error.code, "dead");
      // `code` and `error` as on "attempt failed; will retry": one log query finds both.
      logger.error(
        { code: error.code, error: error.describe(), reason: decision.reason },
        "job is dead",
      );
      return "dead";
    }
    const { bundle: _bundle, retryUntil: _retryUntil, ...record } = progress;
    await this.asOwner(entry, (owner) => inbox.complete(job.id, owner, record));
    logger.info({ durationMs: this.clock() - job.updatedAt.getTime() }, "check delivered");
    return "done";
  }
}

/** The failure a job is given back with: its last attempt's error, which a release keeps. */
function lastFailureOf(job: Job): JobFailure | undefined {
  return job.lastError === null
    ? undefined
    : { message: job.lastError, codes: job.lastErrorCodes ?? undefined };
}
