import { type ErrorCode, ReceiverError } from "../errors.js";
import { proxyOf } from "../http-transport.js";
import { CallDeadlineExceeded } from "./call-limits.js";
import { DOCUMENTS, type DocumentName } from "./documents.js";

export type FinapiEndpoint = "token" | "kreditcheck" | "dac" | DocumentName;

export interface FinapiErrorContext {
  endpoint: FinapiEndpoint;
  requestId: string;
  status?: number;
  /** The answer's body, truncated: finAPI support asks for it together with the request id. */
  body?: string;
  retryAfterMs?: number;
  /** The answer was larger than this many bytes, the most the receiver reads (tooLargeError). */
  limitBytes?: number;
}

const MAX_BODY_CHARS = 500;

export function truncateBody(body: string | undefined): string | undefined {
  if (body === undefined) return undefined;
  return body.length > MAX_BODY_CHARS ? `${body.slice(0, MAX_BODY_CHARS)}…` : body;
}

/** Where each endpoint's URL comes from, and how its path ends. */
const URL_SETTING: Record<FinapiEndpoint, { variable: string; path: string }> = {
  token: { variable: "FINAPI_TOKEN_URL", path: "…/api/v2/oauth/token" },
  kreditcheck: {
    variable: "FINAPI_PROCESSCTRL_URL (and FINAPI_KREDITCHECK_PATH)",
    path: "…/api/v1",
  },
  account_pdf: { variable: "FINAPI_PROCESSCTRL_URL", path: "…/api/v1" },
  dac_zip: { variable: "FINAPI_PROCESSCTRL_URL", path: "…/api/v1" },
  dac: { variable: "FINAPI_DI_URL", path: "…/api/v1" },
};

/** The fix for a URL that may point at the wrong place. */
function checkUrlFix(endpoint: FinapiEndpoint, beginning: string): string {
  const { variable, path } = URL_SETTING[endpoint];
  // The start-up check asks for a token before any callback came.
  const which = endpoint === "token" ? "your client credentials are for" : "the callback came from";
  return `${beginning} check that ${variable} points at the finAPI environment (sandbox or live) ${which}, including the path (${path}).`;
}

/**
 * A 404's fix. A document lives under the KreditCheck result's URL, which answered just
 * before: its 404 means finAPI has no such document for this check, not a wrong URL.
 */
function notFoundFix(endpoint: FinapiEndpoint): string {
  if (endpoint in DOCUMENTS) {
    return `finAPI has no ${endpoint} for this check; if your checks never have one, remove it from FETCH_DOCUMENTS.`;
  }
  return checkUrlFix(endpoint, "If this happens for every check,");
}

function build(
  message: string,
  code: ErrorCode,
  retryable: boolean,
  context: FinapiErrorContext,
  fix?: string,
  cause?: unknown,
): ReceiverError {
  const suffix = ` [${context.endpoint}, X-Request-Id ${context.requestId}${
    context.status ? `, HTTP ${context.status}` : ""
  }]${context.body ? ` body: ${truncateBody(context.body)}` : ""}`;
  return new ReceiverError(message + suffix, {
    code,
    retryable,
    fix,
    retryAfterMs: context.retryAfterMs,
    details: { ...context, body: truncateBody(context.body) },
    cause,
  });
}

/** Classifies a non-2xx answer of a finAPI data call (the undici retry policy, plus finAPI's scopes). */
export function errorForStatus(context: FinapiErrorContext & { status: number }): ReceiverError {
  const { status } = context;
  if (status === 401) {
    return build(
      "finAPI rejected the access token even after a fresh one was fetched.",
      "finapi_unauthorized",
      true,
      context,
      "check that FINAPI_TOKEN_URL and the service URLs belong to the same finAPI environment (sandbox or live).",
    );
  }
  if (status === 403 && context.endpoint in DOCUMENTS) {
    return build(
      `finAPI refused the ${context.endpoint} document (403).`,
      "finapi_forbidden",
      false,
      context,
      `the KreditCheck result was served, so this is about the document, not the scope: ask finAPI support (support@finapi.io) whether your contract includes ${context.endpoint}, or remove it from FETCH_DOCUMENTS.`,
    );
  }
  if (status === 403) {
    return build(
      `finAPI refused access to ${context.endpoint === "dac" ? "a DAC report" : "the KreditCheck result"} (403).`,
      "finapi_forbidden",
      false,
      context,
      "the mandator needs the scope data_intelligence:manager for the KreditCheck and DAC results; ask finAPI support (support@finapi.io) to grant it, then retry the dead jobs (npm run cli -- retry --all-dead --code finapi_forbidden).",
    );
  }
  if (status === 404) {
    return build(
      "finAPI does not know this resource (404).",
      "finapi_not_found",
      false,
      context,
      notFoundFix(context.endpoint),
    );
  }
  if (status === 429) {
    return build("finAPI rate-limited the call (429).", "finapi_rate_limited", true, context);
  }
  if (status === 408 || status >= 500) {
    return build(`finAPI is unavailable (${status}).`, "finapi_unavailable", true, context);
  }
  return build(
    `finAPI rejected the request (${status}).`,
    "finapi_rejected",
    false,
    context,
    "the request was refused as invalid; check the ids in the callback and the configured URLs, and contact finAPI support with the X-Request-Id if it persists.",
  );
}

export function networkError(
  context: FinapiErrorContext,
  cause: unknown,
  timedOut: boolean,
): ReceiverError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const proxy = proxyOf(cause)?.variable;
  const via = proxy ? ` through the proxy in ${proxy}` : "";
  // The deadline's reason names that bound: the call kept moving, FINAPI_TIMEOUT_MS never ran out.
  const which = cause instanceof CallDeadlineExceeded ? `: ${reason}` : "";
  return build(
    timedOut
      ? `finAPI did not answer in time${via}${which}.`
      : `finAPI could not be reached${via}: ${reason}.`,
    timedOut ? "finapi_timeout" : "finapi_network",
    true,
    context,
    networkFix(context.endpoint, timedOut, proxy, reason),
    cause,
  );
}

/** The fix for a call without an answer: through a proxy, the proxy may be what is down. */
function networkFix(
  endpoint: FinapiEndpoint,
  timedOut: boolean,
  proxy: string | undefined,
  reason: string,
) {
  // undici's words when the proxy refuses the CONNECT tunnel to an https URL.
  if (proxy && /^Proxy response \(407\)/.test(reason)) {
    return `The proxy in ${proxy} asks for credentials (407 Proxy Authentication Required): put them in its URL, http://user:password@host:port (URL-encoded), and restart; the jobs waiting meanwhile are retried.`;
  }
  if (timedOut) {
    const also = proxy ? ` and ${proxy}` : "";
    return `If every call times out, raise FINAPI_TIMEOUT_MS or check ${URL_SETTING[endpoint].variable}${also}.`;
  }
  if (!proxy) {
    return checkUrlFix(
      endpoint,
      "If this keeps happening, check that this machine can reach finAPI (DNS, a firewall; calls that must go through a proxy need HTTPS_PROXY), and",
    );
  }
  return checkUrlFix(
    endpoint,
    `If this keeps happening, check that the proxy in ${proxy} is up and lets the service through to finAPI (NO_PROXY lists the hosts reached directly), and`,
  );
}

/**
 * `notJson`: the body was no JSON at all, most likely a web page (a URL that points at a
 * website or a gateway instead of finAPI's API), so the fix names the variable first.
 */
export function invalidResponseError(
  context: FinapiErrorContext,
  problem: string,
  notJson = false,
): ReceiverError {
  const report =
    "report this to the receiver's maintainers with the X-Request-Id; retry the dead job once it is fixed.";
  return build(
    `finAPI answered with an unexpected shape: ${problem}.`,
    "finapi_invalid_response",
    false,
    context,
    notJson
      ? checkUrlFix(
          context.endpoint,
          `An answer that is not JSON is most likely a web page, not finAPI's API:`,
        ).replace(/\.$/, `; if it is right, ${report}`)
      : report,
  );
}

/**
 * An answer larger than the receiver reads (call-limits.ts). Permanent: the same URL serves
 * the same answer again. A document is noted in the bundle's problems and the rest is
 * delivered; any other answer this large is no finAPI answer of the kind asked for.
 */
export function tooLargeError(context: FinapiErrorContext, limitBytes: number): ReceiverError {
  const mib = limitBytes / (1024 * 1024);
  const limit = Number.isInteger(mib) ? `${mib} MiB` : `${limitBytes} bytes`;
  const report = `report it to the receiver's maintainers with the X-Request-Id (the limit is MAX_${
    context.endpoint in DOCUMENTS ? "DOCUMENT" : "JSON"
  }_BYTES in src/finapi/call-limits.ts)`;
  return build(
    `finAPI's answer is larger than ${limit}, the most the receiver reads of ${
      context.endpoint in DOCUMENTS ? "a document" : "a JSON answer"
    }; the rest was not read.`,
    "finapi_invalid_response",
    false,
    { ...context, limitBytes },
    context.endpoint in DOCUMENTS
      ? `the bundle is delivered without ${context.endpoint}; if your checks' ${context.endpoint} is this large, remove it from FETCH_DOCUMENTS and ${report}.`
      : checkUrlFix(
          context.endpoint,
          "An answer this large is most likely not finAPI's API:",
        ).replace(/\.$/, `; if it is right, ${report}, and retry the dead job once it is fixed.`),
  );
}

export function tokenError(
  context: FinapiErrorContext & { status: number },
  oauthError?: string,
): ReceiverError {
  const { status } = context;
  if (status === 429 || status === 408 || status >= 500) {
    return build(
      `finAPI's token endpoint is unavailable (${status}).`,
      "finapi_token_unavailable",
      true,
      context,
    );
  }
  // A redirect too: it is not followed, and an OAuth token endpoint does not send one.
  if (status === 404 || status === 405 || (status >= 300 && status < 400)) {
    return build(
      `there is no token endpoint at FINAPI_TOKEN_URL (${status}).`,
      "finapi_token_url_wrong",
      false,
      context,
      "set FINAPI_TOKEN_URL to the OAuth token URL of your finAPI environment, e.g. https://sandbox.finapi.io/api/v2/oauth/token (the default for FINAPI_ENV=sandbox); then retry the dead jobs.",
    );
  }
  return build(
    `finAPI refused the client credentials${oauthError ? ` (${oauthError})` : ""}.`,
    "finapi_auth_failed",
    false,
    context,
    "check FINAPI_CLIENT_ID and FINAPI_CLIENT_SECRET, and that FINAPI_TOKEN_URL is the token URL of the environment (sandbox or live) the credentials belong to.",
  );
}

/**
 * A 2xx from FINAPI_TOKEN_URL without an access token: not an OAuth token endpoint (a web
 * page, a proxy's answer). Permanent, like a 404 there: asking again gets the same page.
 */
export function tokenAnswerUnreadable(
  context: FinapiErrorContext & { status: number },
): ReceiverError {
  return build(
    `FINAPI_TOKEN_URL answered ${context.status} without an access_token: it is not an OAuth token endpoint.`,
    "finapi_token_url_wrong",
    false,
    context,
    "set FINAPI_TOKEN_URL to the OAuth token URL of your finAPI environment, e.g. https://sandbox.finapi.io/api/v2/oauth/token (the default for FINAPI_ENV=sandbox); then retry the dead jobs.",
  );
}
