/** What the CLI needs of the admin API: one call, JSON in and out. */
export type AdminCall = (method: string, path: string, body?: unknown) => Promise<unknown>;

interface DeadJob {
  id: string;
  lastError: string | null;
}

export interface RetryDeadResult {
  requeued: number;
  ids: string[];
  /** Jobs that could not be put back (e.g. retried meanwhile by someone else). */
  failed: { id: string; error: string }[];
}

/** The most the admin API lists at once. */
const PAGE = 1000;

/**
 * Puts every dead job back to pending, or those whose last error carries `code` (as
 * `<code>: …`, after `last error: ` when the job gave up after its attempts, or as a
 * sink's code inside a delivery failure). Pages
 * through the newest dead jobs: each requeued job leaves the list, so the next page shows
 * older ones; a job that dies again meanwhile is not retried twice in one run. With `code`,
 * the run ends at a page of 1,000 dead jobs in which none matches.
 */
export async function retryDeadJobs(call: AdminCall, code?: string): Promise<RetryDeadResult> {
  const matches = code ? errorCodeMatcher(code) : () => true;
  const seen = new Set<string>();
  const result: RetryDeadResult = { requeued: 0, ids: [], failed: [] };
  for (;;) {
    const page = (await call("GET", `/jobs?state=dead&limit=${PAGE}`)) as { jobs: DeadJob[] };
    const fresh = page.jobs.filter((job) => !seen.has(job.id) && matches(job.lastError));
    if (fresh.length === 0) return result;
    for (const job of fresh) {
      seen.add(job.id);
      try {
        await call("POST", `/jobs/${encodeURIComponent(job.id)}/retry`);
        result.requeued += 1;
        result.ids.push(job.id);
      } catch (error) {
        result.failed.push({ id: job.id, error: (error as Error).message });
      }
    }
  }
}

function errorCodeMatcher(code: string): (lastError: string | null) => boolean {
  const escaped = code.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // `<code>: …` at the start or after `last error: `; a sink's own code also inside
  // `sink_delivery_failed: delivery failed (<sink>: <code>: …; <sink>: <code>: …)`.
  const pattern = new RegExp(`(^|last error: |[(;] ?[^\\s;()]+: )${escaped}:`);
  return (lastError) => lastError !== null && pattern.test(lastError);
}
