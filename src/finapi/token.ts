import { randomUUID } from "node:crypto";
import type { Axios, AxiosResponse } from "axios";
import { untilAborted } from "../abortable.js";
import { type ErrorCode, ReceiverError } from "../errors.js";
import {
  isClosedTransport,
  isTimeout,
  isTooLarge,
  noAnswerLogFields,
  parseRetryAfter,
} from "../http-transport.js";
import type { Logger } from "../logger.js";
import { CallDeadline, type CallLimits } from "./call-limits.js";
import {
  invalidResponseError,
  networkError,
  tokenAnswerUnreadable,
  tokenError,
  tooLargeError,
} from "./errors.js";
import { redact } from "./redact.js";
import { tokenResponseSchema } from "./schemas.js";

/** The port the finAPI clients use; `invalidate` drops a token a data call found rejected. */
export interface TokenProvider {
  /**
   * The shared refresh keeps going for other callers when one caller's signal aborts.
   * `logsFailure`: the caller logs a failure of the request it starts itself (the start-up
   * check), so the provider does not log it too.
   */
  getToken(signal?: AbortSignal, options?: { logsFailure?: boolean }): Promise<string>;
  invalidate(token: string): void;
}

export interface TokenProviderOptions {
  http: Axios;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** The answer's size limit (maxJsonBytes) and the request's deadline (finapiCallLimits). */
  limits: Pick<CallLimits, "maxJsonBytes" | "deadlineMs">;
  /** Ask for a new token this long before the cached one expires. */
  refreshMarginMs: number;
  logger: Logger;
  clock?: () => number;
  /** Told about each token request's outcome (metrics). */
  onRequest?: (outcome: "success" | "failure") => void;
  /** Told each token request's HTTP status (or timeout, network_error, too_large) and duration. */
  onResponse?: (status: string, durationMs: number) => void;
}

/**
 * After a failed token request, a background refresh (the cached token still works) waits
 * at least this long before it tries again, or longer when finAPI sent Retry-After.
 */
const EARLY_REFRESH_PAUSE_MS = 5000;

interface CachedToken {
  token: string;
  expiresAt: number;
  refreshAt: number;
}

/**
 * Manager token by the OAuth client_credentials grant. Concurrent callers share one
 * request (single flight); the promise is dropped on success and on failure alike.
 *
 * finAPI answers with the same token until it expires, so `expires_in` is the *remaining*
 * lifetime. When that is shorter than the margin, the token is used until it really
 * expires instead of being asked for again in a loop.
 */
export class ClientCredentialsTokenProvider implements TokenProvider {
  private cached: CachedToken | undefined;
  private inflight: Promise<CachedToken> | undefined;
  /**
   * The last request's failure: until `retryAfterUntil` (its Retry-After) it is finAPI's
   * answer for everyone; until `pauseUntil` no background refresh is tried.
   */
  private failure:
    | { error: unknown; retryAfterUntil: number | undefined; pauseUntil: number }
    | undefined;
  private readonly clock: () => number;

  constructor(private readonly options: TokenProviderOptions) {
    this.clock = options.clock ?? Date.now;
  }

  async getToken(signal?: AbortSignal, options?: { logsFailure?: boolean }): Promise<string> {
    const now = this.clock();
    const cached = this.cached;
    if (cached && now < cached.refreshAt) return cached.token;
    // A job already stopped (shutdown, lost lease) starts no request it would not wait for.
    if (signal?.aborted) throw signal.reason;
    if (cached && now < cached.expiresAt) {
      // Inside the refresh margin, with a token that still works: callers get it at once,
      // and the refresh runs in the background, no sooner than a failed one allows.
      if (!this.inflight && !(this.failure && now < this.failure.pauseUntil)) {
        this.startRequest(cached.expiresAt).catch(() => undefined);
      }
      return cached.token;
    }
    // finAPI said how long to wait (Retry-After): until then, its answer stands, with what
    // is left of the wait (a job failing on it later waits that long, not all of it again).
    const failure = this.failure;
    if (!this.inflight && failure?.retryAfterUntil !== undefined && now < failure.retryAfterUntil) {
      throw withRetryAfter(failure.error, failure.retryAfterUntil - now);
    }
    const request = this.inflight ?? this.startRequest(undefined, options?.logsFailure === true);
    return (await (signal ? untilAborted(request, signal) : request)).token;
  }

  /**
   * One request shared by every caller until it settles (single flight). `stillValidUntil`:
   * an early refresh, while the cached token still works until then.
   */
  private startRequest(stillValidUntil?: number, callerLogs = false): Promise<CachedToken> {
    const request = this.requestToken(stillValidUntil, callerLogs).then(
      (token) => {
        this.failure = undefined;
        return token;
      },
      (error: unknown) => {
        const retryAfterMs = (error as { retryAfterMs?: number }).retryAfterMs;
        const failedAt = this.clock();
        this.failure = {
          error,
          retryAfterUntil: retryAfterMs === undefined ? undefined : failedAt + retryAfterMs,
          pauseUntil: failedAt + Math.max(retryAfterMs ?? 0, EARLY_REFRESH_PAUSE_MS),
        };
        throw error;
      },
    );
    const shared = request.finally(() => {
      this.inflight = undefined;
    });
    // Each caller sees a failure through its own await; this one only keeps a failed
    // request whose callers have all stopped waiting from being an unhandled rejection
    // (which ends the process).
    shared.catch(() => undefined);
    this.inflight = shared;
    return shared;
  }

  invalidate(token: string): void {
    if (this.cached?.token === token) {
      this.cached = undefined;
      this.options.logger.info(
        "finAPI rejected the cached access token; a new one will be requested",
      );
    }
  }

  private async requestToken(stillValidUntil?: number, callerLogs = false): Promise<CachedToken> {
    const { http, tokenUrl, clientId, clientSecret, logger } = this.options;
    // A refresh that fails while the cached token still works affects nothing yet: a
    // warning that says so, not an error that pages someone (it becomes one if the token
    // runs out before a refresh succeeds: then every call needs the request).
    // One failure, one line: for a caller that logs it itself, the details at debug here.
    // Without a token to use, an error only when retrying cannot help (credentials, a wrong
    // URL): a 503 for a few seconds is waited out by the jobs, each saying so, and did not
    // need to page anyone.
    const logFailure = (error: ReceiverError) => {
      const fields = { requestId, code: error.code, fix: error.fix };
      const message = error.message;
      return callerLogs
        ? logger.debug(fields, message)
        : stillValidUntil === undefined
          ? logger[error.retryable ? "warn" : "error"](fields, message)
          : logger.warn(
              { ...fields, currentTokenValidUntil: new Date(stillValidUntil).toISOString() },
              `${message} (an early refresh: the current token is still used until it expires; tried again in a few seconds)`,
            );
    };
    const requestId = randomUUID();
    const startedAt = this.clock();
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: clientId,
      client_secret: clientSecret,
    });
    let response: AxiosResponse<string>;
    const sentAt = performance.now();
    const took = () => Math.round(performance.now() - sentAt);
    const { maxJsonBytes, deadlineMs } = this.options.limits;
    // No caller's signal: the request is shared, and goes on when one caller stops waiting.
    const deadline = new CallDeadline(deadlineMs, undefined);
    try {
      response = await http.post(tokenUrl, form.toString(), {
        headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Request-Id": requestId },
        maxContentLength: maxJsonBytes,
        signal: deadline.signal,
      });
      this.options.onResponse?.(String(response.status), took());
    } catch (thrown) {
      if (isTooLarge(thrown)) {
        this.options.onResponse?.("too_large", took());
        this.options.onRequest?.("failure");
        const error = tooLargeError({ endpoint: "token", requestId }, maxJsonBytes);
        logFailure(error);
        throw error;
      }
      const error = deadline.failure(thrown);
      if (isClosedTransport(error)) {
        // Not finAPI's doing: the service stopped while the request was on its way. Not
        // counted either, as a data call cancelled by shutdown is not: an alert on token
        // failures should not fire on a rollout.
        logger.info({ requestId, endpoint: "token" }, "finAPI token request cut short: stopping");
      } else {
        this.options.onResponse?.(isTimeout(error) ? "timeout" : "network_error", took());
        this.options.onRequest?.("failure");
        logger[callerLogs ? "debug" : "warn"](
          { requestId, endpoint: "token", ...noAnswerLogFields(error) },
          "finAPI token request failed",
        );
      }
      throw networkError({ endpoint: "token", requestId }, error, isTimeout(error));
    } finally {
      deadline.end();
    }
    const durationMs = this.clock() - startedAt;
    const body = String(response.data ?? "");
    // What of the answer goes into messages: without the secret an echo would show, or a token.
    const shown = () => redact(body, [clientSecret, this.cached?.token]);
    logger.info(
      { requestId, endpoint: "token", status: response.status, durationMs },
      "finAPI token request",
    );
    if (response.status < 200 || response.status >= 300) {
      this.options.onRequest?.("failure");
      const oauthError = parseOauthError(shown());
      const error = tokenError(
        {
          endpoint: "token",
          requestId,
          status: response.status,
          body: shown(),
          // An outage that says how long it lasts is waited out, not polled.
          retryAfterMs: parseRetryAfter(response.headers["retry-after"]),
        },
        oauthError,
      );
      logFailure(error);
      throw error;
    }
    const json = safeJson(body);
    const parsed = tokenResponseSchema.safeParse(json);
    if (!parsed.success) {
      this.options.onRequest?.("failure");
      const issues = parsed.error.issues;
      // An access_token with a field beside it unusable: a token endpoint, and the message
      // names the field, not a wrong URL. Only the field's value is shown, not the answer
      // (it holds the token).
      const hasToken = issues.every(
        (issue) => issue.path.length > 0 && issue.path[0] !== "access_token",
      );
      const error = hasToken
        ? invalidResponseError(
            { endpoint: "token", requestId, status: response.status },
            issues.map((issue) => fieldProblem(json, issue.path, issue.message)).join("; "),
          )
        : // A page's text says what answered; JSON is not shown (it may hold a credential).
          tokenAnswerUnreadable({
            endpoint: "token",
            requestId,
            status: response.status,
            ...(json === undefined ? { body: shown() } : {}),
          });
      logFailure(error);
      throw error;
    }
    this.options.onRequest?.("success");
    const token = parsed.data.access_token;
    const lifetimeMs = (parsed.data.expires_in ?? 3600) * 1000;
    // expires_in 0 means "never expires", unless it is the token we already hold with a
    // finite expiry: then it is a token with less than a second left.
    const neverExpires =
      lifetimeMs === 0 && !(this.cached?.token === token && Number.isFinite(this.cached.expiresAt));
    const expiresAt = neverExpires
      ? Number.POSITIVE_INFINITY
      : startedAt + Math.max(lifetimeMs, 1000);
    const margin = this.options.refreshMarginMs;
    const refreshAt = neverExpires
      ? Number.POSITIVE_INFINITY
      : lifetimeMs > margin
        ? expiresAt - margin
        : expiresAt;
    this.cached = { token, expiresAt, refreshAt };
    return this.cached;
  }
}

/** `expires_in is "soon", not a number of seconds`, from a zod issue of the token answer. */
function fieldProblem(json: unknown, path: readonly PropertyKey[], message: string): string {
  const name = path.map(String).join(".");
  if (name !== "expires_in") return `${name}: ${message}`;
  const value = JSON.stringify((json as Record<string, unknown>).expires_in) ?? "";
  const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
  return `expires_in is ${shown}, not a number of seconds`;
}

/** The same failure, to be waited out for `retryAfterMs` from now. */
function withRetryAfter(error: unknown, retryAfterMs: number): unknown {
  if (!(error instanceof ReceiverError)) return error;
  return new ReceiverError(error.message, {
    // A ReceiverError's code is always one of ERROR_CODES (its constructor takes no other).
    code: error.code as ErrorCode,
    retryable: error.retryable,
    fix: error.fix,
    retryAfterMs,
    retryUntil: error.retryUntil,
    details: { ...error.details, retryAfterMs },
    causeCodes: error.codes,
    cause: error.cause,
  });
}

function safeJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

function parseOauthError(body: string): string | undefined {
  const parsed = safeJson(body) as { error?: unknown; error_description?: unknown } | undefined;
  if (!parsed || typeof parsed.error !== "string") return undefined;
  return typeof parsed.error_description === "string"
    ? `${parsed.error}: ${parsed.error_description}`
    : parsed.error;
}
