import { fetchFailureCause } from "../fetch-failure.js";
import type { AdminTargetSource } from "./cli-target.js";
import type { AdminCall } from "./retry-dead.js";

/** A CLI error the operator can act on (usage, the admin API's answer): exit 2. */
export class CliError extends Error {
  override name = "CliError";
  /** The admin API's answer status, when it answered. */
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * How long the CLI waits for the admin API's answer, whole (headers and body): without a
 * bound, fetch waits 300 s for the headers of a service that accepted the connection and
 * hangs, per call. `fetch` waits longer: the service's own fetch of a check from finAPI
 * may take 60 s (DIRECT_FETCH_TIMEOUT_MS in service.ts).
 */
export const ANSWER_TIMEOUT_MS = 30_000;
export const CHECK_FETCH_ANSWER_TIMEOUT_MS = 90_000;

/** The answer timeout of a CLI command. */
export function answerTimeoutMs(command: string): number {
  return command === "fetch" ? CHECK_FETCH_ANSWER_TIMEOUT_MS : ANSWER_TIMEOUT_MS;
}

export interface AdminClientOptions {
  /** The admin API's base URL (cliTarget), without /admin. */
  adminUrl: string;
  token: string | undefined;
  /** The setting that chose `adminUrl`: named when it cannot be reached or is not the API. */
  source: AdminTargetSource;
  /** Where the token came from, named when the API refuses it (401). */
  tokenFrom: "--token" | "ADMIN_TOKEN";
  /** No answer (headers and body) within this long: a CliError. */
  timeoutMs: number;
}

/**
 * The CLI's AdminCall over HTTP. `body`: a value sent as JSON, or bytes sent as they are (a
 * replayed file's). Every failure is a CliError: one the API answered with an error status
 * carries it; no answer, none in time, or one that is not JSON (a proxy's login page), none.
 */
export function adminClient(options: AdminClientOptions): AdminCall {
  const { adminUrl, token, source, tokenFrom, timeoutMs } = options;
  return async (method, path, body) => {
    const url = `${adminUrl}/admin${path}`;
    const signal = AbortSignal.timeout(timeoutMs);
    const noAnswer = (error: unknown) =>
      isTimeout(error, signal)
        ? new CliError(
            `no answer within ${timeoutMs / 1000} s from the admin API: ${method} ${url}; is the service stuck or overloaded, and is ${source} right?`,
          )
        : undefined;
    // Built before fetch: a token it cannot put into a header (a '€', a line break) makes
    // fetch throw a TypeError without a cause, which would read as "cannot reach the admin
    // API (no answer)" and send the operator looking at the network.
    let headers: Headers;
    try {
      headers = new Headers({
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      });
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      // Not the TypeError's message: for a line break it quotes the header, token and all.
      throw new CliError(
        `the admin token (${tokenFrom === "--token" ? "given with --token" : "in ADMIN_TOKEN"}) cannot be sent in an HTTP header: it has a character beyond ASCII or a control character; the service takes only letters, digits and - . _ ~ + / =`,
      );
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        signal,
        headers,
        body:
          body === undefined ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body),
      });
    } catch (error) {
      throw (
        noAnswer(error) ??
        new CliError(
          `cannot reach the admin API at ${adminUrl} (${failureReason(error)}): is the service running, and is ${source} right?`,
        )
      );
    }
    let text: string;
    try {
      // The signal bounds the body too: headers sent, then nothing.
      text = await response.text();
    } catch (error) {
      throw (
        noAnswer(error) ??
        new CliError(
          `${method} /admin${path} → ${response.status}: the answer broke off (${failureReason(error)})`,
        )
      );
    }
    if (!response.ok) {
      // The service names ADMIN_TOKEN; say which token this command sent, if any.
      const sent =
        response.status !== 401
          ? ""
          : !token
            ? " (no token was sent: set ADMIN_TOKEN or pass --token)"
            : tokenFrom === "--token"
              ? " (the token given with --token)"
              : " (the token in ADMIN_TOKEN)";
      throw new CliError(
        `${method} /admin${path} → ${response.status}: ${text}${sent}`,
        response.status,
      );
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // No status: not the API's answer to this call, so not one job's trouble either.
      const type = response.headers.get("content-type");
      throw new CliError(
        `${method} /admin${path} → ${response.status}: the answer is not JSON (${type ? `Content-Type ${type}` : "no Content-Type"}): is ${source} (${adminUrl}) the service's admin API, and not a proxy or another server?`,
      );
    }
  };
}

/** Whether `error` is the abort of `signal` by its timeout. */
function isTimeout(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (error as { name?: unknown } | null)?.name === "TimeoutError";
}

/**
 * Why fetch got no answer (fetchFailureCause): the cause's message would repeat the address
 * the CLI names itself, so its code comes first.
 */
function failureReason(error: unknown): string {
  return fetchFailureCause(error) ?? "no answer";
}
