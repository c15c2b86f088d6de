import { AxiosError } from "axios";
import { isCanceled } from "../http-transport.js";

/**
 * Bounds of one finAPI call beside FINAPI_TIMEOUT_MS, which is an idle timeout: a body
 * that keeps coming, however large or slow, never trips it.
 */
export interface CallLimits {
  /** Most bytes read of a JSON answer (token, KreditCheck result, DAC reports, error bodies). */
  maxJsonBytes: number;
  /** Most bytes read of a document (account_pdf, dac_zip). */
  maxDocumentBytes: number;
  /** The whole call, headers and body, ends within this. */
  deadlineMs: number;
}

const MIB = 1024 * 1024;

/**
 * Far above any KreditCheck result or DAC report (kilobytes to a few MB). Without a bound,
 * a body of 700 MB (a wrong URL serving a dump, a proxy's error loop) ended the process
 * with an out-of-memory error, taking every other job's attempt with it.
 */
export const MAX_JSON_BYTES = 32 * MIB;

/**
 * Far above an account analysis PDF or a DAC zip (a few MB). Not larger: a document is held
 * in memory and carried in the bundle as base64 (the job's progress, the http and stdout
 * sinks), about 2.7 times its size on the heap while it is delivered.
 */
export const MAX_DOCUMENT_BYTES = 64 * MIB;

/**
 * The whole call within this many FINAPI_TIMEOUT_MS: the headers may take one, the body
 * at least one more. So the one setting bounds a call that keeps trickling, too.
 */
export const DEADLINE_TIMEOUTS = 2;

/** The longest timer Node runs as asked; a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The limits of every finAPI call with this FINAPI_TIMEOUT_MS. */
export function finapiCallLimits(timeoutMs: number): CallLimits {
  return {
    maxJsonBytes: MAX_JSON_BYTES,
    maxDocumentBytes: MAX_DOCUMENT_BYTES,
    // FINAPI_TIMEOUT_MS may be up to MAX_TIMER_MS itself: twice that cut every call at once.
    deadlineMs: Math.min(DEADLINE_TIMEOUTS * timeoutMs, MAX_TIMER_MS),
  };
}

/**
 * The signal of one call: aborted by the caller's (a job stopped) or at the deadline;
 * `expired` tells which (the deadline is a timeout, the caller's a cancellation). `end()`
 * when the call is over. Not AbortSignal.timeout and AbortSignal.any: their timer and
 * links lived on for the whole deadline after each call, about 15,000 of them at once
 * while bench:burst drained at 200 jobs in flight (peak RSS 148 against 140 MB).
 */
export class CallDeadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly callerAborted: (() => void) | undefined;
  private timedOut = false;

  constructor(
    private readonly deadlineMs: number,
    private readonly caller: AbortSignal | undefined,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, deadlineMs);
    // The call itself keeps the process alive while it lasts.
    this.timer.unref();
    if (caller?.aborted) this.controller.abort(caller.reason);
    else if (caller) {
      this.callerAborted = () => this.controller.abort(caller.reason);
      caller.addEventListener("abort", this.callerAborted, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Whether the deadline, not the caller, stopped the call. */
  get expired(): boolean {
    return this.timedOut;
  }

  /**
   * What the call failed with: a cancellation the deadline caused becomes
   * CallDeadlineExceeded (a timeout that names this bound); anything else as it is.
   */
  failure(thrown: unknown): unknown {
    return this.timedOut && isCanceled(thrown)
      ? new CallDeadlineExceeded(this.deadlineMs, thrown as Error)
      : thrown;
  }

  /** The call is over: its timer and its link to the caller's signal go. */
  end(): void {
    clearTimeout(this.timer);
    if (this.callerAborted) this.caller?.removeEventListener("abort", this.callerAborted);
  }
}

/**
 * A call the deadline cut off, as axios names a timeout (isTimeout): retried like one, and
 * its message says which bound it was, since FINAPI_TIMEOUT_MS alone was not exceeded.
 */
export class CallDeadlineExceeded extends AxiosError {
  /** `cancelled`: the call as the deadline stopped it (it knows the proxy it went through). */
  constructor(
    readonly deadlineMs: number,
    cancelled: Error,
  ) {
    super(
      `the whole answer had not come after ${deadlineMs} ms (${DEADLINE_TIMEOUTS} × FINAPI_TIMEOUT_MS)`,
      AxiosError.ETIMEDOUT,
    );
    this.cause = cancelled;
  }
}
