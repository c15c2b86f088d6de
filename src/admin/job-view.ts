import type { Job, JobSummary } from "../inbox/inbox.js";

/** A job as operators see it: timings, attempts, last error; the bundle itself left out. */
export function jobView(job: Job | JobSummary) {
  return {
    id: job.id,
    processToken: job.processToken,
    kreditCheckId: job.kreditCheckId,
    status: job.callback.status,
    clientReference: job.callback.clientReference ?? null,
    state: job.state,
    attempts: job.attempts,
    lastError: job.lastError,
    lastErrorCodes: job.lastErrorCodes,
    receivedAt: job.receivedAt.toISOString(),
    updatedAt: job.updatedAt.toISOString(),
    runAt: job.runAt.toISOString(),
    finishedAt: job.finishedAt?.toISOString() ?? null,
    lockedBy: job.lockedBy,
    lockedUntil: job.lockedUntil?.toISOString() ?? null,
    bundleFetched:
      job.state === "done" ||
      ("bundleKept" in job ? job.bundleKept : (job as Job).progress.bundle !== undefined),
    deliveredSinks: job.progress.deliveredSinks ?? [],
  };
}

export function jobDetailView(job: Job) {
  return { ...jobView(job), callback: job.callback };
}
