import { randomUUID } from "node:crypto";
import type { Axios, AxiosResponse } from "axios";
import type { z } from "zod";
import type { ReceiverError } from "../errors.js";
import {
  isCanceled,
  isTimeout,
  isTooLarge,
  noAnswerLogFields,
  parseRetryAfter,
} from "../http-transport.js";
import type { Logger } from "../logger.js";
import { sleep } from "../sleep.js";
import { CallDeadline, type CallLimits } from "./call-limits.js";
import {
  errorForStatus,
  type FinapiEndpoint,
  invalidResponseError,
  networkError,
  tooLargeError,
} from "./errors.js";
import { redact } from "./redact.js";
import type { TokenProvider } from "./token.js";

export interface CallContext {
  logger: Logger;
  signal?: AbortSignal;
}

export interface AuthorizedClientOptions {
  http: Axios;
  tokens: TokenProvider;
  /** Quick retries inside one attempt, before the job store's slower backoff takes over. */
  retries: number;
  /** Each call's body size limit and deadline (finapiCallLimits). */
  limits: CallLimits;
  /** Longest wait for an in-call retry; a longer `Retry-After` is left to the job store. */
  maxInlineDelayMs?: number;
  onResponse?: (endpoint: FinapiEndpoint, status: string, durationMs: number) => void;
}

/**
 * GETs with the manager token: a fresh `X-Request-Id` per call (logged with status and
 * duration, finAPI support works by it), one token refresh on 401, a few quick retries for
 * retryable answers, and typed errors for everything else.
 */
export class AuthorizedClient {
  constructor(private readonly options: AuthorizedClientOptions) {}

  /**
   * The parsed body, checked against `schema` but handed on as finAPI served it (not zod's
   * copy: key order and unknown fields stay as they were).
   */
  async getJson<T>(
    endpoint: FinapiEndpoint,
    url: string,
    ctx: CallContext,
    schema: z.ZodType<T>,
  ): Promise<T> {
    const { response, requestId, token } = await this.get(endpoint, url, ctx, "text");
    const text = String(response.data);
    const context = { endpoint, requestId, status: response.status };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      // The page is shown in the message: without the token, should it echo the request.
      const shown = { ...context, body: redact(text, [token]) };
      throw invalidResponseError(shown, "the body is not JSON", true);
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map(
        (issue) => `${issue.path.join(".")}: ${issue.message}`,
      );
      // JSON of the wrong shape is likely a real result (account data): its size goes into
      // the job's last error and the log, not its text. A non-JSON page is shown above.
      throw invalidResponseError(
        context,
        `${issues.join("; ")} (body of ${Buffer.byteLength(text)} bytes not shown: it may hold account data)`,
      );
    }
    return body as T;
  }

  /**
   * `contentType`: the document's, asked for in Accept (a server that honours Accept would
   * refuse the transport's application/json), with anything else as a fallback.
   */
  async getBinary(
    endpoint: FinapiEndpoint,
    url: string,
    ctx: CallContext,
    contentType?: string,
  ): Promise<Buffer> {
    const accept = contentType ? `${contentType}, */*;q=0.1` : "*/*";
    const { response } = await this.get(endpoint, url, ctx, "arraybuffer", accept);
    return Buffer.from(response.data as ArrayBuffer);
  }

  private async get(
    endpoint: FinapiEndpoint,
    url: string,
    ctx: CallContext,
    responseType: "text" | "arraybuffer",
    accept?: string,
  ): Promise<{ response: AxiosResponse; requestId: string; token: string }> {
    const { tokens, retries } = this.options;
    const maxInlineDelayMs = this.options.maxInlineDelayMs ?? 5000;
    let refreshedAfter401 = false;
    for (let attempt = 0; ; attempt++) {
      const token = await tokens.getToken(ctx.signal);
      const requestId = randomUUID();
      let outcome: { response: AxiosResponse } | { error: ReceiverError };
      outcome = await this.send(endpoint, url, token, requestId, ctx, responseType, accept);
      if ("response" in outcome) {
        const { response } = outcome;
        if (response.status >= 200 && response.status < 300) {
          return { response, requestId, token };
        }
        if (response.status === 401 && !refreshedAfter401) {
          // Expired or revoked: drop it and try once more with a fresh one.
          tokens.invalidate(token);
          refreshedAfter401 = true;
          attempt--;
          continue;
        }
        outcome = {
          error: errorForStatus({
            endpoint,
            requestId,
            status: response.status,
            // Without the token, should the answer echo the request.
            body:
              responseType === "text" ? redact(String(response.data ?? ""), [token]) : undefined,
            retryAfterMs: parseRetryAfter(response.headers["retry-after"]),
          }),
        };
      }
      const { error } = outcome;
      if (!error.retryable || attempt >= retries) throw error;
      const delayMs = Math.max(error.retryAfterMs ?? 0, 100 * 2 ** attempt * (0.5 + Math.random()));
      if (delayMs > maxInlineDelayMs) throw error;
      ctx.logger.debug({ endpoint, requestId, code: error.code, delayMs }, "retrying finAPI call");
      await sleep(delayMs, ctx.signal);
    }
  }

  private async send(
    endpoint: FinapiEndpoint,
    url: string,
    token: string,
    requestId: string,
    ctx: CallContext,
    responseType: "text" | "arraybuffer",
    /** Over the transport's Accept (application/json). */
    accept: string | undefined,
  ): Promise<{ response: AxiosResponse } | { error: ReceiverError }> {
    const startedAt = performance.now();
    const { limits } = this.options;
    const maxBytes = responseType === "text" ? limits.maxJsonBytes : limits.maxDocumentBytes;
    const deadline = new CallDeadline(limits.deadlineMs, ctx.signal);
    try {
      // request() rather than get(): get() merges its config once more before request()
      // merges it with the client's defaults; responseType only when it is not the
      // default. Each merge walks every key (about 20 us per call at 64 checks in flight).
      const response = await this.options.http.request({
        url,
        method: "get",
        headers: {
          Authorization: `Bearer ${token}`,
          "X-Request-Id": requestId,
          ...(accept ? { Accept: accept } : {}),
        },
        ...(responseType === "text" ? {} : { responseType }),
        maxContentLength: maxBytes,
        signal: deadline.signal,
      });
      const durationMs = Math.round(performance.now() - startedAt);
      this.options.onResponse?.(endpoint, String(response.status), durationMs);
      ctx.logger.info({ requestId, endpoint, status: response.status, durationMs }, "finAPI call");
      return { response };
    } catch (thrown) {
      // Stopped by the job (shutdown, lease lost), not by the deadline: handed back as is.
      if (isCanceled(thrown) && (ctx.signal?.aborted || !deadline.expired)) throw thrown;
      const durationMs = Math.round(performance.now() - startedAt);
      if (isTooLarge(thrown)) {
        this.options.onResponse?.(endpoint, "too_large", durationMs);
        ctx.logger.warn(
          { requestId, endpoint, durationMs, maxBytes },
          "finAPI's answer is larger than the receiver reads",
        );
        return { error: tooLargeError({ endpoint, requestId }, maxBytes) };
      }
      const error = deadline.failure(thrown);
      const timedOut = isTimeout(error);
      this.options.onResponse?.(endpoint, timedOut ? "timeout" : "network_error", durationMs);
      ctx.logger.warn(
        { requestId, endpoint, durationMs, ...noAnswerLogFields(error) },
        timedOut ? "finAPI call timed out" : "finAPI call failed",
      );
      return { error: networkError({ endpoint, requestId }, error, timedOut) };
    } finally {
      deadline.end();
    }
  }
}
