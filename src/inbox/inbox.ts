import { createHash } from "node:crypto";
import { type Callback, SUCCESSFUL_STATUS } from "../callback.js";

export type JobState = "pending" | "running" | "done" | "dead";
export const JOB_STATES: readonly JobState[] = ["pending", "running", "done", "dead"];
/** The states a job ends in; only these are ever pruned. */
export type FinishedState = Extract<JobState, "done" | "dead">;
export const FINISHED_STATES: readonly FinishedState[] = ["done", "dead"];

/** Per-state counts from `GROUP BY state` rows; states without rows count 0. */
export function countsByState(
  rows: readonly { state: JobState; count: number }[],
): Record<JobState, number> {
  const counts = Object.fromEntries(JOB_STATES.map((state) => [state, 0])) as Record<
    JobState,
    number
  >;
  for (const row of rows) counts[row.state] = row.count;
  return counts;
}

/**
 * What the pipeline saves between attempts, so that a retry resumes where the last one
 * stopped: the assembled bundle (fetched once) and which sinks have it already.
 */
export interface JobProgress {
  bundle?: unknown;
  deliveredSinks?: string[];
  /** Set when an operator re-queued the job: its age (JOB_MAX_AGE_MS) counts from here. */
  requeuedAt?: number;
  /**
   * Epoch ms until which the last failure was granted retries past MAX_ATTEMPTS (a result
   * awaited for NOT_FOUND_GRACE_MS): an attempt in that window whose worker died is run
   * again, not given up.
   */
  retryUntil?: number;
}

/** Why an attempt failed: the text operators read, and the codes it names. */
export interface JobFailure {
  /** One line: cause, then fix (ReceiverError.describe(), or why the job gave up). */
  message: string;
  /**
   * The failure's code first, then those of the failures it sums up (each failed sink's).
   * Left out when they are not known (a job that gave up after a worker stopped, whose
   * last error an earlier release wrote): readers then read the codes off the text.
   */
  codes?: readonly string[];
}

export interface Job {
  id: string;
  processToken: string;
  kreditCheckId: string;
  callback: Callback;
  state: JobState;
  /** Attempts started so far, counted when a job is claimed (a crash still uses one up). */
  attempts: number;
  runAt: Date;
  lockedBy: string | null;
  lockedUntil: Date | null;
  lastError: string | null;
  /** The codes `lastError` names (JobFailure.codes); null when none are known. */
  lastErrorCodes: string[] | null;
  progress: JobProgress;
  receivedAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
  /**
   * Set by `claim` on a job it took over from a worker whose lease had expired (a crash,
   * a kill -9, a host gone): that worker's lease token. Absent otherwise.
   */
  takenOverFrom?: string;
}

/**
 * A job as `list` gives it: all but the bundle a job keeps for its next attempt, which
 * with documents can weigh megabytes (a page of 1,000 dead jobs loaded them all: 2 s on the
 * event loop and 500 MB for 122 of them). `bundleKept` says whether it has one.
 */
export type JobSummary = Omit<Job, "progress" | "takenOverFrom"> & {
  progress: Omit<JobProgress, "bundle">;
  bundleKept: boolean;
};

/** A job as `list` gives it: the bundle left out, whether it has one said. */
export function summaryOf(job: Job, bundleKept: boolean): JobSummary {
  const { progress, takenOverFrom: _notListed, ...rest } = job;
  const { bundle: _leftOut, ...withoutBundle } = progress;
  return { ...rest, progress: withoutBundle, bundleKept };
}

export interface EnqueueResult {
  id: string;
  duplicate: boolean;
  /**
   * The status of the stored callback this one replaced (see `replacesStored`); the job
   * then runs again with this callback, and `duplicate` is false.
   */
  replacedStatus?: string;
}

/**
 * Whether a callback with `status` replaces its check's stored callback, whose status is
 * `storedStatus`: a SUCCESSFUL one replaces any other (FAILED, then SUCCESSFUL), since
 * keeping the first one stored lost the result for good (retry and replay both ran the
 * stored callback). Nothing replaces a stored SUCCESSFUL one, and other statuses do not
 * replace each other: only SUCCESSFUL is known to be final, so a sender's late retry of an
 * earlier status must not take a later one's place, and a job is replaced at most once.
 */
export function replacesStored(storedStatus: unknown, status: string): boolean {
  return status === SUCCESSFUL_STATUS && storedStatus !== SUCCESSFUL_STATUS;
}

/** The states an operator's retry can be made conditional on (Inbox.requeue). */
export type RequeueIfState = "pending" | "dead";

export interface RequeueOptions {
  fresh?: boolean;
  onlyIfState?: RequeueIfState;
}

/** What Inbox.requeue did to a job it put back or made due. */
export interface Requeued {
  /**
   * A dead job's kept bundle could not be read back (PostgreSQL refuses a U+0000 escape in
   * it), so the job was put back afresh instead: fetched again and delivered to every sink.
   * Told by the statement that did it: a later read cannot tell this apart from a job a
   * worker took and finished since (complete() keeps no bundle either).
   */
  fellBackToFresh: boolean;
}

/**
 * The durable inbox: the only place the promise "never lose a callback" is kept.
 * `enqueue` resolves only once the job is durably written; lease-taking methods
 * (`renew`, `complete`, `retry`, `fail`, `release`) succeed only for the
 * current owner and throw LeaseLostError otherwise.
 */
export interface Inbox {
  /**
   * Stores a new job, or answers the stored one of the same (processToken, kreditCheckId)
   * as a duplicate, unless this callback replaces the stored callback (`replacesStored`):
   * then, in the same durable write, that job gets this callback and runs again from the
   * start (pending, attempts and progress reset, received now). Due now, or, while an
   * attempt runs, once that attempt's lease has run out: the attempt loses its lease (its
   * outcome is not written), finds out at its next renewal and stops, before another
   * worker could deliver the new bundle that a late delivery of the old one overwrote.
   */
  enqueue(callback: Callback, receivedAt: Date): Promise<EnqueueResult>;
  /** Takes up to `limit` due jobs (pending and due, or running with an expired lease). */
  claim(workerId: string, limit: number, leaseMs: number): Promise<Job[]>;
  renew(jobId: string, workerId: string, leaseMs: number): Promise<void>;
  /** Done; `progress` records which sinks have the bundle (the bundle itself is not kept). */
  complete(jobId: string, workerId: string, progress: JobProgress): Promise<void>;
  /**
   * Back to pending for `delayMs`, counted on the store's clock (PostgreSQL's `now()`, which
   * claims compare with: a replica's clock running ahead or behind does not move the retry);
   * `progress` is what the next attempt resumes from.
   */
  retry(
    jobId: string,
    workerId: string,
    delayMs: number,
    failure: JobFailure,
    progress: JobProgress,
  ): Promise<void>;
  /** Dead: no further attempts until an operator re-queues it. */
  fail(jobId: string, workerId: string, failure: JobFailure, progress: JobProgress): Promise<void>;
  /**
   * Gives a job back unfinished (shutdown): claimable again at once, its attempt refunded,
   * `progress` kept for the next attempt (a fetched bundle is not fetched again, a sink that
   * has it does not get it twice). `lastFailure`, the job's last error as it stands, keeps
   * its codes valid beside the new progress.
   */
  release(
    jobId: string,
    workerId: string,
    progress: JobProgress,
    lastFailure?: JobFailure,
  ): Promise<void>;
  get(jobId: string): Promise<Job | null>;
  /**
   * The most recently updated first; with `after` (a job id, or the nil UUID to start), the
   * jobs whose id sorts after it, in id order: a job's later updates do not move it. Ids
   * are time-ordered (UUID v7, to the millisecond), so that is about the order the
   * callbacks arrived (random v4 ids of early releases sort among them anywhere).
   */
  list(filter: { state?: JobState; limit: number; after?: string }): Promise<JobSummary[]>;
  /**
   * The jobs of one check, by the ids its callback carried (either or both; at least one):
   * what an operator has when a customer asks. The latest received first; only those in
   * `state` when given (before `limit` is applied).
   */
  findByCheck(check: CheckIds, limit: number, state?: JobState): Promise<JobSummary[]>;
  countByState(): Promise<Record<JobState, number>>;
  /** When the oldest job not yet finished (pending or running) was received; null if none. */
  oldestUnfinished(): Promise<Date | null>;
  /**
   * An operator's retry. A dead job goes back to pending with fresh attempts, its age
   * counted from now; a bundle it had fetched is kept with the sinks that have it, so only
   * the sinks that failed get it (a sink fixed after the job died), and a job that died
   * before its bundle was fetched fetches it. A done job is fetched and delivered to every
   * sink again (a replay). A pending job waiting for its next attempt is due at once,
   * attempts and progress unchanged. Not for a running job or none. `fresh`: a dead job
   * keeps nothing either, and is fetched and delivered to every sink again; a pending job
   * is then left as it is. `onlyIfState`: only a job in that state is touched, in
   * the same statement that checks it: `pending`, made due, so a job that
   * finished meanwhile is not replayed by a bulk "run the pending ones now"; `dead`, put
   * back, so a job that another operator retried meanwhile (pending, running or done since)
   * is not put back or replayed a second time by a bulk "retry the dead ones". Null when it
   * left the job as it was (or there is none).
   */
  requeue(jobId: string, options?: RequeueOptions): Promise<Requeued | null>;
  /**
   * Retention: deletes up to `limit` jobs in `state` that finished before `finishedBefore`,
   * oldest first, in one short statement, and answers how many. Pending and running jobs
   * are never deleted. A backlog takes several calls (the pruner loops until a call
   * deletes fewer than `limit`), so no call holds the store for long.
   */
  prune(state: FinishedState, finishedBefore: Date, limit: number): Promise<number>;
  /** Called after jobs were written, so a waiting worker can start at once. */
  onEnqueued(listener: () => void): () => void;
  /**
   * Proves the store answers and accepts a durable write (readiness). Fails rather than
   * block the event loop waiting for a lock another connection holds (SQLite).
   */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The `progress` value a store writes with a failure. The codes ride in it, under a key
 * of their own, because every statement that sets `last_error` writes `progress` too (and
 * `complete` and `requeue` clear both): the two cannot drift apart, and no schema change
 * is needed, so a release without this key still reads and writes the same rows. With the
 * codes goes a digest of the text they belong to (see progressFromStore).
 */
export function progressWithFailure(
  progress: JobProgress,
  failure: JobFailure | undefined,
): string {
  if (failure?.codes === undefined) return JSON.stringify(progress);
  const stamp: CodeStamp = { codes: [...failure.codes], of: textDigest(failure.message) };
  return JSON.stringify({ ...progress, [CODES_KEY]: stamp });
}

/**
 * Splits a stored `progress` into the job's progress and its last error's codes. The codes
 * count only for the very text they were written with: an earlier release hands back the
 * progress it read (this key included) with a failure text of its own, and the codes of
 * the failure before must not stand for that text (they could hide the job from a
 * `retry --code` run). Without codes, readers read them off the text.
 */
export function progressFromStore(
  stored: JobProgress & { [CODES_KEY]?: unknown },
  lastError: string | null,
): { progress: JobProgress; lastErrorCodes: string[] | null } {
  const { [CODES_KEY]: stamp, ...progress } = stored;
  const current = lastError !== null && isCodeStamp(stamp) && stamp.of === textDigest(lastError);
  return { progress, lastErrorCodes: current ? stamp.codes : null };
}

const CODES_KEY = "lastErrorCodes";

interface CodeStamp {
  codes: string[];
  /** textDigest of the last_error the codes were written with. */
  of: string;
}

function isCodeStamp(value: unknown): value is CodeStamp {
  const stamp = value as Partial<CodeStamp> | null;
  return (
    typeof stamp?.of === "string" &&
    Array.isArray(stamp.codes) &&
    stamp.codes.every((code) => typeof code === "string")
  );
}

/** Short, as it is stored with every failed job; only ever compared with itself. */
function textDigest(text: string): string {
  return createHash("sha256").update(text).digest("base64url").slice(0, 16);
}

/** The caller no longer owns the job's lease: another worker took it over. */
export class LeaseLostError extends Error {
  readonly code = "lease_lost";
  constructor(readonly jobId: string) {
    super(`lease on job ${jobId} was lost (expired and taken over, or the job was changed)`);
    this.name = "LeaseLostError";
  }
}

/**
 * Tells each listener that jobs were written (Inbox.onEnqueued). A listener is a wake-up
 * call (the worker's): one that throws must not fail a callback already stored, nor, when
 * PostgreSQL's LISTEN connection calls it from an event, end the process. The worker's
 * poll finds the job anyway.
 */
export function notifyListeners(listeners: Iterable<() => unknown>): void {
  for (const listener of listeners) {
    try {
      // An async listener's rejection would be unhandled: it ends the process too.
      const result = listener();
      if (result instanceof Promise) result.catch(() => undefined);
    } catch {
      // See above: a wake-up that failed is made up for by the next poll.
    }
  }
}

/** A check's ids as its callback gave them; findByCheck needs at least one. */
export type CheckIds =
  | { processToken: string; kreditCheckId?: string }
  | { processToken?: string; kreditCheckId: string };

/** The inbox cannot be written or read; callers answer 503 and retry later. */
export class StoreUnavailableError extends Error {
  readonly code = "store_unavailable";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}
