import { type Callback, callbackSchema } from "../callback.js";
import type { Inbox } from "../inbox/inbox.js";
import type { Logger } from "../logger.js";
import type { Reply } from "./reply.js";
import { errorBody, zodIssues } from "./send-error.js";

export type AcceptOutcome = "accepted" | "duplicate" | "invalid" | "store_unavailable";

export interface AcceptDeps {
  inbox: Inbox;
  logger: Logger;
  clock: () => number;
  onOutcome?: (outcome: AcceptOutcome) => void;
}

/** Seconds a sender should wait before retrying when the inbox cannot be written. */
export const STORE_RETRY_AFTER_SECONDS = 5;

/**
 * Validate, store durably, then answer: the one way a callback gets in, whether finAPI
 * sends it or an operator replays it. 202 only once the inbox has the job on disk; if it
 * cannot be written, 503 with Retry-After (our fault, so a retrying sender retries).
 */
export async function acceptCallback(body: unknown, reply: Reply, deps: AcceptDeps): Promise<void> {
  const { inbox, logger, clock, onOutcome } = deps;
  // JSON.parse makes "__proto__" an ordinary field; copying the callback (zod does) would
  // drop it without a word, after a 202. Refused by name instead (finAPI sends no such).
  const protoField = typeof body === "object" && body !== null && Object.hasOwn(body, "__proto__");
  const parsed = protoField ? undefined : callbackSchema.safeParse(body);
  if (!parsed?.success) {
    onOutcome?.("invalid");
    const details = !parsed
      ? [{ field: "__proto__", message: "is not accepted as a field name" }]
      : body === undefined
        ? [
            {
              field: "(body)",
              message:
                "no JSON body: send the callback as a JSON object with Content-Type: application/json",
            },
          ]
        : zodIssues(parsed.error);
    logger.info({ details }, "callback rejected: invalid body");
    reply(400, errorBody("invalid_callback", details));
    return;
  }
  const callback = parsed.data;
  const ids = { processToken: callback.processToken, kreditCheckId: callback.kreditCheckId };
  let stored: Awaited<ReturnType<Inbox["enqueue"]>>;
  try {
    stored = await inbox.enqueue(callback, new Date(clock()));
  } catch (error) {
    onOutcome?.("store_unavailable");
    logger.error({ ...ids, err: error }, "callback NOT accepted: the inbox could not store it");
    reply(
      503,
      errorBody("store_unavailable", [
        { message: "the callback could not be stored; retry later" },
      ]),
      { "Retry-After": String(STORE_RETRY_AFTER_SECONDS) },
    );
    return;
  }
  onOutcome?.(stored.duplicate ? "duplicate" : "accepted");
  const logLine = {
    ...ids,
    jobId: stored.id,
    // The mandator's own reference: what its people quote when they ask about a check.
    clientReference: callback.clientReference,
    status: callback.status,
    duplicate: stored.duplicate,
  };
  // One line either way: a status other than SUCCESSFUL gets its line from the worker,
  // which says what it does with it (nothing fetched, delivered as it is).
  if (stored.replacedStatus !== undefined) {
    logger.info(
      { ...logLine, replacedStatus: stored.replacedStatus },
      "callback accepted: it replaces the check's stored callback, whose status was another; the job runs again with this one",
    );
  } else logger.info(logLine, "callback accepted");
  reply(202, { accepted: true, duplicate: stored.duplicate, id: stored.id });
  if (stored.duplicate) void warnIfDifferent(callback, stored.id, deps);
}

const COMPARED_FIELDS = ["status", "errorMessage", "clientReference"] as const;

/**
 * A sender's retry of a callback is the same callback. One that differs and did not
 * replace the stored one (Inbox.enqueue: that stands when it is SUCCESSFUL, or has this
 * status) must not pass as an ordinary duplicate. Read after the answer (duplicates are rare).
 */
async function warnIfDifferent(callback: Callback, jobId: string, deps: AcceptDeps) {
  const job = await deps.inbox.get(jobId).catch(() => null);
  if (!job) return;
  // A field left out and one sent as null say the same.
  const differs = COMPARED_FIELDS.filter(
    (field) => (job.callback[field] ?? null) !== (callback[field] ?? null),
  );
  if (differs.length === 0) return;
  deps.logger.warn(
    {
      processToken: callback.processToken,
      kreditCheckId: callback.kreditCheckId,
      jobId,
      jobState: job.state,
      differs,
      storedStatus: job.callback.status,
      status: callback.status,
    },
    "duplicate callback differs from the stored one: the stored one stands and this one is not processed; to see finAPI's result now: npm run cli -- fetch --process-token … --kreditcheck-id …",
  );
}
