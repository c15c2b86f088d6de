import { setImmediate } from "node:timers/promises";
import { type Callback, isSuccessful, SAFE_ID_PATTERN } from "../callback.js";
import { type ErrorCode, ReceiverError, toReceiverError } from "../errors.js";
import type {
  DacReportResponse,
  DacReportSource,
  DocumentName,
  DocumentSource,
  KreditCheckResult,
  KreditCheckSource,
} from "../finapi/ports.js";
import { caseIdsOf } from "../finapi/schemas.js";
import type { Job, JobProgress } from "../inbox/inbox.js";
import type { Logger } from "../logger.js";
import {
  type Bundle,
  type BundleDocument,
  bundleFromJson,
  bundleToJson,
  type JsonBundle,
  type Problem,
  type Sink,
} from "../sinks/sink.js";
import { settleWithLimit } from "./map-limit.js";

export interface PipelineDeps {
  kreditChecks: KreditCheckSource;
  dacReports: DacReportSource;
  documentSource: DocumentSource;
  /** FETCH_DOCUMENTS: documents fetched besides the JSON (none by default). */
  documents: readonly DocumentName[];
  sinks: readonly Sink[];
  /** A 404 on the result is "not ready yet" for this long after the callback. */
  notFoundGraceMs: number;
  dacConcurrency: number;
  clock: () => number;
  onDelivery?: (sink: string, result: "success" | "failure") => void;
}

/** What a bundle is made from: the callback and when it was accepted. */
export interface CheckRequest {
  callback: Callback;
  receivedAt: Date;
}

export interface FetchContext {
  logger: Logger;
  signal: AbortSignal;
}

export interface CheckRun {
  job: Job;
  logger: Logger;
  signal: AbortSignal;
  /** Updated in place; the worker stores it with a retry so the next attempt resumes. */
  progress: JobProgress;
  /**
   * Called once everything is fetched, before the bundle goes to the sinks: the worker
   * may start the next check's finAPI calls while this one is delivered.
   */
  fetched?: () => void;
}

/** One check, start to end: fetch (once), then deliver to every sink that lacks it. */
export async function processCheck(deps: PipelineDeps, run: CheckRun): Promise<Bundle> {
  const saved = run.progress.bundle as JsonBundle | undefined;
  const bundle = saved ? bundleFromJson(saved) : await assembleBundle(deps, run.job, run);
  run.fetched?.();
  // Files and posts wait until the answers already in (other checks' finAPI replies)
  // have been handled: those start the next requests, this only writes. At C = 64 the
  // slots run in step and their answers arrive together; writing each bundle first held
  // the rest back (a small gain: about 0.03 of the pipeline ratio at C = 64; issue 7).
  // Twice: undici writes a request for an idle keep-alive socket from a setImmediate of
  // its own (it first lets the poll phase show what arrived on that socket). With one
  // turn, the deliveries of the answers handled in a poll phase ran in the same check
  // phase as, and partly ahead of, the requests those answers started; with two, those
  // requests go out first (another 0.04 or so: medians 1.256 against 1.299, better in 11
  // of 16 alternated pairs).
  await setImmediate();
  await setImmediate();
  // Kept for the retry only (progress is JSON: documents as base64); a delivery that
  // succeeds at once never pays for the encoding. Also kept the moment the run is
  // aborted: a sink that ignores its signal keeps the run from ending, and the worker
  // then gives the job back with its progress as it is, so the next attempt must not
  // have to ask finAPI again.
  const keep = () => {
    run.progress.bundle ??= bundleToJson(bundle);
  };
  run.signal?.addEventListener("abort", keep, { once: true });
  if (run.signal?.aborted) keep();
  try {
    await deliver(deps, bundle, run);
  } catch (error) {
    keep();
    throw error;
  } finally {
    run.signal?.removeEventListener("abort", keep);
  }
  return bundle;
}

/** Fetches everything a bundle holds; used by the worker and by the admin "fetch" command. */
export async function assembleBundle(
  deps: PipelineDeps,
  check: CheckRequest,
  ctx: FetchContext,
): Promise<Bundle> {
  const { logger, signal } = ctx;
  const callback = check.callback;
  const receivedAt = check.receivedAt.toISOString();
  if (!isSuccessful(callback)) {
    // Info: a customer whose check failed is the mandator's business, not the operator's;
    // the bundle says so to the sinks, and there is nothing to fix here.
    logger.info(
      { status: callback.status, errorMessage: callback.errorMessage },
      "callback status is not SUCCESSFUL: nothing is fetched, the callback goes to the sinks as it is",
    );
    const detail = callback.errorMessage ? ` (${callback.errorMessage})` : "";
    return {
      callback,
      kreditCheck: null,
      dacReports: {},
      problems: [
        {
          code: "callback_not_successful",
          message: `finAPI reported status ${JSON.stringify(callback.status)}${detail}; no result was fetched.`,
        },
      ],
      receivedAt,
      completedAt: new Date(deps.clock()).toISOString(),
      // Listed as none, not left out: a sink that keeps documents (the file sink) removes
      // those an earlier delivery of this check wrote, so they do not sit beside this one.
      ...(deps.documents.length > 0 ? { documents: [] } : {}),
    };
  }

  const kreditCheck = await fetchKreditCheck(deps, check, ctx);
  const problems: Problem[] = [];
  const caseIds: string[] = [];
  for (const caseId of caseIdsOf(kreditCheck)) {
    if (SAFE_ID_PATTERN.test(caseId)) caseIds.push(caseId);
    else {
      problems.push({
        code: "unsafe_case_id",
        caseId,
        message: "the caseId does not match [A-Za-z0-9._-]{1,128}; its DAC report was not fetched.",
      });
    }
  }
  const settled = await settleWithLimit(caseIds, deps.dacConcurrency, (caseId) =>
    deps.dacReports.getDacReports(caseId, { logger: logger.child({ caseId }), signal }),
  );
  const dacReports: Record<string, DacReportResponse> = {};
  let retryable: ReceiverError | undefined;
  let fatal: ReceiverError | undefined;
  settled.forEach((result, index) => {
    const caseId = caseIds[index] as string;
    if (result.status === "fulfilled") {
      // Defined, not assigned: a caseId "__proto__" (the pattern allows it) would set the
      // object's prototype instead, and the report would vanish from the bundle.
      Object.defineProperty(dacReports, caseId, {
        value: result.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      return;
    }
    const error = toReceiverError(result.reason);
    if (error.retryable) {
      // The retry must wait for the longest Retry-After among the failed reports.
      if ((error.retryAfterMs ?? 0) > (retryable?.retryAfterMs ?? -1)) retryable = error;
    } else if (error.code !== "finapi_not_found") {
      // Only a report finAPI does not have is a note in the bundle. Any other permanent
      // failure (a missing scope, bad credentials, a 400, an answer that is not a report:
      // a wrong FINAPI_DI_URL serving a page) kills the job, as README's table says,
      // rather than delivering a bundle without reports it should have.
      // Named by its case: finAPI's answer alone does not say which report it refused.
      fatal ??= new ReceiverError(`case ${caseId}: ${error.message}`, {
        // A ReceiverError's code is always one of ERROR_CODES (its constructor takes no other).
        code: error.code as ErrorCode,
        retryable: false,
        fix: error.fix,
        details: { ...error.details, caseId },
        causeCodes: error.codes,
        cause: error,
      });
    } else {
      problems.push({
        code: error.code,
        caseId,
        message: error.message,
        ...(error.fix ? { fix: error.fix } : {}),
      });
      logger.warn(
        { caseId, code: error.code, fix: error.fix },
        "DAC report could not be fetched; noted in the bundle's problems",
      );
    }
  });
  if (signal.aborted) throw signal.reason;
  // Retrying cannot help (a scope missing, a wrong URL): the job dies at once.
  if (fatal) throw fatal;
  if (retryable) throw retryable;
  const documents = await fetchDocuments(deps, check, ctx, problems);
  return {
    callback,
    kreditCheck,
    dacReports,
    problems,
    receivedAt,
    completedAt: new Date(deps.clock()).toISOString(),
    ...(deps.documents.length > 0 ? { documents } : {}),
  };
}

/** The documents in FETCH_DOCUMENTS; one finAPI cannot give (404, 403) becomes a problem. */
async function fetchDocuments(
  deps: PipelineDeps,
  check: CheckRequest,
  ctx: FetchContext,
  problems: Problem[],
): Promise<BundleDocument[]> {
  const { callback } = check;
  const { logger, signal } = ctx;
  const documents: BundleDocument[] = [];
  for (const name of deps.documents) {
    try {
      const document = await deps.documentSource.getDocument(
        callback.processToken,
        callback.kreditCheckId,
        name,
        { logger: logger.child({ document: name }), signal },
      );
      documents.push({ name, ...document });
    } catch (thrown) {
      const error = toReceiverError(thrown);
      // A 403 here is about one document product, not the scope (the result under the
      // same URL was just served): it is a problem entry, the check is delivered. Another
      // refusal (a 400) fails the job, as for a DAC report, instead of a done job that
      // lacks its document.
      if (!isDocumentProblem(error)) throw error;
      problems.push({
        code: error.code,
        document: name,
        message: error.message,
        ...(error.fix ? { fix: error.fix } : {}),
      });
      logger.warn(
        { document: name, code: error.code, fix: error.fix },
        "document could not be fetched; noted in the bundle's problems",
      );
    }
  }
  return documents;
}

/**
 * What a document finAPI cannot give (README: a "problems" entry with `document`): it has
 * none for this check (404), or refuses this document product (403); and one larger than
 * the receiver reads (isDocumentProblem). Anything else is the
 * job's failure: a refused token (every check would miss the same until the credentials
 * are fixed, so operators see it and retry once fixed), a 400, an answer of the wrong
 * shape, or what a retry may mend.
 */
const DOCUMENT_PROBLEMS: ReadonlySet<string> = new Set(["finapi_not_found", "finapi_forbidden"]);

/** A document finAPI cannot give, or one larger than the receiver reads (call-limits.ts). */
function isDocumentProblem(error: ReceiverError): boolean {
  return DOCUMENT_PROBLEMS.has(error.code) || error.details.limitBytes !== undefined;
}

async function fetchKreditCheck(
  deps: PipelineDeps,
  check: CheckRequest,
  ctx: FetchContext,
): Promise<KreditCheckResult> {
  const { callback, receivedAt } = check;
  try {
    return await deps.kreditChecks.getKreditCheck(
      callback.processToken,
      callback.kreditCheckId,
      ctx,
    );
  } catch (error) {
    if (!(error instanceof ReceiverError) || error.code !== "finapi_not_found") throw error;
    const ageMs = deps.clock() - receivedAt.getTime();
    if (ageMs < deps.notFoundGraceMs) {
      // finAPI may call back before the result can be read: wait for it a while.
      throw new ReceiverError(`the KreditCheck result is not available yet (${error.message})`, {
        code: "result_not_ready",
        retryable: true,
        // MAX_ATTEMPTS' backoff alone can end sooner (full jitter may draw 24 short waits
        // with the defaults): the window is what README promises.
        retryUntil: receivedAt.getTime() + deps.notFoundGraceMs,
        fix: `finAPI may call back before the result can be read: a queued job tries again for NOT_FOUND_GRACE_MS after the callback. ${error.fix ?? ""}`.trim(),
        cause: error,
      });
    }
    throw new ReceiverError(
      `the KreditCheck result was still not found ${Math.round(ageMs / 1000)} s after the callback (${error.message})`,
      {
        code: "kreditcheck_not_found",
        retryable: false,
        fix: "check that FINAPI_PROCESSCTRL_URL points at the environment the callback came from; raise NOT_FOUND_GRACE_MS if results lag longer; then retry the dead job.",
        cause: error,
      },
    );
  }
}

async function deliver(deps: PipelineDeps, bundle: Bundle, run: CheckRun): Promise<void> {
  const delivered = new Set(run.progress.deliveredSinks ?? []);
  const pending = deps.sinks.filter((sink) => !delivered.has(sink.name));
  const settled = await Promise.all(
    pending.map(async (sink) => {
      try {
        await sink.deliver(bundle, {
          logger: run.logger.child({ sink: sink.name }),
          signal: run.signal,
        });
        delivered.add(sink.name);
        // At once, not when every sink has ended: a job given back while another sink
        // hangs (it ignores its abort) must not deliver to this one again.
        run.progress.deliveredSinks = [...delivered];
        deps.onDelivery?.(sink.name, "success");
        return undefined;
      } catch (error) {
        // Cut short by shutdown or a lost lease: the job is handed back, not failed, and
        // a deploy must not read as a sink's failure rate.
        if (!run.signal?.aborted) deps.onDelivery?.(sink.name, "failure");
        return { sink: sink.name, error: toReceiverError(error) };
      }
    }),
  );
  const failures = settled.filter((failure) => failure !== undefined);
  if (failures.length > 0) throw deliveryFailure(failures);
}

/**
 * One error for the sinks that failed: `sink_delivery_failed: delivery failed (<sink>:
 * <code>: …; …)`, retryable unless one of them is not. Its `codes` add each sink's, so
 * `retry --all-dead --code` finds a job by any of them (or all by sink_delivery_failed).
 */
export function deliveryFailure(
  failures: readonly { sink: string; error: ReceiverError }[],
): ReceiverError {
  // Each sink's fix once, after the summary (describe() appends it).
  const summary = failures
    .map(({ sink, error }) => `${sink}: ${error.code}: ${error.message}`)
    .join("; ");
  const fixes = [...new Set(failures.flatMap(({ error }) => (error.fix ? [error.fix] : [])))];
  return new ReceiverError(`delivery failed (${summary})`, {
    code: "sink_delivery_failed",
    retryable: failures.every(({ error }) => error.retryable),
    fix: fixes.length > 0 ? fixes.join(" ") : undefined,
    retryAfterMs: Math.max(0, ...failures.map(({ error }) => error.retryAfterMs ?? 0)) || undefined,
    causeCodes: failures.flatMap(({ error }) => error.codes),
  });
}
