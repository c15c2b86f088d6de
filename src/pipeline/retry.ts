import type { ReceiverError } from "../errors.js";

export interface RetryPolicy {
  maxAttempts: number;
  maxAgeMs: number;
  baseMs: number;
  maxMs: number;
}

/**
 * Exponential backoff with full jitter, capped at `maxMs`, never shorter than `baseMs`
 * (so a run of unlucky draws cannot become a tight loop) and never shorter than the
 * server's `Retry-After`.
 */
export function backoffDelay(
  attempt: number,
  policy: Pick<RetryPolicy, "baseMs" | "maxMs">,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.max(policy.baseMs, Math.floor(random() * ceiling));
  return Math.max(jittered, Math.ceil(retryAfterMs ?? 0));
}

export type RetryDecision =
  | { action: "retry"; runAt: Date; delayMs: number }
  | { action: "dead"; reason: string };

/** What to do with a failed attempt: try again later, or give up and say why. */
export function decideRetry(
  error: ReceiverError,
  job: { attempts: number; receivedAt: Date },
  policy: RetryPolicy,
  now: number,
  random?: () => number,
): RetryDecision {
  const described = error.describe();
  if (!error.retryable) return { action: "dead", reason: described };
  const withinDeadline = error.retryUntil !== undefined && now < error.retryUntil;
  if (job.attempts >= policy.maxAttempts && !withinDeadline) {
    return {
      action: "dead",
      reason: `gave up after ${attemptsText(job.attempts)} (MAX_ATTEMPTS=${policy.maxAttempts}); last error: ${described}`,
    };
  }
  let delayMs = backoffDelay(job.attempts, policy, error.retryAfterMs, random);
  if (withinDeadline && error.retryUntil !== undefined) {
    // The last try comes at the deadline, not a long backoff after it.
    delayMs = Math.max(
      Math.min(delayMs, error.retryUntil - now),
      policy.baseMs,
      error.retryAfterMs ?? 0,
    );
  }
  const ageMs = now - job.receivedAt.getTime();
  if (ageMs + delayMs > policy.maxAgeMs) {
    // Say which: the job is old, or only the wait asked for would take it past the limit.
    const why =
      ageMs > policy.maxAgeMs
        ? `the callback is older than JOB_MAX_AGE_MS=${policy.maxAgeMs}`
        : `the next attempt would come ${delayMs} ms from now${
            (error.retryAfterMs ?? 0) >= delayMs ? " (the Retry-After asked for)" : ""
          }, when the job is older than JOB_MAX_AGE_MS=${policy.maxAgeMs}`;
    return { action: "dead", reason: `gave up: ${why}; last error: ${described}` };
  }
  return { action: "retry", runAt: new Date(now + delayMs), delayMs };
}

/** "1 attempt", "3 attempts". */
export function attemptsText(count: number): string {
  return `${count} attempt${count === 1 ? "" : "s"}`;
}
