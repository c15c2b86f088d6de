import type { Callback } from "../../callback.js";
import { type Job, type JobProgress, type JobState, progressFromStore } from "../inbox.js";

/** A kreditcheck_jobs row as pg returns it: json parsed, timestamptz as Date. */
export interface JobRow {
  id: string;
  process_token: string;
  kreditcheck_id: string;
  callback: Callback;
  state: JobState;
  attempts: number;
  run_at: Date;
  locked_by: string | null;
  locked_until: Date | null;
  last_error: string | null;
  progress: JobProgress;
  received_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  /** Only in a claim's rows: the lease token of the worker a job was taken over from. */
  taken_over_from?: string | null;
}

export function rowToJob(row: JobRow): Job {
  const { progress, lastErrorCodes } = progressFromStore(row.progress, row.last_error);
  return {
    id: row.id,
    processToken: row.process_token,
    kreditCheckId: row.kreditcheck_id,
    callback: row.callback,
    state: row.state,
    attempts: row.attempts,
    runAt: row.run_at,
    lockedBy: row.locked_by,
    lockedUntil: row.locked_until,
    lastError: row.last_error,
    lastErrorCodes,
    progress,
    receivedAt: row.received_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    ...(row.taken_over_from ? { takenOverFrom: row.taken_over_from } : {}),
  };
}
