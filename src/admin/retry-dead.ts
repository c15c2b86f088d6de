import { nearest } from "../edit-distance.js";
import { ERROR_CODES, isErrorCode } from "../errors.js";

/**
 * What the CLI needs of the admin API: one call, JSON in and out. A call the API answered
 * with an error status throws an error carrying that `status`; any other failure (the
 * API is unreachable) throws one without.
 */
export type AdminCall = (method: string, path: string, body?: unknown) => Promise<unknown>;

/**
 * The admin API is of a release older than this CLI and would not do what was asked (no
 * paging cursor, a retry condition ignored): the operator updates the service.
 */
export class OlderServiceError extends Error {
  override name = "OlderServiceError";
}

interface ListedJob {
  id: string;
  lastError: string | null;
  /** Missing from a service of an earlier release, null when the job's store had none. */
  lastErrorCodes?: string[] | null;
}

interface JobPage {
  jobs: ListedJob[];
  next: string | null;
}

export interface RetryJobsResult {
  requeued: number;
  ids: string[];
  /** Jobs that could not be put back (e.g. retried meanwhile by someone else). */
  failed: { id: string; error: string }[];
  /**
   * Pending jobs that left pending on their own before their turn (a worker took them,
   * or they finished): not failures, and not replayed.
   */
  noLongerPending?: number;
  /** Set when the run stopped early (the admin API went away): what was done stands. */
  error?: string;
}

/** An error code as the service writes them: lower case, digits, underscores. */
const CODE = "[a-z0-9_]+";
export const ERROR_CODE = new RegExp(`^${CODE}$`);
const OWN_CODE = new RegExp(`^(${CODE}): |last error: (${CODE}): `);
const SINK_CODE = new RegExp(`^[^\\s:;()]+: (${CODE}): `);

const PAGE = 1000;
const START = "00000000-0000-0000-0000-000000000000";

/**
 * Retries every job in `state` (dead unless given), or those whose last error has `code`.
 *
 * Dead: puts each back to pending, or those whose last error has `code` (see
 * `codesOf`), each only if it is still dead (`ifState=dead`): one that another operator
 * retried meanwhile is listed in `failed`, not put back or replayed twice. Walks the dead
 * jobs in id order with a cursor, so each is looked at once: a job that dies again at
 * once, one the API refuses and one that does not match all stay behind the cursor, and
 * the run ends after the last page.
 *
 * With `state` pending: makes every pending job (or those whose last error has `code`)
 * due now, e.g. once finAPI is back after an outage, instead of each waiting out its
 * backoff (up to BACKOFF_MAX_MS). One that left pending meanwhile is counted apart and
 * left as it is.
 */
export async function retryJobs(
  call: AdminCall,
  code?: string,
  fresh = false,
  /** Filled with the codes of every job looked at: for a hint when none matched. */
  codesSeen?: Set<string>,
  state: "dead" | "pending" = "dead",
): Promise<RetryJobsResult> {
  const result: RetryJobsResult = {
    requeued: 0,
    ids: [],
    failed: [],
    ...(state === "pending" ? { noLongerPending: 0 } : {}),
  };
  try {
    for (let after: string | null = START; after !== null; ) {
      const page = await call("GET", `/jobs?state=${state}&limit=${PAGE}&after=${after}`);
      if (!isJobPage(page)) {
        // A service from before the cursor ignores `after` and would list the same jobs again.
        throw new OlderServiceError(
          "the admin API answered without a paging cursor (next): the service is older than this CLI; update it, or retry jobs one by one",
        );
      }
      for (const job of page.jobs) {
        const codes = codesOf(job);
        for (const each of codes) codesSeen?.add(each);
        if (code !== undefined && !codes.includes(code)) continue;
        try {
          // Only if the job is still in `state`: one that another operator retried since
          // this page was read (or, pending, that finished) answers 409 and is left alone.
          const answer = (await call("POST", retryPath(job.id, fresh, state))) as {
            previousState?: unknown;
            ifState?: unknown;
          } | null;
          result.requeued += 1;
          result.ids.push(job.id);
          // A service older than ifState ignores it (its answer does not echo it) and may
          // replay a job that left `state` meanwhile, answering the state it found: stop at
          // the first such answer, so at most one job is replayed.
          if (answer?.ifState !== state && answer?.previousState !== state) {
            throw new OlderServiceError(
              `the admin API retried job ${job.id} without applying ifState=${state} (it was ${String(answer?.previousState ?? "in an unknown state")}): the service is older than retry --all-${state}; update it`,
            );
          }
        } catch (error) {
          // This job only (404: pruned; 409: retried meanwhile): note it, go on. Anything
          // else (unreachable, 401, 5xx: the store is down) would fail every job alike: stop.
          const status = (error as { status?: unknown }).status;
          // A service of the release before ifState=dead refuses it by name (400).
          if (status === 400 && (error as Error).message.includes("ifState")) {
            throw new OlderServiceError(
              `the admin API does not take ifState=${state} (${(error as Error).message}): the service is older than retry --all-${state}; update it, or retry jobs one by one (npm run cli -- retry <id>)`,
            );
          }
          if (status !== 404 && status !== 409) throw error;
          if (state === "pending" && status === 409 && result.noLongerPending !== undefined) {
            result.noLongerPending += 1;
            continue;
          }
          result.failed.push({ id: job.id, error: (error as Error).message });
        }
      }
      after = page.next;
    }
  } catch (error) {
    // Nothing done yet (a wrong token or URL): a plain error, as for any other command.
    if (result.requeued === 0 && result.failed.length === 0) throw error;
    result.error = (error as Error).message;
  }
  return result;
}

function isJobPage(page: unknown): page is JobPage {
  const candidate = page as Partial<JobPage> | null;
  return (
    Array.isArray(candidate?.jobs) &&
    (candidate.next === null || typeof candidate.next === "string")
  );
}

/**
 * The codes of a job's last error, as the store keeps them; read off the text only for a
 * job whose codes were not stored (it failed under an earlier release).
 */
function codesOf(job: ListedJob): readonly string[] {
  return Array.isArray(job.lastErrorCodes) ? job.lastErrorCodes : errorCodesOf(job.lastError ?? "");
}

/**
 * The codes a job's last error text names: its own (`<code>: …`, or after `last error: ` when
 * the job gave up), and, for a failed delivery (`<code>: delivery failed (<sink>: <code>:
 * …; <sink>: <code>: …)`), each sink's.
 */
export function errorCodesOf(lastError: string): string[] {
  const head = OWN_CODE.exec(lastError);
  const code = head?.[1] ?? head?.[2];
  if (!head || !code) return [];
  const codes = [code];
  const rest = lastError.slice(head.index + head[0].length);
  // A sink's message could itself hold "; word: some_code: " (an http sink quotes its
  // receiver's answer); such a text would count as one more sink's code. Rare (only jobs
  // without stored codes are read this way), and it can only widen a --code run, never
  // hide a job.
  if (rest.startsWith("delivery failed (")) {
    for (const part of rest.slice("delivery failed (".length).split("; ")) {
      const sink = SINK_CODE.exec(part);
      if (sink?.[1]) codes.push(sink[1]);
    }
  }
  return codes;
}

/**
 * The admin API's path that retries job `id` (`fresh`: fetched again for every sink;
 * `ifState`: a job no longer in that state is left as it is, answered 409).
 */
export function retryPath(id: string, fresh: boolean, ifState?: "pending" | "dead"): string {
  const query = [...(fresh ? ["fresh=true"] : []), ...(ifState ? [`ifState=${ifState}`] : [])];
  return `/jobs/${encodeURIComponent(id)}/retry${query.length > 0 ? `?${query.join("&")}` : ""}`;
}

/**
 * A `--code` that is none of the service's (ERROR_CODES) is most likely a typo, but a
 * module sink may throw ReceiverErrors of a code of its own, which the store keeps like
 * any other: so it is not refused before the dead jobs were looked at. What to warn, or
 * undefined for a code of the service.
 */
export function unknownCodeWarning(
  code: string,
  state: "dead" | "pending" = "dead",
): string | undefined {
  if (isErrorCode(code)) return undefined;
  const near = nearestErrorCode(code);
  return `--code ${code} is none of the service's error codes${near ? ` (did you mean ${near}?)` : ""}; looking for ${state} jobs with it anyway, as a module sink may use codes of its own`;
}

/**
 * Why a --code run that no dead job matched retried nothing: the code the dead jobs have
 * that it most likely meant (a module sink's own, which the service's list cannot know),
 * and the dead jobs' codes.
 */
export function noMatchHint(
  code: string,
  codesSeen: ReadonlySet<string>,
  state: "dead" | "pending" = "dead",
): string {
  const near = nearest(code, codesSeen, () => 2);
  const seen = [...codesSeen].sort().join(", ");
  return `${near ? ` Did you mean ${near}?` : ""} The ${state} jobs' codes: ${seen || `none (no ${state} job)`}.`;
}

/** The service's error codes, for a message. */
export function knownErrorCodes(): string {
  return [...ERROR_CODES].sort().join(", ");
}

/** The code a typo most likely meant: at most 2 edits away, the closest. */
function nearestErrorCode(code: string): string | undefined {
  return nearest(code, ERROR_CODES, () => 2);
}
