import { type ErrorCode, messageWithCauses, ReceiverError } from "../errors.js";

/** A module sink's own error code: lower-case words, so Node's (ECONNREFUSED) never match. */
const MODULE_CODE = /^[a-z][a-z0-9_]{2,63}$/;

/**
 * What a module sink's thrown error says, read by its properties so the module needs
 * nothing of ours: `retryable: false` ends the job at once (a bundle the target will never
 * take), `code` names the failure for `retry --all-dead --code`, `fix` is shown as the
 * job's "Fix:", `retryAfterMs` is the least wait before the next attempt. An error
 * without them is retried as `unexpected_error`, as before.
 */
export function moduleSinkError(error: unknown): ReceiverError {
  if (error instanceof ReceiverError) return error;
  const said = (typeof error === "object" && error !== null ? error : {}) as {
    code?: unknown;
    retryable?: unknown;
    fix?: unknown;
    retryAfterMs?: unknown;
  };
  const code = typeof said.code === "string" && MODULE_CODE.test(said.code) ? said.code : undefined;
  const retryAfterMs =
    typeof said.retryAfterMs === "number" && Number.isFinite(said.retryAfterMs)
      ? Math.max(0, said.retryAfterMs)
      : undefined;
  return new ReceiverError(messageWithCauses(error), {
    // Codes of its own are the module's; the store keeps them like the service's.
    code: (code ?? "unexpected_error") as ErrorCode,
    retryable: said.retryable !== false,
    fix: typeof said.fix === "string" && said.fix.trim() !== "" ? said.fix.trim() : undefined,
    retryAfterMs,
    cause: error,
  });
}
