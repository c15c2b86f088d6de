import express, { type Router } from "express";
import { z } from "zod";
import { type Callback, callbackSchema, safeId } from "../callback.js";
import { toReceiverError } from "../errors.js";
import { sendError } from "../http/send-error.js";
import { type Inbox, JOB_STATES, type JobState, StoreUnavailableError } from "../inbox/inbox.js";
import type { Bundle } from "../sinks/sink.js";
import { jobDetailView, jobView } from "./job-view.js";

export interface JobsRouterOptions {
  inbox: Inbox;
  /** Fetches one check from finAPI and returns the bundle, without enqueueing anything. */
  fetchCheck: (callback: Callback) => Promise<Bundle>;
  clock: () => number;
}

const listQuery = z.object({
  state: z.enum(JOB_STATES as [JobState, ...JobState[]]).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
});

const fetchBody = z.object({
  processToken: safeId,
  kreditCheckId: safeId,
  status: z.string().min(1).default("SUCCESSFUL"),
});

function issuesOf(error: z.ZodError) {
  return error.issues.map((issue) => ({
    field: issue.path.join(".") || "(body)",
    message: issue.message,
  }));
}

/** The operator's view of the inbox: list, show, retry, replay, fetch directly. */
export function jobsRouter(options: JobsRouterOptions): Router {
  const { inbox, fetchCheck, clock } = options;
  const router = express.Router();
  router.use(express.json({ limit: "64kb" }));

  router.get("/jobs", async (req, res) => {
    const query = listQuery.safeParse(req.query);
    if (!query.success) return sendError(res, 400, "invalid_query", issuesOf(query.error));
    const jobs = await inbox.list({ state: query.data.state, limit: query.data.limit });
    res.json({ jobs: jobs.map(jobView), counts: await inbox.countByState() });
  });

  router.get("/jobs/:id", async (req, res) => {
    const job = await inbox.get(req.params.id);
    if (!job) return sendError(res, 404, "job_not_found", [{ message: `no job ${req.params.id}` }]);
    res.json(jobDetailView(job));
  });

  router.post("/jobs/:id/retry", async (req, res) => {
    const job = await inbox.get(req.params.id);
    if (!job) return sendError(res, 404, "job_not_found", [{ message: `no job ${req.params.id}` }]);
    if (!(await inbox.requeue(job.id))) {
      return sendError(res, 409, "job_not_retryable", [
        { message: `job is ${job.state}; only dead or done jobs can be retried` },
      ]);
    }
    res.json({ requeued: true, id: job.id });
  });

  router.post("/callbacks", async (req, res) => {
    const parsed = callbackSchema.safeParse(req.body);
    if (!parsed.success) return sendError(res, 400, "invalid_callback", issuesOf(parsed.error));
    let stored: Awaited<ReturnType<Inbox["enqueue"]>>;
    try {
      stored = await inbox.enqueue(parsed.data, new Date(clock()));
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      res.set("Retry-After", "5");
      return sendError(res, 503, "store_unavailable", [{ message: error.message }]);
    }
    res.status(202).json({ accepted: true, duplicate: stored.duplicate, id: stored.id });
  });

  router.post("/checks/fetch", async (req, res) => {
    const parsed = fetchBody.safeParse(req.body);
    if (!parsed.success) return sendError(res, 400, "invalid_request", issuesOf(parsed.error));
    try {
      res.json(await fetchCheck(parsed.data));
    } catch (thrown) {
      const error = toReceiverError(thrown);
      sendError(res, 502, error.code, [
        { message: error.message, ...(error.fix ? { fix: error.fix } : {}) },
      ]);
    }
  });

  return router;
}
