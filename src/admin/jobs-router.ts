import express, { type Router } from "express";
import { z } from "zod";
import { type Callback, safeId } from "../callback.js";
import { toReceiverError } from "../errors.js";
import { acceptCallback } from "../http/accept-callback.js";
import { callbackBody } from "../http/callback-body.js";
import { expressReply } from "../http/reply.js";
import { sendError, zodIssues } from "../http/send-error.js";
import { type Inbox, JOB_STATES, type JobState } from "../inbox/inbox.js";
import { JOB_ID_PATTERN } from "../inbox/job-id.js";
import type { Logger } from "../logger.js";
import { type Bundle, bundleToJson } from "../sinks/sink.js";
import { jobDetailView, jobView } from "./job-view.js";

export interface JobsRouterOptions {
  logger: Logger;
  inbox: Inbox;
  /** Fetches one check from finAPI and returns the bundle, without enqueueing anything. */
  fetchCheck: (callback: Callback) => Promise<Bundle>;
  clock: () => number;
  /** The public callback route's body limit: a replay is read as a callback is. */
  callbackBodyLimitBytes: number;
}

/**
 * Strict: a parameter it does not know (`?processtoken=`, `?status=`) is refused, naming
 * the ones it knows, instead of being ignored and the whole list answered as if it matched.
 */
const listQuery = z
  .strictObject({
    state: z.enum(JOB_STATES as [JobState, ...JobState[]]).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(50),
    /** A job id (the nil UUID to start): page in id order after it (see Inbox.list). */
    after: z
      .string()
      .regex(JOB_ID_PATTERN, "must be a job id")
      .transform((id) => id.toLowerCase())
      .optional(),
    /** The jobs of one check (Inbox.findByCheck): a customer's complaint names these. */
    processToken: safeId.optional(),
    kreditCheckId: safeId.optional(),
  })
  .refine((query) => query.after === undefined || !(query.processToken || query.kreditCheckId), {
    message: "after pages the whole list; a check's jobs (processToken, kreditCheckId) are few",
    path: ["after"],
  });

/** Strict, as the list's: an unknown parameter is refused (400), not ignored. */
const retryQuery = z.strictObject({
  fresh: z
    .enum(["true", "false"], { error: "must be true or false" })
    .default("false")
    .transform((value) => value === "true"),
  /**
   * Only if the job is (still) in this state: a bulk "run the pending ones now" must not
   * replay a job that finished between its list and its retry, nor a bulk "retry the dead
   * ones" a job another operator retried meanwhile.
   */
  ifState: z.enum(["pending", "dead"], { error: "must be pending or dead" }).optional(),
});

const fetchBody = z.object({
  processToken: safeId,
  kreditCheckId: safeId,
  status: z.string().min(1).default("SUCCESSFUL"),
});

/**
 * zod's issues; an unknown parameter is named as the field, with the ones `schema` takes
 * (read off it, so the message cannot fall behind a parameter added there).
 */
function queryIssues(error: z.ZodError, what: string, schema: { shape: object }) {
  return error.issues.map((issue) =>
    issue.code === "unrecognized_keys"
      ? {
          field: issue.keys.join(", "),
          message: `no such parameter; ${what} takes ${Object.keys(schema.shape).join(", ")}`,
        }
      : (zodIssues({ issues: [issue] })[0] as { field?: string; message: string }),
  );
}

/** The operator's view of the inbox: list, show, retry, replay, fetch directly. */
export function jobsRouter(options: JobsRouterOptions): Router {
  const { inbox, fetchCheck, clock, logger } = options;
  const router = express.Router();

  router.get("/jobs", async (req, res) => {
    const query = listQuery.safeParse(req.query);
    if (!query.success) {
      return sendError(res, 400, "invalid_query", queryIssues(query.error, "the list", listQuery));
    }
    const { state, limit, after, processToken, kreditCheckId } = query.data;
    if (processToken !== undefined || kreditCheckId !== undefined) {
      const check =
        processToken !== undefined
          ? { processToken, kreditCheckId }
          : { kreditCheckId: kreditCheckId as string };
      const jobs = await inbox.findByCheck(check, limit, state);
      return res.json({ jobs: jobs.map(jobView), counts: await inbox.countByState() });
    }
    const jobs = await inbox.list({ state, limit, after });
    const counts = await inbox.countByState();
    if (after === undefined) return res.json({ jobs: jobs.map(jobView), counts });
    // The cursor for the next page; null once this page was not full.
    const next = jobs.length === limit ? (jobs.at(-1)?.id ?? null) : null;
    res.json({ jobs: jobs.map(jobView), counts, next });
  });

  // Ids are stored in lower case; one copied in upper case is the same job (PostgreSQL's
  // uuid type took it already, SQLite's text did not).
  router.get("/jobs/:id", async (req, res) => {
    const job = await inbox.get(req.params.id.toLowerCase());
    if (!job) return sendError(res, 404, "job_not_found", [{ message: `no job ${req.params.id}` }]);
    res.json(jobDetailView(job));
  });

  router.post("/jobs/:id/retry", async (req, res) => {
    const job = await inbox.get(req.params.id.toLowerCase());
    if (!job) return sendError(res, 404, "job_not_found", [{ message: `no job ${req.params.id}` }]);
    const query = retryQuery.safeParse(req.query);
    if (!query.success) {
      return sendError(res, 400, "invalid_query", queryIssues(query.error, "a retry", retryQuery));
    }
    // ?fresh=true: a dead job fetches anew instead of resending the bundle it kept.
    const { fresh, ifState } = query.data;
    const requeued = await inbox.requeue(job.id, { fresh, onlyIfState: ifState });
    if (!requeued) {
      // Its state as it is now: a worker may have moved it since it was read above.
      const now = await inbox.get(job.id);
      if (!now) {
        // The pruner deleted it between the read above and the requeue: the job is gone,
        // not in a state that cannot be retried (which a 409 would name, as "dead").
        return sendError(res, 404, "job_not_found", [
          {
            message: `job ${job.id} was deleted meanwhile, by retention (DEAD_RETENTION_MS, DONE_RETENTION_MS) most likely: nothing was requeued`,
          },
        ]);
      }
      return sendError(res, 409, "job_not_retryable", [
        {
          message:
            ifState !== undefined && now.state !== ifState
              ? `job is ${now.state}, not ${ifState} (ifState=${ifState}): left as it is`
              : fresh && now.state === "pending"
                ? "job is pending: it is retried with what it fetched (retry it without fresh to make it due now); fresh applies to dead and done jobs"
                : now.state === "running"
                  ? `job is running (leased by ${now.lockedBy ?? "a worker"} until ${now.lockedUntil?.toISOString() ?? "its lease ends"}); only dead, done or pending jobs can be retried: a running one finishes or fails first, and one whose worker stopped is taken over by another when that lease ends`
                  : `job is ${now.state}; only dead, done or pending jobs can be retried`,
        },
      ]);
    }
    // A dead job's kept bundle that the store could not read back (PostgreSQL refuses a
    // U+0000 escape in it) starts afresh instead: say so, since every sink then gets the
    // check again, those that had it too. The store says so itself: a read after the
    // requeue could find the job finished by a worker meanwhile, which keeps no bundle
    // either, and call a plain resend afresh.
    const { fellBackToFresh } = requeued;
    // With ifState, the store changed the job only in that state, whatever the read above
    // saw (a worker may have given it back to pending since): that is what it was.
    const previousState = ifState ?? job.state;
    // It delivers the check again (or now): an operator's act worth a line of its own.
    logger[fellBackToFresh ? "warn" : "info"](
      {
        // The check's ids too: a search of the log by processToken finds this line.
        jobId: job.id,
        processToken: job.processToken,
        kreditCheckId: job.kreditCheckId,
        previousState,
        fresh: fresh || fellBackToFresh,
        remoteAddress: req.socket.remoteAddress,
      },
      fellBackToFresh
        ? "job re-queued through the admin API; its kept bundle could not be read back, so it is fetched again for every sink"
        : "job re-queued through the admin API",
    );
    // What it was: a done job's retry is a replay to every sink, a pending one's a hurry-up.
    res.json({
      requeued: true,
      id: job.id,
      previousState,
      ...(fresh || fellBackToFresh ? { fresh: true } : {}),
      // Says the condition was applied: a service older than it answers without.
      ...(ifState ? { ifState } : {}),
    });
  });

  // An operator's replay goes in exactly as finAPI's callback does, read as it is read.
  router.post("/callbacks", ...callbackBody(options.callbackBodyLimitBytes), (req, res) =>
    acceptCallback(req.body, expressReply(res), { inbox, logger, clock }),
  );

  router.post("/checks/fetch", express.json({ limit: "64kb" }), async (req, res) => {
    const parsed = fetchBody.safeParse(req.body);
    if (!parsed.success) return sendError(res, 400, "invalid_request", zodIssues(parsed.error));
    try {
      // Documents as base64, as the http and stdout sinks carry them (not Buffer's dump).
      res.json(bundleToJson(await fetchCheck(parsed.data)));
    } catch (thrown) {
      const error = toReceiverError(thrown);
      sendError(res, 502, error.code, [
        { message: error.message, ...(error.fix ? { fix: error.fix } : {}) },
      ]);
    }
  });

  return router;
}
