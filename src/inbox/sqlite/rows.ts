import type { Callback } from "../../callback.js";
import { type Job, type JobProgress, type JobState, progressFromStore } from "../inbox.js";

export interface JobRow {
  id: string;
  process_token: string;
  kreditcheck_id: string;
  callback: string;
  state: JobState;
  attempts: number;
  run_at: number;
  locked_by: string | null;
  locked_until: number | null;
  last_error: string | null;
  progress: string;
  received_at: number;
  updated_at: number;
  finished_at: number | null;
}

export function rowToJob(row: JobRow): Job {
  const { progress, lastErrorCodes } = progressFromStore(
    JSON.parse(row.progress) as JobProgress,
    row.last_error,
  );
  return {
    id: row.id,
    processToken: row.process_token,
    kreditCheckId: row.kreditcheck_id,
    callback: JSON.parse(row.callback) as Callback,
    state: row.state,
    attempts: row.attempts,
    runAt: new Date(row.run_at),
    lockedBy: row.locked_by,
    lockedUntil: row.locked_until === null ? null : new Date(row.locked_until),
    lastError: row.last_error,
    lastErrorCodes,
    progress,
    receivedAt: new Date(row.received_at),
    updatedAt: new Date(row.updated_at),
    finishedAt: row.finished_at === null ? null : new Date(row.finished_at),
  };
}
